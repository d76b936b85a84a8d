"""CUDA fast paths for SO(3)/SE(3) exp, log and the point actions (``mx.fast.cuda_kernel``).

The pure-mx closed forms in ``so3.py`` / ``se3.py`` are the reference and the path on every
other backend; on CUDA their fused kernels read (*, 3, 3) / (*, 4, 4) entries with strides and
write one plane per entry, several times a same-size copy. These kernels evaluate the same
formulas per element (the same float32 Taylor coefficients below t^2 = 1, the half-angle
closed forms above) with the staged layout of :mod:`mlxgeom._cuda`; ``so3.py`` / ``se3.py`` wrap
them with :func:`mlxgeom._cuda.fast_path`, which differentiates them as the pure path.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._cuda import horner, launch, on_cuda
from . import _scalar as sc

def _series(coeffs: tuple[float, ...]) -> str:
    return horner(coeffs[:sc._TERMS_FLOAT32], "t2")


# A = sin t / t, B = (1 - cos t) / t^2, C = (t - sin t) / t^3 of phi = (x, y, z), as sc.* compute them.
_COEFFS = f"""
  const float t2 = x * x + y * y + z * z;
  float A, B, C;
  if (t2 < {sc.SMALL_T2!r}f) {{
    A = {_series(sc.SIN_T)};
    B = {_series(sc.ONE_MINUS_COS)};
    C = {_series(sc.T_MINUS_SIN)};
  }} else {{
    const float t = sqrtf(t2);
    const float sh = sinf(0.5f * t), ch = cosf(0.5f * t);
    A = 2.0f * sh * ch / t;
    B = 2.0f * sh * sh / t2;
    C = (t - 2.0f * sh * ch) / (t2 * t);
  }}
  const float c0 = 1.0f - B * t2;
"""

# R = (1 - B t^2) I + A hat(phi) + B phi phi^T, row-major into R_OUT[ROW * STRIDE + col].
_ROTATION = """
  R_OUT[0] = c0 + B * x * x; R_OUT[1] = B * x * y - A * z; R_OUT[2] = B * x * z + A * y;
  R_OUT[S] = B * x * y + A * z; R_OUT[S + 1] = c0 + B * y * y; R_OUT[S + 2] = B * y * z - A * x;
  R_OUT[2 * S] = B * x * z - A * y; R_OUT[2 * S + 1] = B * y * z + A * x; R_OUT[2 * S + 2] = c0 + B * z * z;
"""

# phi = log R from the Shepperd quaternion (so3._quaternion_wxyz, sc.half_angle_ratio) of R in
# m_r[0, 1, 2, S, S + 1, S + 2, 2 S, 2 S + 1, 2 S + 2].
_LOG = f"""
  const float r00 = m_r[0], r01 = m_r[1], r02 = m_r[2];
  const float r10 = m_r[S], r11 = m_r[S + 1], r12 = m_r[S + 2];
  const float r20 = m_r[2 * S], r21 = m_r[2 * S + 1], r22 = m_r[2 * S + 2];
  const float d[4] = {{1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22}};
  const float k0 = r21 - r12, k1 = r02 - r20, k2 = r10 - r01, k3 = r01 + r10, k4 = r02 + r20, k5 = r12 + r21;
  int best = 0;
  #pragma unroll
  for (int i = 1; i < 4; ++i) if (d[i] > d[best]) best = i;
  const float s = sqrtf(fmaxf(d[best], 1.0f)), h = 0.5f / s;
  float q[4];
  if (best == 0) {{ q[0] = s * s * h; q[1] = k0 * h; q[2] = k1 * h; q[3] = k2 * h; }}
  else if (best == 1) {{ q[0] = k0 * h; q[1] = s * s * h; q[2] = k3 * h; q[3] = k4 * h; }}
  else if (best == 2) {{ q[0] = k1 * h; q[1] = k3 * h; q[2] = s * s * h; q[3] = k5 * h; }}
  else {{ q[0] = k2 * h; q[1] = k4 * h; q[2] = k5 * h; q[3] = s * s * h; }}
  const float sgn = q[0] < 0 ? -1.0f : 1.0f;
  const float qn = sgn / sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const float w = q[0] * qn, x = q[1] * qn, y = q[2] * qn, z = q[3] * qn;
  const float n2 = x * x + y * y + z * z;
  float ratio;
  if (n2 < 0.01f * w * w) {{
    const float x2 = n2 / (w * w);
    ratio = 2.0f / w * {horner(sc.ATAN_X[:4], "x2")};
  }} else {{
    const float n = sqrtf(n2);
    ratio = 2.0f * atan2f(n, w) / n;
  }}
  const float p0 = ratio * x, p1 = ratio * y, p2 = ratio * z;
"""

_BODIES = {
    # so3_exp: phi (3) -> R (9)
    "so3_exp": ("const float x = phi_r[0], y = phi_r[1], z = phi_r[2];" + _COEFFS
                + _ROTATION.replace("R_OUT", "out_r").replace("S", "3")),
    # se3_exp: xi = [rho, phi] (6) -> T (16), t = (A I + B hat(phi) + C phi phi^T) rho
    "se3_exp": ("const float x = phi_r[3], y = phi_r[4], z = phi_r[5];" + _COEFFS
                + _ROTATION.replace("R_OUT", "out_r").replace("S", "4") + """
  const float r0 = phi_r[0], r1 = phi_r[1], r2 = phi_r[2];
  const float dot = x * r0 + y * r1 + z * r2;
  out_r[3] = A * r0 + B * (y * r2 - z * r1) + C * dot * x;
  out_r[7] = A * r1 + B * (z * r0 - x * r2) + C * dot * y;
  out_r[11] = A * r2 + B * (x * r1 - y * r0) + C * dot * z;
  out_r[12] = 0.0f; out_r[13] = 0.0f; out_r[14] = 0.0f; out_r[15] = 1.0f;
"""),
    # so3_log: R (9) -> phi (3)
    "so3_log": _LOG.replace("S", "3") + """
  out_r[0] = p0; out_r[1] = p1; out_r[2] = p2;
""",
    # se3_log: T (16) -> [rho, phi] (6), rho = J_l(phi)^-1 t = c0 t - t x phi / 2 ... (so3._left_jacobian_inv_apply)
    "se3_log": _LOG.replace("S", "4") + f"""
  const float t0 = m_r[3], t1 = m_r[7], t2v = m_r[11];
  const float t2 = p0 * p0 + p1 * p1 + p2 * p2;
  float D;
  if (t2 < {sc.SMALL_T2!r}f) {{
    D = {_series(sc.INV_JAC)};
  }} else {{
    const float t = sqrtf(t2);
    D = 1.0f / t2 - cosf(0.5f * t) / (2.0f * t * sinf(0.5f * t));
  }}
  const float c0 = 1.0f - D * t2, dot = p0 * t0 + p1 * t1 + p2 * t2v;
  out_r[0] = c0 * t0 - 0.5f * (p1 * t2v - p2 * t1) + D * dot * p0;
  out_r[1] = c0 * t1 - 0.5f * (p2 * t0 - p0 * t2v) + D * dot * p1;
  out_r[2] = c0 * t2v - 0.5f * (p0 * t1 - p1 * t0) + D * dot * p2;
  out_r[3] = p0; out_r[4] = p1; out_r[5] = p2;
""",
    # so3_act: R (9), p (3) -> R p (3)
    "so3_act": """
  #pragma unroll
  for (int i = 0; i < 3; ++i) out_r[i] = m_r[3 * i] * p_r[0] + m_r[3 * i + 1] * p_r[1] + m_r[3 * i + 2] * p_r[2];
""",
    # se3_act: T (16), p (3) -> R p + t (3)
    "se3_act": """
  #pragma unroll
  for (int i = 0; i < 3; ++i)
    out_r[i] = m_r[4 * i] * p_r[0] + m_r[4 * i + 1] * p_r[1] + m_r[4 * i + 2] * p_r[2] + m_r[4 * i + 3];
""",
}


def enabled(v: mx.array) -> bool:
    """Whether exp / log of ``v`` (tangents (*, 3) / (*, 6) or matrices) take the kernels."""
    return v.dtype == mx.float32 and v.size > 0 and on_cuda()


def act_enabled(m: mx.array, p: mx.array) -> bool:
    """Whether the action of (*, 3, 3) / (*, 4, 4) ``m`` on points (*, 3) takes the kernel: float32,
    and either the same batch shape or a single rotation/pose for all points."""
    same = tuple(m.shape[:-2]) == tuple(p.shape[:-1])
    single = math.prod(m.shape[:-2]) == 1 and m.ndim - 2 <= p.ndim - 1
    return (m.dtype == mx.float32 and p.dtype == mx.float32 and p.size > 0 and (same or single)
            and on_cuda())


def so3_exp(phi: mx.array) -> mx.array:
    """Rotation matrices (*, 3, 3) of float32 rotation vectors (*, 3), by the kernel."""
    return launch("so3_exp", _BODIES["so3_exp"], [phi], ["phi"], [1], (3, 3))


def se3_exp(xi: mx.array) -> mx.array:
    """Poses (*, 4, 4) of float32 twists [rho, phi] (*, 6), by the kernel."""
    return launch("se3_exp", _BODIES["se3_exp"], [xi], ["phi"], [1], (4, 4))


def so3_log(r: mx.array) -> mx.array:
    """Rotation vectors (*, 3) of float32 rotation matrices (*, 3, 3), by the kernel."""
    return launch("so3_log", _BODIES["so3_log"], [r], ["m"], [2], (3,))


def se3_log(m: mx.array) -> mx.array:
    """Twists [rho, phi] (*, 6) of float32 poses (*, 4, 4), by the kernel."""
    return launch("se3_log", _BODIES["se3_log"], [m], ["m"], [2], (6,))


def so3_act(r: mx.array, p: mx.array) -> mx.array:
    """R p (*, 3) for float32 R (*, 3, 3) (or one R) and p (*, 3), by the kernel."""
    return launch("so3_act", _BODIES["so3_act"], [r, p], ["m", "p"], [2, 1], (3,))


def se3_act(m: mx.array, p: mx.array) -> mx.array:
    """R p + t (*, 3) for float32 poses (*, 4, 4) (or one pose) and p (*, 3), by the kernel."""
    return launch("se3_act", _BODIES["se3_act"], [m, p], ["m", "p"], [2, 1], (3,))
