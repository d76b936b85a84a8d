"""The normalised eight-point algorithm for F (Hartley, "In defense of the eight-point algorithm", PAMI 1997).

Points are Hartley-normalised per image (centroid 0, mean distance sqrt 2; H&Z Alg. 11.1) and
``vec(Fn)`` is the smallest right singular vector of the weighted rows ``sqrt(w_i) a_i``,
``a_i = kron(x2_i, x1_i)``. The normal matrix ``M = A^T A`` squares A's condition number (with 8
points ``sigma_8(A)^2`` is often below float32's resolution of M), so M only gives the start: the
smallest eigenvector of ``M = R^T R`` (``linalg.eigh_smallest``, R from the thin QR of A) is refined
by inverse iteration on R itself (two triangular solves a step), whose error is ``eps cond(A)``
instead of ``eps cond(A)^2`` (Golub and Van Loan, 4th ed., sec. 8.2.2 and 5.3.3). The null vector
is then determined to an angle of about ``eps |A|_F / sigma_8(A)`` (Wedin), so
``sigma_8 <= 100 eps |A|_F`` flags a null space of dimension > 1 at working precision (fewer than 8
usable points, or every point on one plane, where ``F = [e']_x H`` for any e'); sigma_8 is the
smallest singular value of A on the null vector's complement, by inverse iteration from M's second
eigenvector. The rank-2 constraint is enforced by zeroing the smallest singular value
(``linalg.svd3``), and ``F = T2^T Fn T1``.
"""

from __future__ import annotations

import mlx.core as mx

from .. import linalg
from .._checks import eps
from .._indexing import take_rows
from ..linalg.qr import qr_columns
from ..linalg.triangular import substitute
from ..homography._common import safe_div
from ..homography.dlt import hartley_normalization, normalize_points
from .nullspace import design_rows

# sigma_8(A) must exceed this many eps |A|_F: the null vector is then accurate to about 1 / _GAP_EPS.
_GAP_EPS = 100.0
# Inverse-iteration steps on R after the start from M's eigenvectors.
_REFINE = 1


def rank2(f: mx.array) -> mx.array:
    """Nearest rank-2 matrix in the Frobenius norm (H&Z sec. 11.1.1): the smallest singular value zeroed."""
    u, s, vt = linalg.svd3(f)
    s = s * mx.array([1.0, 1.0, 0.0], dtype=s.dtype)
    return linalg.matmul(u * s[..., None, :], vt)


def unit_frobenius(f: mx.array) -> mx.array:
    """f / |f|_F with the sign making the largest-magnitude entry positive (a canonical representative)."""
    flat = f.reshape(*f.shape[:-2], 9)
    n = mx.sqrt(mx.sum(flat * flat, axis=-1))
    big = take_rows(flat, mx.stop_gradient(mx.argmax(mx.abs(flat), axis=-1))[..., None], axis=-1)[..., 0]
    scale = mx.where(big < 0, -n, n)
    return safe_div(f, scale[..., None, None], (n > 0)[..., None, None])


def hartley_pair(x1: mx.array, x2: mx.array, w: mx.array):
    """Normalised points of both images and the transforms' (centroid, scale) pairs."""
    c1, s1 = hartley_normalization(x1, w)
    c2, s2 = hartley_normalization(x2, w)
    return normalize_points(x1, c1, s1), normalize_points(x2, c2, s2), (c1, s1, c2, s2)


def _transform(c: mx.array, s: mx.array) -> mx.array:
    """``T = [[s, 0, -s cx], [0, s, -s cy], [0, 0, 1]]`` (*, 3, 3)."""
    zero, one = mx.zeros_like(s), mx.ones_like(s)
    return mx.stack([s, zero, -s * c[..., 0], zero, s, -s * c[..., 1], zero, zero, one], -1).reshape(*s.shape, 3, 3)


def denormalize_f(fn: mx.array, norm) -> mx.array:
    """``F = T2^T Fn T1`` for (*, ..., 3, 3) fn; the transforms broadcast over fn's extra middle axes."""
    c1, s1, c2, s2 = norm
    t1, t2 = _transform(c1, s1), _transform(c2, s2)
    extra = fn.ndim - t1.ndim
    t1 = t1.reshape(*t1.shape[:-2], *([1] * extra), 3, 3)
    t2 = t2.reshape(*t2.shape[:-2], *([1] * extra), 3, 3)
    return linalg.matmul(t2.swapaxes(-1, -2), linalg.matmul(fn, t1))


def _weighted_rows(xn1: mx.array, xn2: mx.array, w: mx.array) -> mx.array:
    """``sqrt(w_i) a_i`` (*, max(N, 9), 9) scaled to unit Frobenius norm; zero rows pad N < 9 (QR needs m >= n)."""
    a = design_rows(xn1, xn2) * mx.sqrt(mx.maximum(w, 0))[..., None]
    if a.shape[-2] < 9:
        a = mx.concatenate([a, mx.zeros((*a.shape[:-2], 9 - a.shape[-2], 9), dtype=a.dtype)], axis=-2)
    norm = mx.sqrt(mx.sum(a * a, axis=(-2, -1)))[..., None, None]
    return safe_div(a, norm, norm > 0)


def _floored(r: mx.array) -> mx.array:
    """R with diagonal entries below ``eps`` raised to it (a rounding-size change for ``|R|_F <= 1``)."""
    d = mx.diagonal(r, axis1=-2, axis2=-1)
    return r + (mx.maximum(d, eps(r.dtype)) - d)[..., None, :] * mx.eye(r.shape[-1], dtype=r.dtype)


def _max_scaled(x: mx.array) -> mx.array:
    """x (*, n, 1) over its largest magnitude: keeps the inverse iteration's growth (up to 1/eps per solve) finite."""
    m = mx.stop_gradient(mx.max(mx.abs(x), axis=-2, keepdims=True))
    return x / mx.where(m > 0, m, 1.0)


def _inverse_iteration(r: mx.array, x: mx.array) -> mx.array:
    """Unit x (*, n, 1) after ``_REFINE`` steps ``x <- R^-1 R^-T x`` (the smallest right singular vector of R)."""
    r = _floored(r)
    for _ in range(_REFINE):
        x = _max_scaled(substitute(r, _max_scaled(substitute(r.swapaxes(-1, -2), x, upper=False)), upper=True))
        x = x / mx.sqrt(mx.sum(x * x, axis=-2, keepdims=True))
    return x


def _second_singular_value(r: mx.array, v: mx.array, start: mx.array) -> mx.array:
    """``min |R u|`` over unit u orthogonal to the unit null vector v (*, 9): sigma_8 of R, (*).

    The Householder reflection H with ``H v = +-e_9`` spans v's complement by its first 8 columns, so
    ``R H[:, :8]`` has no near-null direction left; the smallest singular value of its triangular
    factor comes by inverse iteration from ``H start`` (*, 9, 1).
    """
    e9 = mx.array([0.0] * 8 + [1.0], dtype=r.dtype)
    w = v + mx.where(v[..., 8:] >= 0, 1.0, -1.0).astype(r.dtype) * e9
    h = mx.eye(9, dtype=r.dtype) - 2.0 * w[..., :, None] * w[..., None, :] / mx.sum(w * w, axis=-1)[..., None, None]
    r2 = qr_columns(linalg.matmul(r, h[..., :, :8]))[1]
    u = _inverse_iteration(r2, linalg.matmul(h, start)[..., :8, :])
    return mx.sqrt(mx.sum(linalg.matmul(r2, u) ** 2, axis=(-2, -1)))


def eight_point_normalized(xn1: mx.array, xn2: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Rank-2 least-squares Fn (*, 3, 3) of unit norm from normalised points (*, N, 2), weights (*, N); ok (*)."""
    a = _weighted_rows(xn1, xn2, w)
    r = qr_columns(a)[1]
    _, start, found = linalg.eigh_smallest(linalg.matmul(r.swapaxes(-1, -2), r), k=2, iterations=2)
    v = _inverse_iteration(r, start[..., :1])[..., 0]
    s8 = _second_singular_value(r, v, start[..., 1:])
    fn = v.reshape(*v.shape[:-1], 3, 3)
    finite = mx.all(mx.isfinite(fn), axis=(-2, -1))
    fn = rank2(mx.where(finite[..., None, None], fn, mx.eye(3, dtype=fn.dtype)))
    return fn, found & finite & (s8 > _GAP_EPS * eps(a.dtype))


def eight_point(x1: mx.array, x2: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Normalised eight-point F (*, 3, 3) (unit Frobenius norm) from pixels (*, N, 2) and weights (*, N); ok (*)."""
    xn1, xn2, norm = hartley_pair(x1, x2, w)
    fn, ok = eight_point_normalized(xn1, xn2, w)
    return unit_frobenius(denormalize_f(fn, norm)), ok
