"""OpenCV's fisheye model (Kannala-Brandt with four coefficients) and its inverse.

OpenCV fisheye module documentation: with ``(a, b) = (X / Z, Y / Z)``, ``r = |(a, b)|`` and
``theta = atan(r)``,

    theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8),
    (x', y') = (theta_d / r) (a, b).

Kannala and Brandt, "A generic camera model and calibration method for conventional,
wide-angle, and fish-eye lenses", TPAMI 28(8), 2006. At r = 0 the factor theta_d / r is 1;
the code keeps that branch NaN-free in values and gradients (double where).
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._vmap import all_of
from .distortion import Distorted, Undistorted, _div_nonzero, _finite, _zero_unless, newton_tol

_SMALL_R2 = 1e-24


def _poly(theta2: mx.array, c: list[mx.array]) -> tuple[mx.array, mx.array]:
    """(1 + k1 t2 + ... + k4 t8, 1 + 3 k1 t2 + ... + 9 k4 t8) in Horner form."""
    k1, k2, k3, k4 = c
    p = 1 + theta2 * (k1 + theta2 * (k2 + theta2 * (k3 + theta2 * k4)))
    dp = 1 + theta2 * (3 * k1 + theta2 * (5 * k2 + theta2 * (7 * k3 + theta2 * 9 * k4)))
    return p, dp


def check_fisheye_coeffs(k: int) -> None:
    if k != 4:
        raise ValueError(f"dist: the fisheye model expects shape (*, 4) (k1, k2, k3, k4), got k = {k}")


def distort_fisheye(a: mx.array, b: mx.array, c: list[mx.array], jacobian: bool = False) -> Distorted:
    """Apply the fisheye model to normalized (a, b); ``c`` = [k1, k2, k3, k4] arrays."""
    check_fisheye_coeffs(len(c))
    r2 = a * a + b * b
    big = r2 > _SMALL_R2
    r = mx.sqrt(mx.where(big, r2, 1.0))
    theta = mx.where(big, mx.arctan(r), 0.0)
    theta2 = theta * theta
    p, dp = _poly(theta2, c)
    # theta / r -> 1 as r -> 0 (atan(r) / r = 1 - r^2 / 3 + ...).
    t_over_r = mx.where(big, theta / r, 1.0 - r2 / 3.0)
    scale = t_over_r * p
    ok = mx.ones(scale.shape, dtype=mx.bool_)
    if not jacobian:
        return Distorted(a * scale, b * scale, ok, None, None)
    # d scale / d r2 = (dtheta_d/dr * r - theta_d) / (2 r^3); series 2 (k1 - 1/3) / 2 at 0.
    dth_dr = 1.0 / (1.0 + mx.where(big, r2, 0.0))
    theta_d = theta * p
    g_exact = (dp * dth_dr * r - theta_d) / (2.0 * r * r2)
    g = mx.where(big, g_exact, c[0] - 1.0 / 3.0)
    jac = (scale + 2 * a * a * g, 2 * a * b * g, 2 * a * b * g, scale + 2 * b * b * g)
    powers, t = [], t_over_r
    for _ in range(4):
        t = t * theta2
        powers.append((a * t, b * t))
    return Distorted(a * scale, b * scale, ok, jac, powers)


def undistort_fisheye(xd: mx.array, yd: mx.array, c: list[mx.array], iterations: int = 10,
                      tol: float | None = None) -> Undistorted:
    """Invert :func:`distort_fisheye`: Newton on theta_d(theta) = |(xd, yd)| as OpenCV's
    ``fisheye::undistortPoints`` (without its clamp of theta_d to pi/2: the solve is
    exact wherever theta < pi/2), fixed iterations.

    The final Newton step is differentiable (implicit-function gradients). ``converged``:
    the residual ``|theta_d(theta) - theta_d| <= tol (1 + theta_d)``, ``0 <= theta < pi/2``,
    d theta_d / d theta > 0 and finite results.
    """
    check_fisheye_coeffs(len(c))
    tol = newton_tol(xd.dtype, tol)
    r2d = xd * xd + yd * yd
    big = r2d > _SMALL_R2
    target = mx.sqrt(mx.where(big, r2d, 1.0))
    target_c = mx.where(big, target, 0.0)
    cs = [mx.stop_gradient(k) for k in c]
    t_sg = mx.stop_gradient(target_c)
    theta = t_sg
    for _ in range(iterations):
        p, dp = _poly(theta * theta, cs)
        step = (t_sg - theta * p) / dp  # not finite where dp = 0: theta stays, as with a zero step
        theta = theta + _zero_unless(step, _finite(theta + step))
    theta = mx.stop_gradient(theta)
    p_sg, dp_sg = _poly(theta * theta, cs)
    p, _ = _poly(theta * theta, c)
    res = target_c - theta * p
    theta = theta + _div_nonzero(res, dp_sg)
    # scale = tan(theta) / theta_d, with tan(theta)/theta_d -> 1 / p(0) = 1 as theta_d -> 0.
    safe_t = mx.where(big, target, 1.0)
    scale = mx.where(big, mx.tan(theta) / safe_t, 1.0)
    conv = all_of(mx.abs(mx.stop_gradient(res)) <= tol * (1 + t_sg), theta >= 0, theta < math.pi / 2)
    conv = all_of(conv, dp_sg > 0, mx.isfinite(scale * xd), mx.isfinite(scale * yd))
    return Undistorted(xd * scale, yd * scale, conv)
