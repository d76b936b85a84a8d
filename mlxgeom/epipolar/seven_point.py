"""The seven-point algorithm (H&Z sec. 11.1.2): F in a 2-dimensional null space with det F = 0.

The 7x9 system's null space ``F = F1 + a F2`` (Householder QR, :mod:`.nullspace`) meets the
cubic ``det(F1 + a F2) = 0``, whose real roots are found in closed form (Cardano's formula for one
real root, the trigonometric form for three; Press et al., "Numerical Recipes", 3rd ed., sec. 5.6)
and polished by two Newton steps. Up to 3 candidates with a mask; no branch on data.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._vmap import all_of
from ..homography._common import safe_div, safe_sqrt
from ..lie._scalar import sin_cos
from ..lie.so3 import cross
from .nullspace import design_rows, null_space


def _det_rows(r0: mx.array, r1: mx.array, r2: mx.array) -> mx.array:
    """det of the 3x3 matrix with rows r0, r1, r2 (each (*, 3)): r0 . (r1 x r2)."""
    return mx.sum(r0 * cross(r1, r2), axis=-1)


def det_cubic(f1: mx.array, f2: mx.array) -> list[mx.array]:
    """Coefficients ``[c0, c1, c2, c3]`` of ``det(f1 + a f2) = sum c_k a^k`` (det is trilinear in the rows)."""
    a = [f1[..., i, :] for i in range(3)]
    b = [f2[..., i, :] for i in range(3)]
    c0 = _det_rows(*a)
    c1 = _det_rows(b[0], a[1], a[2]) + _det_rows(a[0], b[1], a[2]) + _det_rows(a[0], a[1], b[2])
    c2 = _det_rows(a[0], b[1], b[2]) + _det_rows(b[0], a[1], b[2]) + _det_rows(b[0], b[1], a[2])
    return [c0, c1, c2, _det_rows(*b)]


def _cbrt(x: mx.array) -> mx.array:
    return mx.sign(x) * mx.power(mx.abs(x), 1.0 / 3.0)


def cubic_real_roots(c: list[mx.array]) -> tuple[mx.array, mx.array]:
    """Real roots (*, 3) of ``c0 + c1 a + c2 a^2 + c3 a^3`` and their mask (*, 3), branch-free.

    One real root: ``t = cbrt(-q/2 + sqrt D) + cbrt(-q/2 - sqrt D)``; three (D <= 0):
    ``t_k = 2 sqrt(-p/3) cos(phi/3 - 2 pi k / 3)`` (a float64-accurate cosine), with the depressed cubic ``t^3 + p t + q`` of
    ``a = t - c2 / (3 c3)`` and ``D = (q/2)^2 + (p/3)^3``. Each root gets two Newton steps on the
    original cubic. A vanishing ``c3`` (a root at infinity) gives no valid root.
    """
    c0, c1, c2, c3 = c
    lead = mx.abs(c3) > 1e-12 * (mx.abs(c0) + mx.abs(c1) + mx.abs(c2) + mx.abs(c3))
    c3s = mx.where(lead, c3, 1)
    b2, b1, b0 = c2 / c3s, c1 / c3s, c0 / c3s
    p = b1 - b2 * b2 / 3
    q = 2 * b2**3 / 27 - b2 * b1 / 3 + b0
    d = (q / 2) ** 2 + (p / 3) ** 3
    three = d <= 0
    sd = safe_sqrt(d)
    t_one = _cbrt(-q / 2 + sd) + _cbrt(-q / 2 - sd)
    rp = safe_sqrt(-p / 3)
    cos_arg = mx.clip(safe_div(-q / 2, rp**3, rp > 0), -1, 1)
    phi = mx.arccos(cos_arg)
    t_three = [2 * rp * sin_cos((phi - 2 * math.pi * k) / 3)[1] for k in range(3)]
    t = mx.stack([mx.where(three, t_three[0], t_one), t_three[1], t_three[2]], axis=-1)
    roots = t - b2[..., None] / 3
    for _ in range(2):
        f = ((c3[..., None] * roots + c2[..., None]) * roots + c1[..., None]) * roots + c0[..., None]
        df = (3 * c3[..., None] * roots + 2 * c2[..., None]) * roots + c1[..., None]
        roots = roots - safe_div(f, df, df != 0)
    mask = all_of(mx.stack([mx.ones_like(three), three, three], axis=-1), lead[..., None], mx.isfinite(roots))
    return mx.where(mask, roots, 0), mask


def seven_point(x1: mx.array, x2: mx.array) -> tuple[mx.array, mx.array]:
    """Up to three F (*, 3, 3, 3) (candidate axis before the matrix) from 7 correspondences (*, 7, 2).

    Returns ``(F, ok)``: F with unit Frobenius norm, ok (*, 3) False for missing roots and for
    degenerate samples (dependent rows, e.g. repeated points). Use normalised coordinates for
    accuracy (the caller denormalises).
    """
    basis, full = null_space(design_rows(x1, x2))  # (*, 9, 2)
    f1 = basis[..., 0].reshape(*basis.shape[:-2], 3, 3)
    f2 = basis[..., 1].reshape(*basis.shape[:-2], 3, 3)
    roots, mask = cubic_real_roots(det_cubic(f1, f2))
    f = f1[..., None, :, :] + roots[..., None, None] * f2[..., None, :, :]
    norm = mx.sqrt(mx.sum(f * f, axis=(-2, -1), keepdims=True))
    f = safe_div(f, norm, norm > 0)
    return f, all_of(mask, full[..., None])
