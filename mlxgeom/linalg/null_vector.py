"""Null vectors of small stacked-row systems (DLT, eight-point) without squaring their condition.

The unit ``v`` minimising ``|A v|`` is the smallest eigenvector of the normal matrix ``A^T A``,
but forming it squares A's condition number: with a minimal set of rows (4 points of a
homography, 8 of a fundamental matrix) ``sigma_{n-1}(A)^2`` is often below float32's resolution
of ``A^T A``, and its eigenvector is then wrong in any direction. Here ``A^T A = R^T R`` only gives
the start: R comes from the thin QR of A (:func:`mlxgeom.linalg.qr`), and inverse iteration on R
itself (two triangular solves a step) refines the vector with an error of ``eps cond(A)`` instead
of ``eps cond(A)^2`` (Golub and Van Loan, 4th ed., sec. 5.3.3 and 8.2.2). The vector is determined
to an angle of about ``eps |A|_F / sigma_{n-1}(A)`` (Wedin), so ``sigma_{n-1}`` is returned too,
measured on the complement of v (a Householder reflection, a QR and inverse iteration), without
forming a squared quantity.

That costs a QR of the rows, and a dozen small ops eagerly: for tall systems (a RANSAC refit on
hundreds of inliers, where the normal matrix is built from moments in one pass and its second
eigenvalue lies far above rounding unless the configuration is degenerate) the normal matrix's
eigenvector is used instead: :func:`determined_null_vector` picks by the static row count.
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx

from .._checks import eps
from .._vmap import all_of
from .eigh_smallest import eigh_smallest
from .products import matmul
from .qr import qr_columns
from .triangular import substitute

# Systems of up to this many rows per unknown are solved on their rows.
_ROWS_PER_UNKNOWN = 4
# sigma_{n-1} of the unit-norm rows must exceed this many eps: v is then accurate to about 1 / 100.
_GAP_EPS = 100.0
# Inverse-iteration steps on R after the start from A^T A's eigenvectors: for the null vector (the
# start is accurate to eps / sigma_{n-1}^2, one step to eps / sigma_{n-1}) and for sigma_{n-1}
# (its start is as poor, and a step gains only (sigma_{n-1} / sigma_{n-2})^2).
_REFINE = 1
_SIGMA_STEPS = 3


def _padded_unit(a: mx.array) -> mx.array:
    """A (*, max(m, n), n) scaled to unit Frobenius norm; zero rows pad m < n (the QR needs m >= n)."""
    m, n = a.shape[-2:]
    if m < n:
        a = mx.concatenate([a, mx.zeros((*a.shape[:-2], n - m, n), dtype=a.dtype)], axis=-2)
    norm = mx.sqrt(mx.sum(a * a, axis=(-2, -1)))[..., None, None]
    return a / mx.where(norm > 0, norm, 1.0)


def _floored(r: mx.array) -> mx.array:
    """R with diagonal entries below ``eps`` raised to it (a rounding-size change for ``|R|_F <= 1``)."""
    d = mx.diagonal(r, axis1=-2, axis2=-1)
    return r + (mx.maximum(d, eps(r.dtype)) - d)[..., None, :] * mx.eye(r.shape[-1], dtype=r.dtype)


def _max_scaled(x: mx.array) -> mx.array:
    """x (*, n, 1) over its largest magnitude: keeps the iteration's growth (up to 1/eps a solve) finite."""
    m = mx.stop_gradient(mx.max(mx.abs(x), axis=-2, keepdims=True))
    return x / mx.where(m > 0, m, 1.0)


def _inverse_iteration(r: mx.array, x: mx.array, steps: int) -> mx.array:
    """Unit x (*, n, 1) after ``steps`` steps ``x <- R^-1 R^-T x`` (towards R's smallest right singular vector)."""
    r = _floored(r)
    for _ in range(steps):
        x = _max_scaled(substitute(r, _max_scaled(substitute(r.swapaxes(-1, -2), x, upper=False)), upper=True))
        x = x / mx.sqrt(mx.sum(x * x, axis=-2, keepdims=True))
    return x


def _second_singular_value(r: mx.array, v: mx.array, start: mx.array) -> mx.array:
    """``min |R u|`` over unit u orthogonal to the unit null vector v (*, n), (*).

    The Householder reflection H with ``H v = +-e_n`` spans v's complement by its first n - 1
    columns, so ``R H[:, :n-1]`` has no near-null direction left; the smallest singular value of
    its triangular factor comes by inverse iteration from ``H start`` (*, n, 1).
    """
    n = r.shape[-1]
    e_n = mx.array([0.0] * (n - 1) + [1.0], dtype=r.dtype)
    w = v + mx.where(v[..., n - 1:] >= 0, 1.0, -1.0).astype(r.dtype) * e_n
    h = mx.eye(n, dtype=r.dtype) - 2.0 * w[..., :, None] * w[..., None, :] / mx.sum(w * w, axis=-1)[..., None, None]
    r2 = qr_columns(matmul(r, h[..., :, : n - 1]))[1]
    u = _inverse_iteration(r2, matmul(h, start)[..., : n - 1, :], _SIGMA_STEPS)
    return mx.sqrt(mx.sum(matmul(r2, u) ** 2, axis=(-2, -1)))


def null_vector(a: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """The unit vector v minimising ``|a v|`` for small row systems a (*, m, n), and its certificate.

    Args:
        a: (*, m, n) float rows (any m >= 1; zero rows, e.g. weighted-out points, are fine).

    Returns:
        ``(v (*, n), sigma (*), ok (*))``: v the smallest right singular vector (sign arbitrary),
        ``sigma`` the second-smallest singular value of ``a / |a|_F`` (v is accurate to an angle
        of about ``eps / sigma``: a null space of dimension > 1 at working precision gives
        ``sigma`` of rounding size), ok False where the start's eigen-solve failed (a not finite).

    Example:
        >>> import mlx.core as mx
        >>> v, sigma, ok = null_vector(mx.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
        >>> [round(abs(x), 6) for x in v.tolist()], ok.item()
        ([0.0, 0.0, 1.0], True)
    """
    r = qr_columns(_padded_unit(a))[1]
    _, start, ok = eigh_smallest(matmul(r.swapaxes(-1, -2), r), k=2, iterations=2)
    v = _inverse_iteration(r, start[..., :1], _REFINE)[..., 0]
    return v, _second_singular_value(r, v, start[..., 1:]), ok


def determined_null_vector(rows: Callable[[], mx.array], normal: Callable[[], mx.array], shape: tuple[int, int],
                           gap: float) -> tuple[mx.array, mx.array]:
    """``(v (*, n), ok (*))`` of an (m, n) row system (``shape``, static) given both ways and built
    only as used: near-minimal systems (up to ``_ROWS_PER_UNKNOWN`` rows per unknown) as the rows
    (*, m, n) through :func:`null_vector`, ok where ``sigma_{n-1} > 100 eps``; taller ones as the
    normal matrix (*, n, n) through :func:`normal_null_vector`, ok where its second eigenvalue
    exceeds ``gap`` of its trace."""
    if shape[0] <= _ROWS_PER_UNKNOWN * shape[1]:
        v, sigma, ok = null_vector(rows())
        return v, all_of(ok, sigma > _GAP_EPS * eps(v.dtype))
    return normal_null_vector(normal(), gap)


def normal_null_vector(m: mx.array, gap: float) -> tuple[mx.array, mx.array]:
    """``(v (*, n), ok (*))``: the smallest eigenvector of a normal matrix ``M = A^T A`` (*, n, n) of
    a tall system, ok where M is finite and non-zero and its second eigenvalue exceeds ``gap tr M``
    (a one-dimensional null space at M's resolution)."""
    tr = mx.sum(mx.diagonal(m, axis1=-2, axis2=-1), axis=-1)
    m = m / mx.where(tr > 0, tr, 1.0)[..., None, None]
    evals, evecs, found = eigh_smallest(m, k=2, iterations=2)
    return evecs[..., :, 0], all_of(found, tr > 0, evals[..., 1] > gap)
