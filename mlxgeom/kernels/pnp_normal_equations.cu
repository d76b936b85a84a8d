// PnP's 28 per-problem sums (pnp._point_terms: A's upper triangle, g, the cost), one warp per problem:
// the lanes stride over the points with coalesced loads of the (1, 6, count, M) rows of pnp.pnp_blocks,
// keep the sums in registers and add them across the warp. pose (count, 16), k (count, 9), scale (1).
// Template: LOSS (0 squared, 1 Huber, 2 Cauchy, 3 Tukey, 4 SoftL1, 5 GemanMcClure), TERMS, WARP.

// The IRLS factor rw = rho'(sq) and rho(sq) of the robust loss (solve/losses formulas), c = scale, c2 = c^2.
template <int LOSS>
__device__ inline void robust(float sq, float c, float c2, float& rw, float& rho) {
  if (LOSS == 0) { rw = 1.0f; rho = sq; }
  else if (LOSS == 1) {
    const bool outer = sq > c2; const float so = outer ? sq : c2;
    rw = outer ? c / sqrtf(so) : 1.0f; rho = outer ? 2.0f * c * sqrtf(so) - c2 : sq;
  }
  else if (LOSS == 2) { rw = 1.0f / (1.0f + sq / c2); rho = c2 * log1pf(sq / c2); }
  else if (LOSS == 3) { const float u = fmaxf(1.0f - sq / c2, 0.0f); rw = u * u; rho = (c2 / 3.0f) * (1.0f - u * u * u); }
  else if (LOSS == 4) { rw = 1.0f / sqrtf(1.0f + sq / c2); rho = 2.0f * sq / (sqrtf(1.0f + sq / c2) + 1.0f); }
  else { const float q = c2 / (c2 + sq); rw = q * q; rho = c2 * sq / (c2 + sq); }
}

// @body (the kernel's body; what is above is its header)
  const long long count = pose_shape[0];
  const long long problem = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / WARP;
  const int lane = threadIdx.x % WARP;
  if (problem >= count) return;
  const long long m = pts_shape[3];
  const float* T = pose + problem * 16;
  const float* Kp = k + problem * 9;
  const float fx = Kp[0], sk = Kp[1], cx = Kp[2], fy = Kp[4], cy = Kp[5];
  const float c = scale[0], c2 = c * c;
  float acc[TERMS];
  for (int j = 0; j < TERMS; ++j) acc[j] = 0.0f;
  const long long plane = count * m;
  const float* row = pts + problem * m;
  for (long long i = lane; i < m; i += WARP) {
    const float X = row[i], Y = row[plane + i], Z = row[2 * plane + i];
    const float U = row[3 * plane + i], V = row[4 * plane + i], w = row[5 * plane + i];
    const float px = T[0] * X + T[1] * Y + T[2] * Z + T[3];
    const float py = T[4] * X + T[5] * Y + T[6] * Z + T[7];
    const float pz = T[8] * X + T[9] * Y + T[10] * Z + T[11];
    const float zs = fabsf(pz) > 1e-12f ? pz : 1e-12f;
    const float iz = w > 0.0f ? 1.0f / zs : 0.0f;
    const float x = px * iz, y = py * iz;
    const float ru = fx * x + sk * y + cx - U, rv = fy * y + cy - V;
    const float sq = w * (ru * ru + rv * rv);
    float rw, rho;
    robust<LOSS>(sq, c, c2, rw, rho);
    const float cw = w * rw;
    const float ju[6] = {fx * iz, sk * iz, -(fx * x + sk * y) * iz, -(fx * (x * y) + sk * (1.0f + y * y)),
                         fx * (1.0f + x * x) + sk * (x * y), sk * x - fx * y};
    const float jv[6] = {0.0f, fy * iz, -fy * y * iz, -fy * (1.0f + y * y), fy * (x * y), fy * x};
    int t = 0;
#pragma unroll
    for (int a = 0; a < 6; ++a) {
#pragma unroll
      for (int b = a; b < 6; ++b) acc[t++] += cw * (ju[a] * ju[b] + jv[a] * jv[b]);
    }
#pragma unroll
    for (int a = 0; a < 6; ++a) acc[21 + a] += cw * (ju[a] * ru + jv[a] * rv);
    acc[27] += 0.5f * rho;
  }
  warp_sum<WARP, TERMS>(acc);
  for (int j = 0; j < TERMS; ++j) if (lane == j % WARP) out[problem * TERMS + j] = acc[j];
