// Pixels (2), depth and valid (1.0 / 0.0) of one (camera, point) pair per thread, as
// projection._project_values. k: (C, 9) row-major K; pose: (C', 16) row-major world-to-camera (read
// if HAS_POSE); dist: (C'', K) coefficients (read if K > 0); p: (P, N, 3) points; each of C, C', C'',
// P is 1 (shared) or the output's rows; lim: min_depth.
// Template: HAS_POSE, K, FISHEYE (the fisheye model, K = 4). Header: common.cuh, lens.cuh.

// @body (the kernel's body; what is above is its header)
  const long long N = p_shape[1];
  const long long rows = lmax(lmax(k_shape[0], pose_shape[0]), lmax(dist_shape[0], p_shape[0]));
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * N) return;
  const long long r = i / N;
  const Pinhole P = pinhole(row(k, k_shape[0], r, 9));
  const float* T = row(pose, pose_shape[0], r, 16);
  const float* c = row(dist, dist_shape[0], r, dist_shape[1]);
  const float* p_r = p + (p_shape[0] == 1 ? i % N : i) * 3;
  const float X = p_r[0], Y = p_r[1], Z = p_r[2];
  float xc = X, yc = Y, zc = Z;
  if (HAS_POSE) {
    xc = ((T[0] * X + T[1] * Y) + T[2] * Z) + T[3];
    yc = ((T[4] * X + T[5] * Y) + T[6] * Z) + T[7];
    zc = ((T[8] * X + T[9] * Y) + T[10] * Z) + T[11];
  }
  const bool front = zc > lim[0];
  const float iz = 1.0f / (front ? zc : 1.0f);
  float xd, yd;
  bool dok = true;
  if (FISHEYE) distort_fisheye(c, xc * iz, yc * iz, xd, yd);
  else dok = distort<K, false>(lens<K>(c), xc * iz, yc * iz, xd, yd, nullptr);
  const float u = P.fx * xd + P.s * yd + P.cx;
  const float v = P.fy * yd + P.cy;
  pixels[2 * i] = u;
  pixels[2 * i + 1] = v;
  depth[i] = zc;
  valid[i] = front && dok && P.ok && isfinite(u) && isfinite(v) ? 1.0f : 0.0f;
