"""OpenCV's radial-tangential lens distortion (4, 5, 8, 12 or 14 coefficients) and its inverse.

Coefficients follow OpenCV's order ``(k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4[, tau_x,
tau_y]]]])`` (OpenCV calib3d documentation, "Detailed Description"). On normalized camera
coordinates ``(x, y) = (X / Z, Y / Z)``, with ``r^2 = x^2 + y^2``:

    x'' = x (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)
          + 2 p1 x y + p2 (r^2 + 2 x^2) + s1 r^2 + s2 r^4
    y'' = y (same ratio) + p1 (r^2 + 2 y^2) + 2 p2 x y + s3 r^2 + s4 r^4

and with 14 coefficients the tilted-sensor homography of OpenCV's
``computeTiltProjectionMatrix(tau_x, tau_y)`` maps (x'', y'', 1) to the final point.

The functions here work on separate x and y component arrays that broadcast, return
their analytic Jacobians on request (used by the projection Jacobians and by the
Newton iterations of :func:`undistort_normalized`), and never branch on values.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import numpy as np

from .._checks import as_floats, cast_out, check_batch, eps
from .._compiled import compiled
from ..lie._scalar import sin_cos
from . import distortion_cuda
from .._vmap import all_of

OPENCV_NUM_COEFFS = (0, 4, 5, 8, 12, 14)


class Distorted(NamedTuple):
    """Distorted normalized coordinates, a validity mask and optional Jacobians.

    ``jac`` holds d(xd, yd)/d(x, y) as ``(j00, j01, j10, j11)``; ``jac_coeffs`` one
    ``(d xd, d yd)`` pair per coefficient, in the coefficients' order.
    """

    x: mx.array
    y: mx.array
    ok: mx.array
    jac: tuple[mx.array, mx.array, mx.array, mx.array] | None
    jac_coeffs: list[tuple[mx.array, mx.array]] | None


def check_opencv_coeffs(k: int) -> None:
    if k not in OPENCV_NUM_COEFFS:
        raise ValueError(f"dist: expected shape (*, k) with k in {OPENCV_NUM_COEFFS} (OpenCV model), got k = {k}")


def tilt_matrix(tau_x, tau_y) -> mx.array:
    """OpenCV's ``computeTiltProjectionMatrix``: (*, 3, 3) from tilt angles in radians.

    Multiplied out, ``R = Ry(tau_y) Rx(tau_x)`` followed by the projection onto z gives
    ``[[cos tx, 0, 0], [-sin tx sin ty, cos ty, 0], [sin ty, -cos ty sin tx, cos ty cos tx]]``.

    Example:
        >>> bool(mx.allclose(tilt_matrix(0.0, 0.0), mx.eye(3)))
        True
    """
    (tx, ty), out = as_floats(tau_x, tau_y, names=("tau_x", "tau_y"))
    check_batch(("tau_x", tx, 0), ("tau_y", ty, 0))
    tx, ty = mx.broadcast_arrays(tx, ty)
    ctx, stx, cty, sty = _tilt_trig(tx, ty)
    zero = mx.zeros_like(tx)
    flat = mx.stack([ctx, zero, zero, -stx * sty, cty, zero, sty, -cty * stx, cty * ctx], axis=-1)
    return cast_out(flat.reshape(*tx.shape, 3, 3), out)


def _tilt_trig(tau_x: mx.array, tau_y: mx.array) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """``(cos tau_x, sin tau_x, cos tau_y, sin tau_y)``; float64 through ``lie``'s ``sin_cos``
    (MLX's own float64 sin and cos are only float32-accurate on the CPU)."""
    stx, ctx = sin_cos(tau_x)
    sty, cty = sin_cos(tau_y)
    return ctx, stx, cty, sty


def _div_nonzero(a: mx.array | float, b: mx.array) -> mx.array:
    """``a / b`` where ``b != 0``, else 0, with zero gradients there; ``a`` must be finite where
    ``b = 0``. A 0/1 factor instead of the double mx.where: on the CPU mx.where costs ~30 multiplies."""
    okf = (b != 0).astype(b.dtype)
    return a * okf / (b + (1 - okf))


def distort_opencv(x: mx.array, y: mx.array, c: list[mx.array], jacobian: bool = False) -> Distorted:
    """Apply the OpenCV model to normalized (x, y); ``c`` lists k in {0,4,5,8,12,14} coefficients.

    Each coefficient array broadcasts against x and y. ``ok`` is False only where the tilt
    homography sends the point to infinity.
    """
    k = len(c)
    check_opencv_coeffs(k)
    one = mx.ones_like(x)
    if k == 0:
        z = mx.zeros_like(x)
        return Distorted(x, y, mx.ones(x.shape, dtype=mx.bool_), (one, z, z, one) if jacobian else None, [] if jacobian else None)
    k1, k2, p1, p2 = c[:4]
    k3 = c[4] if k >= 5 else None
    xx, yy, xy = x * x, y * y, x * y
    r2 = xx + yy
    r4 = r2 * r2
    num = 1 + r2 * (k1 + r2 * (k2 + (r2 * k3 if k3 is not None else 0.0)))
    dnum = k1 + r2 * (2 * k2 + (3 * r2 * k3 if k3 is not None else 0.0))
    if k >= 8:
        k4, k5, k6 = c[5:8]
        den = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
        dden = k4 + r2 * (2 * k5 + 3 * r2 * k6)
        ok_den = den != 0
        inv_den = _div_nonzero(1.0, den)
        radial = num * inv_den
    else:
        # No denominator: nothing to divide or mask.
        dden, ok_den, inv_den, radial = None, mx.ones(x.shape, dtype=mx.bool_), one, num
    xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * xx)
    yd = y * radial + p1 * (r2 + 2 * yy) + 2 * p2 * xy
    if k >= 12:
        s1, s2, s3, s4 = c[8:12]
        xd = xd + s1 * r2 + s2 * r4
        yd = yd + s3 * r2 + s4 * r4
    jac = jac_c = None
    if jacobian:
        drad = (dnum - radial * dden) * inv_den if dden is not None else dnum  # d radial / d r2
        # Scaling by 2 is exact: xx * drad2 rounds as 2 x x drad (the order of kernels/lens.cuh).
        drad2 = 2 * drad
        cross = xy * drad2 + 2 * p1 * x + 2 * p2 * y
        j00 = radial + xx * drad2 + 2 * p1 * y + 6 * p2 * x
        j11 = radial + yy * drad2 + 6 * p1 * y + 2 * p2 * x
        j01 = j10 = cross
        if k >= 12:
            gx, gy = s1 + 2 * s2 * r2, s3 + 2 * s4 * r2
            j00, j01, j10, j11 = j00 + 2 * x * gx, cross + 2 * y * gx, cross + 2 * x * gy, j11 + 2 * y * gy
        jac = (j00, j01, j10, j11)
        jac_c = _radial_tangential_coeff_jac(x, y, r2, r4, num, inv_den, xy, k)
    ok = ok_den
    if k == 14:
        return _apply_tilt(xd, yd, c[12], c[13], ok, jac, jac_c)
    return Distorted(xd, yd, ok, jac, jac_c)


def _radial_tangential_coeff_jac(x, y, r2, r4, num, inv_den, xy, k) -> list[tuple[mx.array, mx.array]]:
    z = mx.zeros_like(x)
    xi, yi = x * inv_den, y * inv_den
    out = [(xi * r2, yi * r2), (xi * r4, yi * r4), (2 * xy, r2 + 2 * y * y), (r2 + 2 * x * x, 2 * xy)]
    if k >= 5:
        out.append((xi * r4 * r2, yi * r4 * r2))
    if k >= 8:
        rad_over_den = -num * inv_den * inv_den
        out += [(x * rad_over_den * p, y * rad_over_den * p) for p in (r2, r4, r4 * r2)]
    if k >= 12:
        out += [(r2, z), (r4, z), (z, r2), (z, r4)]
    return out


def _apply_tilt(xd, yd, tau_x, tau_y, ok, jac, jac_c) -> Distorted:
    """Tilted-sensor homography of OpenCV's 14-coefficient model, with Jacobians."""
    ctx, stx, cty, sty = _tilt_trig(tau_x, tau_y)
    v0 = ctx * xd
    v1 = -stx * sty * xd + cty * yd
    v2 = sty * xd - cty * stx * yd + cty * ctx
    ok_v = v2 != 0
    inv = _div_nonzero(1.0, v2)
    px, py = v0 * inv, v1 * inv
    ok = all_of(ok, ok_v)
    if jac is None:
        return Distorted(px, py, ok, None, None)

    def pull(dv0, dv1, dv2):  # d(v0/v2, v1/v2) from dv
        return (dv0 - px * dv2) * inv, (dv1 - py * dv2) * inv

    hx = pull(ctx, -stx * sty, sty)  # d p / d xd
    hy = pull(0.0, cty, -cty * stx)  # d p / d yd

    def chain(dxd, dyd):
        return hx[0] * dxd + hy[0] * dyd, hx[1] * dxd + hy[1] * dyd

    a00, a10 = chain(jac[0], jac[2])
    a01, a11 = chain(jac[1], jac[3])
    new_c = [chain(du, dv) for du, dv in jac_c]
    new_c.append(pull(-stx * xd, -ctx * sty * xd, -cty * ctx * yd - cty * stx))
    new_c.append(pull(mx.zeros_like(xd), -stx * cty * xd - sty * yd, cty * xd + sty * stx * yd - sty * ctx))
    return Distorted(px, py, ok, (a00, a01, a10, a11), new_c)


def _inverse_tilt_start(x: mx.array, y: mx.array, tau_x: mx.array, tau_y: mx.array) -> tuple[mx.array, mx.array]:
    """Undo the tilt homography exactly (a good Newton start): solve T [q, 1] ~ [p, 1]."""
    ctx, stx, cty, sty = _tilt_trig(tau_x, tau_y)
    # T is lower triangular: q_x from row 0, q_y from row 1, with w from row 2 (w = v2).
    # v0 = ctx qx = x w ; v1 = -stx sty qx + cty qy = y w ; w = sty qx - cty stx qy + cty ctx
    # Solve the 3x3 linear system in (qx, qy, w) by substitution.
    a = x / ctx  # qx = a w
    b = (y + stx * sty * a) / cty  # qy = b w
    den = 1.0 - sty * a + cty * stx * b
    w = _div_nonzero(cty * ctx, den)
    return a * w, b * w


class Undistorted(NamedTuple):
    x: mx.array
    y: mx.array
    converged: mx.array


def check_newton(iterations: int, tol: float | None) -> None:
    """Raise unless ``iterations`` is an integer >= 0 and ``tol`` is None or a number >= 0."""
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise TypeError(f"iterations: expected an integer >= 0, got {type(iterations).__name__}")
    if iterations < 0:
        raise ValueError(f"iterations: expected an integer >= 0, got {iterations}")
    if tol is None:
        return
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)):
        raise TypeError(f"tol: expected None or a number >= 0, got {type(tol).__name__}")
    if not tol >= 0:
        raise ValueError(f"tol: expected None or a number >= 0, got {tol}")


def newton_tol(dtype: mx.Dtype, tol: float | None = None) -> float:
    """The undistortion residual bound: ``tol``, or by default 16 eps of the dtype."""
    return 16 * eps(dtype) if tol is None else tol


def undistort_opencv(xd: mx.array, yd: mx.array, c: list[mx.array], iterations: int = 10,
                     tol: float | None = None) -> Undistorted:
    """Invert :func:`distort_opencv` by a fixed number of Newton steps (2x2 closed-form solves).

    The iterations run without gradient; one final Newton step is differentiable, so
    gradients are the implicit-function ones, ``dx = J^-1 (d target - d_coeffs f)``.
    ``converged``: residual ``|f(x) - target| <= tol (1 + |target|)`` (tol defaults to
    16 eps of the dtype), det J > 0 (the solution lies where the model is locally
    invertible, as a real lens) and everything finite.
    """
    if len(c) == 0:
        return Undistorted(xd, yd, all_of(mx.isfinite(xd), mx.isfinite(yd)))
    tol = newton_tol(xd.dtype, tol)
    c = _as_scalars(c, max(xd.ndim, yd.ndim))
    tx, ty = mx.stop_gradient(xd), mx.stop_gradient(yd)
    x, y = _newton_iterations(tx, ty, [mx.stop_gradient(a) for a in c], iterations)
    d = distort_opencv(x, y, c, jacobian=True)  # differentiable in the coefficients, J a constant
    j00, j01, j10, j11 = (mx.stop_gradient(a) for a in d.jac)
    det = j00 * j11 - j01 * j10
    rx, ry = xd - d.x, yd - d.y
    idet = _zero_unless(1 / det, mx.abs(det) > 0)
    xs, ys = x + (j11 * rx - j01 * ry) * idet, y + (j00 * ry - j10 * rx) * idet
    # |r| <= tol (1 + |t|) compared squared: one square root instead of two.
    bound = tol * (1 + mx.sqrt(tx * tx + ty * ty))
    res2 = mx.stop_gradient(rx * rx + ry * ry)
    conv = all_of(res2 <= bound * bound, det > 0, _finite(xs, ys))
    if len(c) >= 8:  # a denominator or the tilt can fail; a bool & costs ~5 multiplies on the CPU
        conv = all_of(conv, d.ok)
    return Undistorted(xs, ys, conv)


def _as_scalars(c: list[mx.array], ndim: int) -> list[mx.array]:
    """One camera's coefficients as 0-d arrays where that leaves the broadcast shape unchanged.

    A (1,) coefficient broadcast against (N,) points makes MLX's fused CPU kernels take their
    strided loop (a stride-0 input), a 0-d one their contiguous, vectorized loop: ~1.3x per
    Newton step at 262k points.
    """
    return [a.reshape(()) if a.size == 1 and a.ndim <= ndim else a for a in c]


def _newton_iterations(tx: mx.array, ty: mx.array, c: list[mx.array], iterations: int) -> tuple[mx.array, mx.array]:
    """``iterations`` Newton steps towards (tx, ty) from the exact inverse of the tilt (or from
    (tx, ty)); constants for autodiff. One kernel on CUDA (:mod:`distortion_cuda`)."""
    if distortion_cuda.enabled(tx, ty, c):
        return distortion_cuda.newton_iterations(tx, ty, c, iterations)
    x, y = _inverse_tilt_start(tx, ty, c[12], c[13]) if len(c) == 14 else (tx, ty)
    for _ in range(iterations):
        x, y = _newton_step(x, y, tx, ty, c)
    return mx.stop_gradient(x), mx.stop_gradient(y)


def _finite(*arrays: mx.array) -> mx.array:
    """All finite. mx.maximum propagates NaN; on the CPU this is ~10x faster than mx.isfinite."""
    m = mx.abs(arrays[0])
    for a in arrays[1:]:
        m = mx.maximum(m, mx.abs(a))
    return m <= mx.finfo(m.dtype).max


_SAME_SIZE_INT = {mx.float64: mx.int64, mx.float32: mx.int32, mx.float16: mx.int16, mx.bfloat16: mx.int16}


def _zero_unless(a: mx.array, keep: mx.array) -> mx.array:
    """``a`` where ``keep``, else +0, by a bit mask: on the CPU mx.where costs ~30 multiplies. For
    constants only (mx.view has no derivative): ``a`` and ``keep`` must not depend on a traced input."""
    bits = _SAME_SIZE_INT[a.dtype]
    return mx.view(mx.view(a, bits) & -keep.astype(bits), a.dtype)


@compiled
def _newton_step(x, y, tx, ty, c):
    """One Newton step, keeping (x, y) where the step is not finite. det = 0 gives an infinite step
    (1 / det) where kernels/lens.cuh takes a zero one: either way the iterate stays. Compiled: every
    step repeats one graph, so its ten fused kernels are built once and run ``iterations`` times
    (2.5-3x the eager step on the CPU at 262k points; about 9 s of g++ on a machine's first call)."""
    d = distort_opencv(x, y, c, jacobian=True)
    j00, j01, j10, j11 = d.jac
    idet = 1 / (j00 * j11 - j01 * j10)
    rx, ry = tx - d.x, ty - d.y
    dx, dy = (j11 * rx - j01 * ry) * idet, (j00 * ry - j10 * rx) * idet
    keep = _finite(x + dx, y + dy)
    return x + _zero_unless(dx, keep), y + _zero_unless(dy, keep)
