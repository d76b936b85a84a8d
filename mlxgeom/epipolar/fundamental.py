"""The normalised eight-point algorithm for F (Hartley, "In defense of the eight-point algorithm", PAMI 1997).

Points are Hartley-normalised per image (centroid 0, mean distance sqrt 2; H&Z Alg. 11.1) and
``vec(Fn)`` is the smallest right singular vector of the weighted rows ``sqrt(w_i) a_i``,
``a_i = kron(x2_i, x1_i)``: for near-minimal sets by :func:`mlxgeom.linalg.null_vector.null_vector`
(QR and inverse iteration: the normal matrix ``M = A^T A`` alone squares A's condition number, and
with 8 points ``sigma_8(A)^2`` is often below float32's resolution of it), for taller ones (RANSAC's
refits) as M's smallest eigenvector, M built from 36 weighted moments. ``sigma_8 <= 100 eps |A|_F``,
or M's second eigenvalue below ``1e-7 tr M``, flags a null space of dimension > 1 at working
precision (fewer than 8 usable points, or every point on one plane, where ``F = [e']_x H`` for
any e'). The rank-2 constraint is enforced by zeroing the
smallest singular value (``linalg.svd3``), and ``F = T2^T Fn T1``.
"""

from __future__ import annotations

import itertools

import mlx.core as mx
import numpy as np

from .. import linalg
from .._indexing import take, take_rows
from .._vmap import all_of
from ..linalg.null_vector import determined_null_vector
from ..homography._common import safe_div
from ..homography.dlt import hartley_normalization, normalize_points
from .nullspace import design_rows

# Taller sets (normal matrix): its second eigenvalue must exceed this fraction of its trace.
_GAP = 1e-7


_PAIRS = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]


def _moment_index() -> np.ndarray:
    """Flat index into the (6, 6) moments of ``M[(i, j), (k, l)] = sum w x2_i x2_k x1_j x1_l``."""
    pair = {p: n for n, p in enumerate(_PAIRS)}
    idx = np.zeros((9, 9), np.int32)
    for (i, j), (k, l) in itertools.product(itertools.product(range(3), repeat=2), repeat=2):
        idx[3 * i + j, 3 * k + l] = 6 * pair[tuple(sorted((i, k)))] + pair[tuple(sorted((j, l)))]
    return idx


_MOMENTS = _moment_index()


def normal_matrix(xn1: mx.array, xn2: mx.array, w: mx.array) -> mx.array:
    """``sum_i w_i a_i a_i^T`` (*, 9, 9) from 36 weighted moments (no (*, N, 9, 9) intermediate)."""
    def mono(x: mx.array) -> mx.array:
        h = [x[..., 0], x[..., 1], mx.ones_like(x[..., 0])]
        return mx.stack([h[i] * h[j] for i, j in _PAIRS], axis=-1)

    mom = mx.sum((w[..., None] * mono(xn2))[..., :, None] * mono(xn1)[..., None, :], axis=-3)
    flat = mom.reshape(*mom.shape[:-2], 36)
    return take(flat, mx.array(_MOMENTS.reshape(-1)), axis=-1).reshape(*mom.shape[:-2], 9, 9)


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


def eight_point_normalized(xn1: mx.array, xn2: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Rank-2 least-squares Fn (*, 3, 3) of unit norm from normalised points (*, N, 2), weights (*, N); ok (*)."""
    v, ok = determined_null_vector(lambda: design_rows(xn1, xn2) * mx.sqrt(mx.maximum(w, 0))[..., None],
                                   lambda: normal_matrix(xn1, xn2, w), (xn1.shape[-2], 9), _GAP)
    fn = v.reshape(*v.shape[:-1], 3, 3)
    finite = mx.all(mx.isfinite(fn), axis=(-2, -1))
    fn = rank2(mx.where(finite[..., None, None], fn, mx.eye(3, dtype=fn.dtype)))
    return fn, all_of(ok, finite)


def eight_point(x1: mx.array, x2: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Normalised eight-point F (*, 3, 3) (unit Frobenius norm) from pixels (*, N, 2) and weights (*, N); ok (*)."""
    xn1, xn2, norm = hartley_pair(x1, x2, w)
    fn, ok = eight_point_normalized(xn1, xn2, w)
    return unit_frobenius(denormalize_f(fn, norm)), ok
