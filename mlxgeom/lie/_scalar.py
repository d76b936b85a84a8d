"""Scalar functions of the rotation angle shared by SO(3) and SE(3), safe at 0 and near pi.

Every coefficient c(t) of the closed forms is an even function of the angle t, so it is
evaluated from ``t2 = |phi|^2``: a Taylor polynomial in t2 below ``SMALL_T2`` and the
closed form above it, joined with the "double where" (both branches see only safe
inputs, so the untaken branch never puts NaN/inf into gradients).

Branch width ``SMALL_T2 = 1`` (t < 1 rad) is chosen for float32: above it, the closed
forms lose at most ~20 ulp to cancellation ((t - sin t)/t^3 at t = 1 keeps 0.16/1, and
the autodiff derivative of sin(t)/t loses ~3 eps/t^2); below it, 12 Taylor terms are
exact to float64 rounding (the next term is < 1e-19) and 7 to float32's (< 1e-11: the
terms fall faster than 1/(2k+1)!). ``(1 - cos t)/t^2`` is written ``2 sin^2(t/2)/t^2``, so
it has no cancellation at all.

Sums over the 3 components are written out (``norm2``): a reduction over a tiny axis is a
separate kernel, which ``mx.compile`` cannot fuse with its elementwise neighbours.

MLX's float64 ``sin``/``cos`` on the CPU are only float32-accurate (errors ~1.5e-7), so
float64 inputs use :func:`sin_cos` below: Cody-Waite reduction by pi/2 and Taylor
polynomials on [-pi/4, pi/4] (error < 4e-16 for |t| < 1e5).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import mlx.core as mx

SMALL_T2 = 1.0
_TERMS = 12
_TERMS_FLOAT32 = 7


def _series_from(coeff) -> tuple[float, ...]:
    return tuple(float(coeff(k)) for k in range(_TERMS))


def _fact(n: int) -> Fraction:
    return Fraction(math.factorial(n))


# Coefficients of the power series in t2 (Barfoot 2024, sec. 7.1.3; Sola et al. 2018, app. B).
SIN_T = _series_from(lambda k: (-1) ** k / _fact(2 * k + 1))  # sin t / t
ONE_MINUS_COS = _series_from(lambda k: (-1) ** k / _fact(2 * k + 2))  # (1 - cos t) / t^2
T_MINUS_SIN = _series_from(lambda k: (-1) ** k / _fact(2 * k + 3))  # (t - sin t) / t^3
COS_REST = _series_from(lambda k: (-1) ** k / _fact(2 * k + 4))  # (t^2/2 + cos t - 1) / t^4
SIN_REST = _series_from(lambda k: (-1) ** (k + 1) / _fact(2 * k + 5))  # (t - sin t - t^3/6) / t^5
ATAN_X = _series_from(lambda k: Fraction((-1) ** k, 2 * k + 1))  # atan(x) / x in x^2


def _inverse_jacobian_series() -> tuple[float, ...]:
    """D(t) = (1 - (t/2) cot(t/2)) / t^2 as the series quotient (2B - A) / (2B t^2)."""
    a = [(-1) ** k / _fact(2 * k + 1) for k in range(_TERMS + 2)]
    two_b = [2 * (-1) ** k / _fact(2 * k + 2) for k in range(_TERMS + 2)]
    num = [two_b[k + 1] - a[k + 1] for k in range(_TERMS + 1)]
    out: list[Fraction] = []
    for k in range(_TERMS):
        out.append((num[k] - sum(out[j] * two_b[k - j] for j in range(k))) / two_b[0])
    return tuple(float(c) for c in out)


INV_JAC = _inverse_jacobian_series()  # 1/12 + t^2/720 + t^4/30240 + ...

# pi/2 split so that k * _PIO2_HI is exact for |k| < 2^20 (fdlibm's pio2_1, pio2_1t).
_PIO2_HI = 1.57079632673412561417e00
_PIO2_LO = 6.07710050650619224932e-11
_SIN_R = _series_from(lambda k: (-1) ** k / _fact(2 * k + 1))
_COS_R = _series_from(lambda k: (-1) ** k / _fact(2 * k))


def horner(coeffs: tuple[float, ...], x: mx.array) -> mx.array:
    """sum_k coeffs[k] x^k."""
    acc = mx.full(x.shape, coeffs[-1], dtype=x.dtype)
    for c in reversed(coeffs[:-1]):
        acc = acc * x + c
    return acc


def series(coeffs: tuple[float, ...], t2: mx.array) -> mx.array:
    """A power series in t2 < SMALL_T2, cut at the terms t2's dtype can resolve."""
    return horner(coeffs if t2.dtype == mx.float64 else coeffs[:_TERMS_FLOAT32], t2)


def norm2(v: mx.array) -> mx.array:
    """Squared norm over the last axis (*, k) -> (*), as elementwise adds."""
    acc = v[..., 0] * v[..., 0]
    for i in range(1, v.shape[-1]):
        acc = acc + v[..., i] * v[..., i]
    return acc


def sin_cos(t: mx.array) -> tuple[mx.array, mx.array]:
    """(sin t, cos t), accurate to the dtype: MLX's own for float32, polynomials for float64."""
    if t.dtype != mx.float64:
        return mx.sin(t), mx.cos(t)
    k = mx.round(t * (2.0 / math.pi))
    r = (t - k * _PIO2_HI) - k * _PIO2_LO
    r2 = r * r
    s, c = r * horner(_SIN_R, r2), horner(_COS_R, r2)
    quad = k - 4.0 * mx.floor(k * 0.25)
    sin = mx.where(quad == 0, s, mx.where(quad == 1, c, mx.where(quad == 2, -s, -c)))
    cos = mx.where(quad == 0, c, mx.where(quad == 1, -s, mx.where(quad == 2, -c, s)))
    return sin, cos


class Angle(NamedTuple):
    """Angle data of a rotation vector, split for the double where.

    ``small`` marks t2 < SMALL_T2; ``t2_small`` is t2 there (0 elsewhere) for the series;
    ``t2``, ``t`` and the half-angle ``sh = sin(t/2)``, ``ch = cos(t/2)`` are taken at a safe
    value (SMALL_T2) where ``small``, so the closed forms never divide by zero.
    """

    small: mx.array
    t2_small: mx.array
    t2: mx.array
    t: mx.array
    sh: mx.array
    ch: mx.array


def angle_of(phi: mx.array) -> Angle:
    """Angle data of rotation vectors phi (*, 3)."""
    t2_raw = norm2(phi)
    small = t2_raw < SMALL_T2
    t2 = mx.where(small, SMALL_T2, t2_raw)
    t = mx.sqrt(t2)
    sh, ch = sin_cos(0.5 * t)
    return Angle(small, mx.where(small, t2_raw, 0.0), t2, t, sh, ch)


def _pick(a: Angle, coeffs: tuple[float, ...], closed: mx.array) -> mx.array:
    return mx.where(a.small, series(coeffs, a.t2_small), closed)


def sin_over_t(a: Angle) -> mx.array:
    """A = sin t / t."""
    return _pick(a, SIN_T, 2.0 * a.sh * a.ch / a.t)


def one_minus_cos_over_t2(a: Angle) -> mx.array:
    """B = (1 - cos t) / t^2 = 2 sin^2(t/2) / t^2 (no cancellation)."""
    return _pick(a, ONE_MINUS_COS, 2.0 * a.sh * a.sh / a.t2)


def t_minus_sin_over_t3(a: Angle) -> mx.array:
    """C = (t - sin t) / t^3."""
    return _pick(a, T_MINUS_SIN, (a.t - 2.0 * a.sh * a.ch) / (a.t2 * a.t))


def cos_rest_over_t4(a: Angle) -> mx.array:
    """E = (t^2/2 + cos t - 1) / t^4 = (1/2 - B) / t^2."""
    return _pick(a, COS_REST, (0.5 - 2.0 * a.sh * a.sh / a.t2) / a.t2)


def sin_rest_over_t5(a: Angle) -> mx.array:
    """F = (t - sin t - t^3/6) / t^5 = (C - 1/6) / t^2."""
    c = (a.t - 2.0 * a.sh * a.ch) / (a.t2 * a.t)
    return _pick(a, SIN_REST, (c - 1.0 / 6.0) / a.t2)


def inverse_jacobian_coeff(a: Angle) -> mx.array:
    """D = 1/t^2 - cot(t/2) / (2t); finite up to (not at) t = 2 pi."""
    return _pick(a, INV_JAC, 1.0 / a.t2 - a.ch / (2.0 * a.t * a.sh))


def half_angle_ratio(n2: mx.array, w: mx.array) -> mx.array:
    """2 atan2(n, w) / n with n = sqrt(n2), w >= 0: the quaternion log's scale factor.

    Series in x^2 = n2 / w^2 below x^2 = 0.01 (9 terms exact to float64, 4 to float32), the
    atan2 form above; at w = 0 (angle pi) the closed form is used and is exact.
    """
    small = n2 < 0.01 * w * w
    w_s = mx.where(small, w, 1.0)
    x2 = mx.where(small, n2 / (w_s * w_s), 0.0)
    n = mx.sqrt(mx.where(small, 1.0, n2))
    closed = 2.0 * mx.arctan2(n, w) / n
    terms = 9 if x2.dtype == mx.float64 else 4
    return mx.where(small, 2.0 / w_s * horner(ATAN_X[:terms], x2), closed)
