// World point (3), camera-frame point (3) and valid (1.0 / 0.0) of one pixel per thread, as
// projection._unproject_values: normalisation, ITERATIONS Newton steps, the final step with its
// convergence test (residual <= lim[0] (1 + |target|)), the depth scaling and the inverse pose.
// k, pose, dist as in project.cu; px (P, N, 2) pixels and z (P', N, 1) depths, P and P' 1 or the rows.
// Template: HAS_POSE, K, ITERATIONS. Header: common.cuh, lens.cuh.

// @body (the kernel's body; what is above is its header)
  const long long N = px_shape[1];
  const long long rows = lmax(lmax(lmax(k_shape[0], pose_shape[0]), dist_shape[0]), lmax(px_shape[0], z_shape[0]));
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * N) return;
  const long long r = i / N;
  const Pinhole P = pinhole(row(k, k_shape[0], r, 9));
  const float* T = row(pose, pose_shape[0], r, 16);
  const Lens L = lens<K>(row(dist, dist_shape[0], r, dist_shape[1]));
  const float* px_r = px + (px_shape[0] == 1 ? i % N : i) * 2;
  const float zc = z[z_shape[0] == 1 ? i % N : i];
  const float ifx = 1.0f / (P.ok ? P.fx : 1.0f), ify = 1.0f / (P.ok ? P.fy : 1.0f);
  const float ty = (px_r[1] - P.cy) * ify;
  const float tx = (px_r[0] - P.cx - P.s * ty) * ifx;
  float xs = tx, ys = ty;
  bool conv = isfinite(tx) && isfinite(ty);
  if (K > 0) {
    float x, y, det, rx, ry;
    newton_iterations<K>(L, tx, ty, ITERATIONS, x, y);
    const bool dok = newton_step<K>(L, tx, ty, x, y, xs, ys, det, rx, ry);
    const float res = sqrtf(rx * rx + ry * ry);
    const float size = 1.0f + sqrtf(tx * tx + ty * ty);
    conv = res <= lim[0] * size && det > 0.0f && dok && isfinite(xs) && isfinite(ys);
  }
  const float xc = xs * zc, yc = ys * zc;
  float wx = xc, wy = yc, wz = zc;
  if (HAS_POSE) {
    const float r0 = xc - T[3], r1 = yc - T[7], r2 = zc - T[11];
    wx = (T[0] * r0 + T[4] * r1) + T[8] * r2;
    wy = (T[1] * r0 + T[5] * r1) + T[9] * r2;
    wz = (T[2] * r0 + T[6] * r1) + T[10] * r2;
  }
  points[3 * i] = wx; points[3 * i + 1] = wy; points[3 * i + 2] = wz;
  points_cam[3 * i] = xc; points_cam[3 * i + 1] = yc; points_cam[3 * i + 2] = zc;
  valid[i] = conv && P.ok && isfinite(wx) && isfinite(wy) && isfinite(wz) ? 1.0f : 0.0f;
