// The OpenCV lens model with K coefficients (0, 4, 5, 8, 12, 14: k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4
// [tau_x tau_y]]]]), its Jacobian and its Newton inversion: the formulas and order of operations of
// camera/distortion.py (distort_opencv, _newton_step, _inverse_tilt_start), shared by the undistortion,
// projection and unprojection kernels.

struct Lens { float k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4, ctx, stx, cty, sty; };

template <int K>
__device__ inline Lens lens(const float* c) {
  Lens L = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f};
  if (K >= 4) { L.k1 = c[0]; L.k2 = c[1]; L.p1 = c[2]; L.p2 = c[3]; }
  if (K >= 5) L.k3 = c[4];
  if (K >= 8) { L.k4 = c[5]; L.k5 = c[6]; L.k6 = c[7]; }
  if (K >= 12) { L.s1 = c[8]; L.s2 = c[9]; L.s3 = c[10]; L.s4 = c[11]; }
  if (K == 14) { L.ctx = cosf(c[12]); L.stx = sinf(c[12]); L.cty = cosf(c[13]); L.sty = sinf(c[13]); }
  return L;
}

// (xd, yd) = the model at (x, y); false where it divides by zero. With JAC, j = d(xd, yd)/d(x, y) row-major.
template <int K, bool JAC>
__device__ inline bool distort(const Lens& L, float x, float y, float& xd, float& yd, float* j) {
  if (K == 0) {
    xd = x; yd = y;
    if (JAC) { j[0] = 1.0f; j[1] = 0.0f; j[2] = 0.0f; j[3] = 1.0f; }
    return true;
  }
  const float r2 = x * x + y * y;
  const float num = 1.0f + r2 * (L.k1 + r2 * (K >= 5 ? L.k2 + r2 * L.k3 : L.k2));
  const float dnum = K >= 5 ? L.k1 + r2 * (2.0f * L.k2 + 3.0f * r2 * L.k3) : L.k1 + r2 * (2.0f * L.k2);
  float radial = num, drad = dnum;
  bool dok = true;
  if (K >= 8) {
    const float den = 1.0f + r2 * (L.k4 + r2 * (L.k5 + r2 * L.k6));
    const float inv_den = den != 0.0f ? 1.0f / den : 0.0f;
    radial = num * inv_den;
    dok = den != 0.0f;
    const float dden = L.k4 + r2 * (2.0f * L.k5 + 3.0f * r2 * L.k6);
    drad = (dnum - radial * dden) * inv_den;
  }
  const float xy = x * y;
  xd = x * radial + 2.0f * L.p1 * xy + L.p2 * (r2 + 2.0f * x * x);
  yd = y * radial + L.p1 * (r2 + 2.0f * y * y) + 2.0f * L.p2 * xy;
  if (K >= 12) {
    const float r4 = r2 * r2;
    xd = xd + L.s1 * r2 + L.s2 * r4;
    yd = yd + L.s3 * r2 + L.s4 * r4;
  }
  float j00 = 0.0f, j01 = 0.0f, j10 = 0.0f, j11 = 0.0f;
  if (JAC) {
    const float gx = K >= 12 ? L.s1 + 2.0f * L.s2 * r2 : 0.0f, gy = K >= 12 ? L.s3 + 2.0f * L.s4 * r2 : 0.0f;
    const float cross = 2.0f * xy * drad + 2.0f * L.p1 * x + 2.0f * L.p2 * y;
    j00 = radial + 2.0f * x * x * drad + 2.0f * L.p1 * y + 6.0f * L.p2 * x + 2.0f * x * gx;
    j01 = cross + 2.0f * y * gx;
    j10 = cross + 2.0f * x * gy;
    j11 = radial + 2.0f * y * y * drad + 6.0f * L.p1 * y + 2.0f * L.p2 * x + 2.0f * y * gy;
  }
  if (K == 14) {  // the tilt homography (distortion._apply_tilt), its Jacobian pushed through it
    const float ctx = L.ctx, stx = L.stx, cty = L.cty, sty = L.sty;
    const float v0 = ctx * xd, v1 = -stx * sty * xd + cty * yd, v2 = sty * xd - cty * stx * yd + cty * ctx;
    const float iv = v2 != 0.0f ? 1.0f / v2 : 0.0f;
    const float px = v0 * iv, py = v1 * iv;
    dok = dok && v2 != 0.0f;
    if (JAC) {
      const float hx0 = (ctx - px * sty) * iv, hx1 = (-stx * sty - py * sty) * iv;
      const float hy0 = (0.0f - px * (-cty * stx)) * iv, hy1 = (cty - py * (-cty * stx)) * iv;
      const float a00 = hx0 * j00 + hy0 * j10, a10 = hx1 * j00 + hy1 * j10;
      const float a01 = hx0 * j01 + hy0 * j11, a11 = hx1 * j01 + hy1 * j11;
      j00 = a00; j01 = a01; j10 = a10; j11 = a11;
    }
    xd = px; yd = py;
  }
  if (JAC) { j[0] = j00; j[1] = j01; j[2] = j10; j[3] = j11; }
  return dok;
}

// OpenCV's fisheye model (camera/fisheye.py distort_fisheye) with c = k1..k4: theta = atan(r),
// theta_d = theta (1 + k1 theta^2 + ... + k4 theta^8), (xd, yd) = (theta_d / r) (x, y), the factor's
// series 1 - r^2 / 3 below r^2 = 1e-24.
__device__ inline void distort_fisheye(const float* c, float x, float y, float& xd, float& yd) {
  const float r2 = x * x + y * y;
  const bool big = r2 > 1e-24f;
  const float r = sqrtf(big ? r2 : 1.0f);
  const float theta = big ? atanf(r) : 0.0f;
  const float t2 = theta * theta;
  const float p = 1.0f + t2 * (c[0] + t2 * (c[1] + t2 * (c[2] + t2 * c[3])));
  const float scale = (big ? theta / r : 1.0f - r2 / 3.0f) * p;
  xd = x * scale;
  yd = y * scale;
}

// One Newton step from (x, y) towards the distorted target (tx, ty) into (nx, ny), with the Jacobian's
// determinant, the residual (rx, ry) and the model's validity.
template <int K>
__device__ inline bool newton_step(const Lens& L, float tx, float ty, float x, float y, float& nx, float& ny,
                                   float& det, float& rx, float& ry) {
  float xd, yd, j[4];
  const bool dok = distort<K, true>(L, x, y, xd, yd, j);
  det = j[0] * j[3] - j[1] * j[2];
  const float idet = fabsf(det) > 0.0f ? 1.0f / det : 0.0f;
  rx = tx - xd; ry = ty - yd;
  nx = x + (j[3] * rx - j[1] * ry) * idet;
  ny = y + (j[0] * ry - j[2] * rx) * idet;
  return dok;
}

// `iterations` Newton steps from (tx, ty) (14 coefficients: from the tilt's exact inverse) towards it, as
// distortion._newton_iterations. A step depends on the iterate alone, so a point leaves the loop once
// it stays put (or would keep its iterate because the step is not finite): the same result.
template <int K>
__device__ inline void newton_iterations(const Lens& L, float tx, float ty, int iterations, float& x, float& y) {
  x = tx; y = ty;
  if (K == 14) {
    const float a = x / L.ctx;
    const float b = (y + L.stx * L.sty * a) / L.cty;
    const float den = 1.0f - L.sty * a + L.cty * L.stx * b;
    const float w = den != 0.0f ? L.cty * L.ctx / den : 0.0f;
    x = a * w; y = b * w;
  }
  for (int it = 0; it < iterations; ++it) {
    float nx, ny, det, rx, ry;
    newton_step<K>(L, tx, ty, x, y, nx, ny, det, rx, ry);
    if (!(fabsf(nx) <= 3.402823466e38f && fabsf(ny) <= 3.402823466e38f) || (nx == x && ny == y)) break;
    x = nx; y = ny;
  }
}

// fx, fy, cx, cy, skew and whether the focal lengths are usable (intrinsics.focal_ok).
struct Pinhole { float fx, fy, cx, cy, s; bool ok; };

// The pinhole of a row-major K (9 floats).
__device__ inline Pinhole pinhole(const float* k) {
  const float fx = k[0], s = k[1], cx = k[2], fy = k[4], cy = k[5];
  return {fx, fy, cx, cy, s, fx > 0.0f && fy > 0.0f && isfinite(fx) && isfinite(fy) && isfinite(cx) && isfinite(cy)
                                 && isfinite(s)};
}

// Row r of a kernel input with `rows` rows of `width` floats: row 0 when it has one (it broadcasts).
__device__ inline const float* row(const float* a, long long rows, long long r, long long width) {
  return a + (rows == 1 ? 0 : r) * width;
}
