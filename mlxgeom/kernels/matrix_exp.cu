// exp(A) of one N x N matrix (N = 3, 4) per thread: the algorithm of linalg/matrix_exp.py (trace shift
// when the mean eigenvalue is <= -1, the 1-norm picking the Bader-Blanes-Casas degree and the number of
// squarings, the 5-product evaluation, the squarings, the division by e^-mu computed as a 1x1 exponential).
// Inputs: coef (the (6, 5, 5) coefficient table), theta (NTHETA thetas, then the shift limit), a.
// Template: N, NTHETA, MAX_SQUARINGS, GROW_BUDGET, TB.

template <int N>
__device__ inline void product(const float* a, const float* b, float* out) {
  for (int r = 0; r < N; ++r) for (int c = 0; c < N; ++c) {
    float acc = a[r * N] * b[c];
    for (int k = 1; k < N; ++k) acc += a[r * N + k] * b[k * N + c];
    out[r * N + c] = acc;
  }
}

// sum over rows cf[0..4] of I, x, p2, p3, p6 (one B_i of the degree's table)
template <int N>
__device__ inline void combine(const float* cf, const float* x, const float* p2, const float* p3, const float* p6,
                               float* out) {
  for (int r = 0; r < N; ++r) for (int c = 0; c < N; ++c)
    out[r * N + c] = cf[0] * (r == c ? 1.0f : 0.0f) + cf[1] * x[r * N + c] + cf[2] * p2[r * N + c]
                     + cf[3] * p3[r * N + c] + cf[4] * p6[r * N + c];
}

template <int NTHETA>
__device__ inline int degree(const float* theta, float norm) {
  int d = 0;
  for (int i = 0; i < NTHETA - 1; ++i) d += norm > theta[i];
  return d;
}

__device__ inline float scalar_row(const float* g, float y, float y2, float y3, float y6) {
  return g[0] + g[1] * y + g[2] * y2 + g[3] * y3 + g[4] * y6;
}

// @body (the kernel's body; what is above is its header)
  __shared__ float tile[TB * (N * N + 1)];
  const long long total = a_shape[0];
  const float last = theta[NTHETA - 1], shift_limit = theta[NTHETA];
  float m0[N * N];
  stage_in<N * N, TB>(a, total, tile, m0);
  float tr = 0.0f;
  for (int i = 0; i < N; ++i) tr += m0[i * (N + 1)];
  const float mean = tr / (float)N;
  const float mu0 = fminf(fmaxf(mean, -shift_limit), 0.0f);
  float norm = 0.0f, snorm = 0.0f;
  for (int c = 0; c < N; ++c) {
    float s = 0.0f, ss = 0.0f;
    for (int r = 0; r < N; ++r) { s += fabsf(m0[r * N + c]); ss += fabsf(m0[r * N + c] - (r == c ? mu0 : 0.0f)); }
    norm = fmaxf(norm, s); snorm = fmaxf(snorm, ss);
  }
  const bool useful = (mean <= -1.0f) && (snorm <= norm);
  const float mu = useful ? mu0 : 0.0f;
  if (useful) { for (int i = 0; i < N; ++i) m0[i * (N + 1)] -= mu; norm = snorm; }
  const int deg = degree<NTHETA>(theta, norm);
  const bool need = norm > last;
  const float s_real = need ? ceilf(log2f(norm / last)) : 0.0f;
  const bool covered = s_real <= (float)MAX_SQUARINGS;
  const int s = (int)fminf(fmaxf(s_real, 0.0f), (float)MAX_SQUARINGS);
  const float scale = ldexpf(1.0f, -s);
  const float* cf = coef + deg * 25;
  float x[N * N], p2[N * N], p3[N * N], p6[N * N], b0[N * N], b[N * N], z[N * N], e[N * N];
  for (int k = 0; k < N * N; ++k) x[k] = m0[k] * scale;
  product<N>(x, x, p2);
  product<N>(p2, x, p3);
  product<N>(p3, p3, p6);
  combine<N>(cf, x, p2, p3, p6, b0);
  combine<N>(cf + 4 * 5, x, p2, p3, p6, b);
  product<N>(b0, b, z);
  combine<N>(cf + 3 * 5, x, p2, p3, p6, b);
  for (int k = 0; k < N * N; ++k) z[k] += b[k];
  combine<N>(cf + 2 * 5, x, p2, p3, p6, b);
  for (int k = 0; k < N * N; ++k) b[k] += z[k];
  product<N>(b, z, e);
  combine<N>(cf + 1 * 5, x, p2, p3, p6, b);
  for (int k = 0; k < N * N; ++k) e[k] += b[k];
  for (int q = 0; q < s; ++q) {
    product<N>(e, e, b);
    for (int k = 0; k < N * N; ++k) e[k] = b[k];
  }
  // e^-mu as the 1x1 exponential of -mu, as the pure path computes it
  const float mm = -mu;
  const int gdeg = degree<NTHETA>(theta, mm);
  const bool gneed = mm > last;
  const int gs = (int)fminf(fmaxf(gneed ? ceilf(log2f(mm / last)) : 0.0f, 0.0f), (float)GROW_BUDGET);
  const float y = mm * ldexpf(1.0f, -gs), y2 = y * y, y3 = y2 * y, y6 = y3 * y3;
  const float* g = coef + gdeg * 25;
  const float gz = scalar_row(g, y, y2, y3, y6) * scalar_row(g + 20, y, y2, y3, y6) + scalar_row(g + 15, y, y2, y3, y6);
  float grow = scalar_row(g + 5, y, y2, y3, y6) + (scalar_row(g + 10, y, y2, y3, y6) + gz) * gz;
  for (int q = 0; q < gs; ++q) grow = grow * grow;
  float r[N * N];
  for (int k = 0; k < N * N; ++k) r[k] = covered ? e[k] / grow : nanf("");
  stage_out<N * N, TB>(r, total, tile, out);
