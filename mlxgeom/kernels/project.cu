// Pixels (2), depth and valid (1.0 / 0.0) of one (camera, point) pair per thread, as
// projection._project_values. cam: (C, M) packed cameras (lens.cuh: Pinhole), C = 1 or the output's
// rows; p: (P, N, 3) points, P = 1 (shared by every camera) or the rows; lim: min_depth.
// Template: HAS_POSE, K, FISHEYE (the fisheye model, K = 4). Header: common.cuh, lens.cuh.

// @body (the kernel's body; what is above is its header)
  const long long N = p_shape[1];
  const long long rows = cam_shape[0] > p_shape[0] ? cam_shape[0] : p_shape[0];
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * N) return;
  const float* cam_r = cam + (cam_shape[0] == 1 ? 0 : i / N) * cam_shape[1];
  const float* p_r = p + (p_shape[0] == 1 ? i % N : i) * 3;
  const Pinhole P = pinhole(cam_r);
  const float* c = cam_r + (HAS_POSE ? 17 : 5);
  const float X = p_r[0], Y = p_r[1], Z = p_r[2];
  float xc = X, yc = Y, zc = Z;
  if (HAS_POSE) {
    xc = ((cam_r[5] * X + cam_r[6] * Y) + cam_r[7] * Z) + cam_r[8];
    yc = ((cam_r[9] * X + cam_r[10] * Y) + cam_r[11] * Z) + cam_r[12];
    zc = ((cam_r[13] * X + cam_r[14] * Y) + cam_r[15] * Z) + cam_r[16];
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
