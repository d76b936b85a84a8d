"""CUDA fast path for the Newton iterations of OpenCV undistortion (``mx.fast.cuda_kernel``).

:func:`distortion.undistort_opencv` inverts the lens model with a fixed number of Newton steps
that carry no gradient, then one differentiable step. In pure mx each step is a full pass over
the points (the model, its 2x2 Jacobian and the solve: dozens of fused kernels and
intermediates), so ten steps cost 40-70x a same-size copy on an H200. This kernel runs all the
steps of one point in registers with the formulas of :func:`distortion.distort_opencv` and
:func:`distortion._newton_step` (same order of operations, the same safe divisions and the same
"keep the old iterate where the new one is not finite" rule), one thread per point, staged
through :func:`mlxgeom._cuda.launch`. Its inputs are constants for autodiff already, so it
needs no derivative rule.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._cuda import launch, on_cuda

_NAMES = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6", "s1", "s2", "s3", "s4", "tau_x", "tau_y")

_TRIG = "  const float ctx = cosf(tau_x), stx = sinf(tau_x), cty = cosf(tau_y), sty = sinf(tau_y);\n"

# The exact inverse of the tilt homography as the Newton start (distortion._inverse_tilt_start).
_TILT_START = """
  {
    const float a = x / ctx;
    const float b = (y + stx * sty * a) / cty;
    const float den = 1.0f - sty * a + cty * stx * b;
    const float w = den != 0.0f ? cty * ctx / den : 0.0f;
    x = a * w; y = b * w;
  }
"""

# The tilt homography applied to (xd, yd) (distortion._apply_tilt).
_TILT = """
    const float v0 = ctx * xd, v1 = -stx * sty * xd + cty * yd, v2 = sty * xd - cty * stx * yd + cty * ctx;
    const float iv = v2 != 0.0f ? 1.0f / v2 : 0.0f;
    const float px = v0 * iv, py = v1 * iv;
    dok = dok && v2 != 0.0f;"""

# d(x'', y'')/d(x, y) pushed through the tilt homography (distortion._apply_tilt: pull, chain).
_TILT_CHAIN = """
    {
      const float hx0 = (ctx - px * sty) * iv, hx1 = (-stx * sty - py * sty) * iv;
      const float hy0 = (0.0f - px * (-cty * stx)) * iv, hy1 = (cty - py * (-cty * stx)) * iv;
      const float a00 = hx0 * j00 + hy0 * j10, a10 = hx1 * j00 + hy1 * j10;
      const float a01 = hx0 * j01 + hy0 * j11, a11 = hx1 * j01 + hy1 * j11;
      j00 = a00; j01 = a01; j10 = a10; j11 = a11;
    }"""


def coefficients(k: int, source: str, offset: int = 0) -> str:
    """C declarations of the k coefficients' names (k1, k2, ..., tau_y) read from ``source[offset + i]``,
    and of the tilt's trig with 14."""
    if k == 0:
        return ""
    src = "  const float " + ", ".join(f"{n} = {source}[{offset + i}]" for i, n in enumerate(_NAMES[:k])) + ";\n"
    return src + (_TRIG if k == 14 else "")


def distort(k: int, jacobian: bool) -> str:
    """C statements: the k-coefficient model at (x, y) into ``xd, yd`` and ``dok`` (False where the
    model divides by zero), with d(xd, yd)/d(x, y) in ``j00, j01, j10, j11`` if ``jacobian``;
    the formulas and order of operations of :func:`distortion.distort_opencv`."""
    if k == 0:
        return "    float xd = x, yd = y; bool dok = true;" + (
            "\n    float j00 = 1.0f, j01 = 0.0f, j10 = 0.0f, j11 = 1.0f;" if jacobian else "")
    k3 = " + r2 * k3" if k >= 5 else ""
    src = [f"""
    const float r2 = x * x + y * y;
    const float num = 1.0f + r2 * (k1 + r2 * (k2{k3}));"""]
    if jacobian:
        src.append(f"""
    const float dnum = k1 + r2 * (2.0f * k2{" + 3.0f * r2 * k3" if k >= 5 else ""});""")
    if k >= 8:
        src.append("""
    const float den = 1.0f + r2 * (k4 + r2 * (k5 + r2 * k6));
    const float inv_den = den != 0.0f ? 1.0f / den : 0.0f;
    const float radial = num * inv_den;
    bool dok = den != 0.0f;""")
        if jacobian:
            src.append("""
    const float dden = k4 + r2 * (2.0f * k5 + 3.0f * r2 * k6);
    const float drad = (dnum - radial * dden) * inv_den;""")
    else:
        src.append("""
    const float radial = num;
    bool dok = true;""")
        if jacobian:
            src.append("""
    const float drad = dnum;""")
    src.append("""
    const float xy = x * y;
    float xd = x * radial + 2.0f * p1 * xy + p2 * (r2 + 2.0f * x * x);
    float yd = y * radial + p1 * (r2 + 2.0f * y * y) + 2.0f * p2 * xy;""")
    if k >= 12:
        src.append("""
    const float r4 = r2 * r2;
    xd = xd + s1 * r2 + s2 * r4;
    yd = yd + s3 * r2 + s4 * r4;""")
    if jacobian:
        src.append("""
    const float gx = s1 + 2.0f * s2 * r2, gy = s3 + 2.0f * s4 * r2;""" if k >= 12 else """
    const float gx = 0.0f, gy = 0.0f;""")
        src.append("""
    const float cross = 2.0f * xy * drad + 2.0f * p1 * x + 2.0f * p2 * y;
    float j00 = radial + 2.0f * x * x * drad + 2.0f * p1 * y + 6.0f * p2 * x + 2.0f * x * gx;
    float j01 = cross + 2.0f * y * gx;
    float j10 = cross + 2.0f * x * gy;
    float j11 = radial + 2.0f * y * y * drad + 6.0f * p1 * y + 2.0f * p2 * x + 2.0f * y * gy;""")
    if k == 14:
        src.append("\n    {" + _TILT + (_TILT_CHAIN if jacobian else "") + "\n    xd = px; yd = py;\n    }")
    return "".join(src)


def newton_steps(k: int, iterations: int) -> str:
    """C statements: ``iterations`` Newton steps moving (x, y) towards the distorted targets
    (tx, ty), from the exact inverse of the tilt with 14 coefficients (:func:`distortion._newton_iterations`).
    A point leaves the loop once its iterate is a fixed point, which gives the same result as
    running every step."""
    src = [_TILT_START if k == 14 else "", f"""
  for (int it = 0; it < {iterations}; ++it) {{""", distort(k, True), """
    const float det = j00 * j11 - j01 * j10;
    const float idet = fabsf(det) > 0.0f ? 1.0f / det : 0.0f;
    const float rx = tx - xd, ry = ty - yd;
    const float nx = x + (j11 * rx - j01 * ry) * idet, ny = y + (j00 * ry - j10 * rx) * idet;
    // A step is a function of (x, y) alone, so a point that stays put (or would keep its iterate
    // because the step is not finite) stays put for every remaining step: stop it there.
    if (!(fabsf(nx) <= 3.402823466e38f && fabsf(ny) <= 3.402823466e38f) || (nx == x && ny == y)) break;
    x = nx; y = ny;
  }
"""]
    return "".join(src)


def newton_body(k: int, iterations: int) -> str:
    """C body: ``iterations`` Newton steps of the k-coefficient model from ``t_r`` (2) with
    coefficients ``c_r`` (k) into ``out_r`` (2)."""
    return ("  const float tx = t_r[0], ty = t_r[1];\n  float x = tx, y = ty;\n" + coefficients(k, "c_r")
            + newton_steps(k, iterations) + "  out_r[0] = x; out_r[1] = y;\n")


def enabled(tx: mx.array, ty: mx.array, coeffs: list[mx.array]) -> bool:
    """Whether the kernel applies: CUDA, float32 throughout, an OpenCV model with coefficients."""
    return (len(coeffs) in (4, 5, 8, 12, 14) and all(a.dtype == mx.float32 for a in (tx, ty, *coeffs))
            and math.prod(mx.broadcast_shapes(tx.shape, ty.shape)) > 0 and on_cuda())


def newton_iterations(tx: mx.array, ty: mx.array, coeffs: list[mx.array], iterations: int) -> tuple[mx.array, mx.array]:
    """The undistorted (x, y) after ``iterations`` Newton steps towards the distorted targets
    (tx, ty), which broadcast with the coefficient arrays; one thread per point."""
    k = len(coeffs)
    c_shape = mx.broadcast_shapes(*(c.shape for c in coeffs))
    shape = mx.broadcast_shapes(tx.shape, ty.shape, c_shape)
    c = mx.stack([mx.broadcast_to(a, c_shape) for a in coeffs], axis=-1)
    # One camera: every thread reads the same k coefficients; otherwise k per point.
    c = c.reshape(1, k) if math.prod(c_shape) == 1 else mx.broadcast_to(c, (*shape, k))
    t = mx.stack([mx.broadcast_to(tx, shape), mx.broadcast_to(ty, shape)], axis=-1)
    out = launch(f"undistort_opencv{k}_{iterations}", newton_body(k, iterations), [c, t], ["c", "t"], [1, 1], (2,))
    return out[..., 0], out[..., 1]
