// EPnP's and DLT's pass over the points (_pnp_init.point_moments), one warp per problem: the weighted
// centroid, then 40 weighted moments of the centred points (4 weights w (1, x, y, x^2 + y^2) times the
// 10 products of the homogeneous centred point). pw (count, n, 3), xn (count, n, 2), w (count, n);
// out (count, 43): centroid, moments. Template: WARP.

// @body (the kernel's body; what is above is its header)
  const long long count = w_shape[0];
  const long long problem = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / WARP;
  const int lane = threadIdx.x % WARP;
  if (problem >= count) return;
  const long long n = w_shape[1];
  const float* P = pw + problem * n * 3;
  const float* X = xn + problem * n * 2;
  const float* W = w + problem * n;
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (long long i = lane; i < n; i += WARP) {
    const float wi = W[i];
    c[0] += wi; c[1] += wi * P[3 * i]; c[2] += wi * P[3 * i + 1]; c[3] += wi * P[3 * i + 2];
  }
  warp_sum<WARP, 4>(c);
  const float inv_n = 1.0f / fmaxf(c[0], 1.0f);
  const float c0[3] = {c[1] * inv_n, c[2] * inv_n, c[3] * inv_n};
  float acc[40];
  for (int j = 0; j < 40; ++j) acc[j] = 0.0f;
  for (long long i = lane; i < n; i += WARP) {
    const float wi = W[i], x = X[2 * i], y = X[2 * i + 1];
    const float h[4] = {P[3 * i] - c0[0], P[3 * i + 1] - c0[1], P[3 * i + 2] - c0[2], 1.0f};
    const float coef[4] = {wi, wi * x, wi * y, wi * (x * x + y * y)};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      int t = 0;
#pragma unroll
      for (int a = 0; a < 4; ++a) {
#pragma unroll
        for (int b = a; b < 4; ++b) acc[q * 10 + t++] += coef[q] * (h[a] * h[b]);
      }
    }
  }
  warp_sum<WARP, 40>(acc);
  float* o = out + problem * 43;
  if (lane == 0) { o[0] = c0[0]; o[1] = c0[1]; o[2] = c0[2]; }
  for (int j = 0; j < 40; ++j) if (lane == j % WARP) o[3 + j] = acc[j];
