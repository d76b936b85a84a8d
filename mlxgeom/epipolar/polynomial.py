"""All roots of small polynomials on the device: Aberth-Ehrlich iterations, branch-free.

All n roots are refined simultaneously (Aberth, Math. Comp. 27, 1973; Bini, "Numerical
computation of polynomial zeros by means of Aberth's method", Numer. Algorithms 13, 1996):
``z_i <- z_i - N_i / (1 - N_i sum_{j != i} 1 / (z_i - z_j))`` with the Newton correction
``N_i = f(z_i) / f'(z_i)``, cubically convergent for simple roots, from n points on the unit
circle (the caller scales the variable so that the roots' geometric mean modulus is 1). Only
values and derivatives of f are needed, so f can be evaluated in its best-conditioned form
(the five-point solver evaluates a 3x3 polynomial determinant instead of its expanded
coefficients, which lose ~1e-3 relative accuracy to cancellation in float32). Complex numbers
are (re, im) pairs of real arrays: elementwise ops only, a fixed iteration count and no host
sync, so it runs under ``mx.compile`` on every backend.
"""

from __future__ import annotations

import math
from typing import Callable

import mlx.core as mx

from .._vmap import all_of
from ..homography._common import safe_div

# Fixed Aberth iterations: 16 find 99.7 % of the five-point solutions in float32 (24: no more).
ITERATIONS = 16

Complex = tuple[mx.array, mx.array]


def cmul(a: Complex, b: Complex) -> Complex:
    """Complex product of (re, im) pairs."""
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def cdiv(a: Complex, b: Complex) -> Complex:
    """Complex quotient of (re, im) pairs; 0 where b = 0."""
    den = b[0] * b[0] + b[1] * b[1]
    good = den > 0
    return safe_div(a[0] * b[0] + a[1] * b[1], den, good), safe_div(a[1] * b[0] - a[0] * b[1], den, good)


def horner(c: mx.array, z: Complex) -> tuple[Complex, Complex]:
    """p(z) and p'(z) at complex z (*, K) for real coefficients c (*, 1, d + 1) in increasing powers."""
    pr = mx.broadcast_to(c[..., -1], z[0].shape)
    pi = mx.zeros_like(pr)
    dr, di = mx.zeros_like(pr), mx.zeros_like(pr)
    for k in range(c.shape[-1] - 2, -1, -1):
        dr, di = cmul((dr, di), z)
        dr, di = dr + pr, di + pi
        pr, pi = cmul((pr, pi), z)
        pr = pr + c[..., k]
    return (pr, pi), (dr, di)


def log_scale(c0: mx.array, cn: mx.array, n: int) -> mx.array:
    """``log rho = log |c0 / cn| / n``: rho is the geometric mean of the root moduli (clipped, finite)."""
    tiny = mx.array(1e-30, dtype=c0.dtype)
    return mx.clip((mx.log(mx.maximum(mx.abs(c0), tiny)) - mx.log(mx.maximum(mx.abs(cn), tiny))) / n, -20.0, 20.0)


def aberth(evaluate: Callable[[Complex], tuple[Complex, Complex]], n: int, shape: tuple[int, ...],
           dtype: mx.Dtype, iterations: int = ITERATIONS) -> Complex:
    """All n complex roots (re, im), each (*shape, n), of a degree-n function with roots near |z| = 1.

    ``evaluate((re, im))`` returns the value and derivative ``(f, f')`` at (*shape, n) points.

    Example:
        >>> import mlx.core as mx
        >>> c = mx.array([[[-0.25, 0.0, 1.0]]])  # z^2 - 1/4
        >>> zr, zi = aberth(lambda z: horner(c, z), 2, (1,), mx.float32)
        >>> sorted(round(v, 4) + 0.0 for v in zr[0].tolist()), [round(v, 4) + 0.0 for v in zi[0].tolist()]
        ([-0.5, 0.5], [0.0, 0.0])
    """
    angle = [2 * math.pi * k / n + 0.4 for k in range(n)]
    zr = mx.broadcast_to(mx.array([math.cos(a) for a in angle], dtype=dtype), (*shape, n))
    zi = mx.broadcast_to(mx.array([math.sin(a) for a in angle], dtype=dtype), (*shape, n))
    off = ~mx.eye(n, dtype=mx.bool_)
    for _ in range(iterations):
        p, d = evaluate((zr, zi))
        newton = cdiv(p, d)
        dzr = zr[..., :, None] - zr[..., None, :]
        dzi = zi[..., :, None] - zi[..., None, :]
        sr, si = cdiv((mx.ones_like(dzr), mx.zeros_like(dzr)), (mx.where(off, dzr, 1), mx.where(off, dzi, 0)))
        s = (mx.sum(mx.where(off, sr, 0), axis=-1), mx.sum(mx.where(off, si, 0), axis=-1))
        t = cmul(newton, s)
        wr, wi = cdiv(newton, (1 - t[0], -t[1]))
        good = all_of(mx.isfinite(wr), mx.isfinite(wi))
        zr, zi = zr - mx.where(good, wr, 0), zi - mx.where(good, wi, 0)
    return zr, zi
