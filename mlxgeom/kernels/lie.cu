// SO(3)/SE(3) exp, log and actions of lie/so3.py and lie/se3.py, one element per thread (the same float32
// Taylor series below t^2 = 1, the half-angle closed forms above). `series` holds lie/_scalar.py's
// coefficients, NT terms each: sin t / t, (1 - cos t) / t^2, (t - sin t) / t^3, the inverse-Jacobian
// factor, then 4 of atan(x) / x in x^2 (lie_cuda._series).

// A = sin t / t, B = (1 - cos t) / t^2, C = (t - sin t) / t^3 of phi = (x, y, z); t2 = t^2.
template <int NT>
__device__ inline void abc(const float* series, float x, float y, float z, float& A, float& B, float& C, float& t2) {
  t2 = x * x + y * y + z * z;
  if (t2 < 1.0f) {  // lie/_scalar.SMALL_T2
    A = horner<NT>(series, t2);
    B = horner<NT>(series + NT, t2);
    C = horner<NT>(series + 2 * NT, t2);
  } else {
    const float t = sqrtf(t2);
    const float sh = sinf(0.5f * t), ch = cosf(0.5f * t);
    A = 2.0f * sh * ch / t;
    B = 2.0f * sh * sh / t2;
    C = (t - 2.0f * sh * ch) / (t2 * t);
  }
}

// R = (1 - B t^2) I + A hat(phi) + B phi phi^T into R[row * S + col].
template <int S>
__device__ inline void rotation(float A, float B, float t2, float x, float y, float z, float* R) {
  const float c0 = 1.0f - B * t2;
  R[0] = c0 + B * x * x; R[1] = B * x * y - A * z; R[2] = B * x * z + A * y;
  R[S] = B * x * y + A * z; R[S + 1] = c0 + B * y * y; R[S + 2] = B * y * z - A * x;
  R[2 * S] = B * x * z - A * y; R[2 * S + 1] = B * y * z + A * x; R[2 * S + 2] = c0 + B * z * z;
}

// phi = log R from the Shepperd quaternion (so3._quaternion_wxyz, _scalar.half_angle_ratio) of the
// rotation in m[row * S + col].
template <int NT, int S>
__device__ inline void rotation_log(const float* series, const float* m, float* phi) {
  const float r00 = m[0], r01 = m[1], r02 = m[2];
  const float r10 = m[S], r11 = m[S + 1], r12 = m[S + 2];
  const float r20 = m[2 * S], r21 = m[2 * S + 1], r22 = m[2 * S + 2];
  const float d[4] = {1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22};
  const float k0 = r21 - r12, k1 = r02 - r20, k2 = r10 - r01, k3 = r01 + r10, k4 = r02 + r20, k5 = r12 + r21;
  int best = 0;
#pragma unroll
  for (int i = 1; i < 4; ++i) if (d[i] > d[best]) best = i;
  const float s = sqrtf(fmaxf(d[best], 1.0f)), h = 0.5f / s;
  float q[4];
  if (best == 0) { q[0] = s * s * h; q[1] = k0 * h; q[2] = k1 * h; q[3] = k2 * h; }
  else if (best == 1) { q[0] = k0 * h; q[1] = s * s * h; q[2] = k3 * h; q[3] = k4 * h; }
  else if (best == 2) { q[0] = k1 * h; q[1] = k3 * h; q[2] = s * s * h; q[3] = k5 * h; }
  else { q[0] = k2 * h; q[1] = k4 * h; q[2] = k5 * h; q[3] = s * s * h; }
  const float sgn = q[0] < 0 ? -1.0f : 1.0f;
  const float qn = sgn / sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const float w = q[0] * qn, x = q[1] * qn, y = q[2] * qn, z = q[3] * qn;
  const float n2 = x * x + y * y + z * z;
  float ratio;
  if (n2 < 0.01f * w * w) {
    ratio = 2.0f / w * horner<4>(series + 4 * NT, n2 / (w * w));
  } else {
    const float n = sqrtf(n2);
    ratio = 2.0f * atan2f(n, w) / n;
  }
  phi[0] = ratio * x; phi[1] = ratio * y; phi[2] = ratio * z;
}

// xi = [rho, phi] -> T (4x4), t = (A I + B hat(phi) + C phi phi^T) rho
template <int NT>
__device__ inline void se3_exp(const float* series, const float* xi, float* out) {
  const float x = xi[3], y = xi[4], z = xi[5], r0 = xi[0], r1 = xi[1], r2 = xi[2];
  float A, B, C, t2;
  abc<NT>(series, x, y, z, A, B, C, t2);
  rotation<4>(A, B, t2, x, y, z, out);
  const float dot = x * r0 + y * r1 + z * r2;
  out[3] = A * r0 + B * (y * r2 - z * r1) + C * dot * x;
  out[7] = A * r1 + B * (z * r0 - x * r2) + C * dot * y;
  out[11] = A * r2 + B * (x * r1 - y * r0) + C * dot * z;
  out[12] = 0.0f; out[13] = 0.0f; out[14] = 0.0f; out[15] = 1.0f;
}

// T (4x4) -> [rho, phi], rho = J_l(phi)^-1 t (so3._left_jacobian_inv_apply)
template <int NT>
__device__ inline void se3_log(const float* series, const float* m, float* out) {
  float p[3];
  rotation_log<NT, 4>(series, m, p);
  const float t0 = m[3], t1 = m[7], t2v = m[11];
  const float t2 = p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
  float D;
  if (t2 < 1.0f) {
    D = horner<NT>(series + 3 * NT, t2);
  } else {
    const float t = sqrtf(t2);
    D = 1.0f / t2 - cosf(0.5f * t) / (2.0f * t * sinf(0.5f * t));
  }
  const float c0 = 1.0f - D * t2, dot = p[0] * t0 + p[1] * t1 + p[2] * t2v;
  out[0] = c0 * t0 - 0.5f * (p[1] * t2v - p[2] * t1) + D * dot * p[0];
  out[1] = c0 * t1 - 0.5f * (p[2] * t0 - p[0] * t2v) + D * dot * p[1];
  out[2] = c0 * t2v - 0.5f * (p[0] * t1 - p[1] * t0) + D * dot * p[2];
  out[3] = p[0]; out[4] = p[1]; out[5] = p[2];
}

// @body (the kernel's body; what is above is its header)
// Template: OP (0 so3_exp, 1 se3_exp, 2 so3_log, 3 se3_log, 4 so3_act, 5 se3_act), KM and SINGLE (the
// first input m: entries, one for all), KX (entries of x), KOUT, NT (series terms), TB.
  __shared__ float tile[TB * (imax(SINGLE ? 0 : KM, imax(KX, KOUT)) + 1)];
  const long long total = x_shape[0];
  float m_r[KM], x_r[KX], out_r[KOUT];
  if (!SINGLE) stage_in<KM, TB>(m, total, tile, m_r);
  const float* mp = SINGLE ? m : m_r;  // one series / transform for all: read where used (cached)
  stage_in<KX, TB>(x, total, tile, x_r);
  if (OP == 0) {
    float A, B, C, t2;
    abc<NT>(mp, x_r[0], x_r[1], x_r[2], A, B, C, t2);
    rotation<3>(A, B, t2, x_r[0], x_r[1], x_r[2], out_r);
  }
  else if (OP == 1) se3_exp<NT>(mp, x_r, out_r);
  else if (OP == 2) rotation_log<NT, 3>(mp, x_r, out_r);
  else if (OP == 3) se3_log<NT>(mp, x_r, out_r);
  else {  // R p (so3_act) or R p + t (se3_act)
    constexpr int S = OP == 4 ? 3 : 4;
    for (int i = 0; i < 3; ++i)
      out_r[i] = mp[S * i] * x_r[0] + mp[S * i + 1] * x_r[1] + mp[S * i + 2] * x_r[2] + (S == 4 ? mp[S * i + 3] : 0.0f);
  }
  stage_out<KOUT, TB>(out_r, total, tile, out);
