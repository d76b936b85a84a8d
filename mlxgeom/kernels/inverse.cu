// Inverse of one N x N matrix (N = 3, 4) per thread: the cofactors of B = A / s over det B, times 1 / s,
// s = 2^floor(log2 max |a_ij|) (1 if that max is 0, subnormal or not finite), as linalg/inverse.py.
// Template: N, TB.

// r = adj(m) / det(m) * isc, the cofactor formulas of linalg/inverse.py (4x4: the 2x2 minors of the top
// and bottom row pairs).
template <int N>
__device__ inline void inverse_cofactors(const float* m, float isc, float* r);

template <>
__device__ inline void inverse_cofactors<3>(const float* m, float isc, float* r) {
  const float c00 = m[4] * m[8] - m[5] * m[7], c01 = m[2] * m[7] - m[1] * m[8], c02 = m[1] * m[5] - m[2] * m[4];
  const float c10 = m[5] * m[6] - m[3] * m[8], c11 = m[0] * m[8] - m[2] * m[6], c12 = m[2] * m[3] - m[0] * m[5];
  const float c20 = m[3] * m[7] - m[4] * m[6], c21 = m[1] * m[6] - m[0] * m[7], c22 = m[0] * m[4] - m[1] * m[3];
  const float id = 1.0f / (m[0] * c00 + m[1] * c10 + m[2] * c20);
  const float c[9] = {c00, c01, c02, c10, c11, c12, c20, c21, c22};
#pragma unroll
  for (int k = 0; k < 9; ++k) r[k] = c[k] * id * isc;
}

template <>
__device__ inline void inverse_cofactors<4>(const float* m, float isc, float* r) {
  const float s0 = m[0] * m[5] - m[4] * m[1], s1 = m[0] * m[6] - m[4] * m[2], s2 = m[0] * m[7] - m[4] * m[3];
  const float s3 = m[1] * m[6] - m[5] * m[2], s4 = m[1] * m[7] - m[5] * m[3], s5 = m[2] * m[7] - m[6] * m[3];
  const float c5 = m[10] * m[15] - m[14] * m[11], c4 = m[9] * m[15] - m[13] * m[11], c3 = m[9] * m[14] - m[13] * m[10];
  const float c2 = m[8] * m[15] - m[12] * m[11], c1 = m[8] * m[14] - m[12] * m[10], c0 = m[8] * m[13] - m[12] * m[9];
  const float id = 1.0f / ((s0 * c5 - s1 * c4) + (s2 * c3 + s3 * c2) - (s4 * c1 - s5 * c0));
  const float c[16] = {
      m[5] * c5 - m[6] * c4 + m[7] * c3, -m[1] * c5 + m[2] * c4 - m[3] * c3,
      m[13] * s5 - m[14] * s4 + m[15] * s3, -m[9] * s5 + m[10] * s4 - m[11] * s3,
      -m[4] * c5 + m[6] * c2 - m[7] * c1, m[0] * c5 - m[2] * c2 + m[3] * c1,
      -m[12] * s5 + m[14] * s2 - m[15] * s1, m[8] * s5 - m[10] * s2 + m[11] * s1,
      m[4] * c4 - m[5] * c2 + m[7] * c0, -m[0] * c4 + m[1] * c2 - m[3] * c0,
      m[12] * s4 - m[13] * s2 + m[15] * s0, -m[8] * s4 + m[9] * s2 - m[11] * s0,
      -m[4] * c3 + m[5] * c1 - m[6] * c0, m[0] * c3 - m[1] * c1 + m[2] * c0,
      -m[12] * s3 + m[13] * s1 - m[14] * s0, m[8] * s3 - m[9] * s1 + m[10] * s0};
#pragma unroll
  for (int k = 0; k < 16; ++k) r[k] = c[k] * id * isc;
}

// @body (the kernel's body; what is above is its header)
  __shared__ float tile[TB * (N * N + 1)];
  const long long total = a_shape[0];
  float m[N * N], r[N * N];
  stage_in<N * N, TB>(a, total, tile, m);
  float amax = 0.0f;
  bool finite = true;
#pragma unroll
  for (int k = 0; k < N * N; ++k) { amax = fmaxf(amax, fabsf(m[k])); finite = finite && isfinite(m[k]); }
  int e;
  frexpf(amax, &e);
  const float isc = finite && amax >= 1.17549435e-38f ? ldexpf(1.0f, 1 - e) : 1.0f;  // 1 / s, exact
#pragma unroll
  for (int k = 0; k < N * N; ++k) m[k] *= isc;
  inverse_cofactors<N>(m, isc, r);
  stage_out<N * N, TB>(r, total, tile, out);
