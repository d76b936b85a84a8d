"""Normalized direct linear transform (Hartley and Zisserman, 2nd ed., Alg. 4.2).

The homography is the unit-norm minimizer of ``|A h|`` for the weighted DLT rows (two per
correspondence, H&Z eq. 4.3), exactly H&Z's estimator. The normal matrix ``M = A^T A`` (built
from moments, no (*, 2N, 9) intermediate) squares A's condition number: with 4 points its second
eigenvalue is often below float32's resolution (about 6% of well-posed 4-point sets were refused
or wrong), so near-minimal sets are solved on their rows by
:func:`mlxgeom.linalg.null_vector.null_vector` (QR and inverse iteration) and taller ones, such
as RANSAC's refits on the inliers, by M's smallest eigenvector (``linalg.eigh_smallest``).
Why the 9-vector rather than fixing ``h33 = 1``: the 8x8 gauge minimizes a different,
coordinate-dependent objective (3e-3 px away from H&Z's in float32) and is ill-posed when the
true ``h33`` is near 0. ``sigma_8 <= 100 eps |A|_F``, or M's second eigenvalue below ``1e-6 tr M``,
flags degenerate configurations (collinear or repeated points give a null space of dimension
> 1) without a host sync.
"""

from __future__ import annotations

import mlx.core as mx

from .. import linalg
from .._indexing import take
from .._vmap import all_of
from ..linalg.null_vector import determined_null_vector
from ._common import safe_div, safe_sqrt

# Taller sets (normal matrix): its second eigenvalue must exceed this fraction of its trace.
_GAP = 1e-6


def hartley_normalization(points: mx.array, weights: mx.array) -> tuple[mx.array, mx.array]:
    """Weighted centroid (*, 2) and scale (*) taking points to mean distance sqrt(2) from 0.

    ``T = [[s, 0, -s cx], [0, s, -s cy], [0, 0, 1]]`` (H&Z Alg. 4.2, step (i)). Where all weight is
    0 or all points coincide, the scale is 1 (the caller's degeneracy checks flag that pair).
    """
    wsum = mx.sum(weights, axis=-1)
    has = wsum > 0
    c = safe_div(mx.sum(weights[..., None] * points, axis=-2), wsum[..., None], has[..., None])
    dist = safe_sqrt(mx.sum((points - c[..., None, :]) ** 2, axis=-1))
    mean = safe_div(mx.sum(weights * dist, axis=-1), wsum, has)
    spread = mean > 0
    s = mx.where(spread, mx.sqrt(mx.array(2.0, dtype=points.dtype)) / mx.where(spread, mean, 1), 1)
    return c, s


def normalize_points(points: mx.array, c: mx.array, s: mx.array) -> mx.array:
    """Apply ``T`` from :func:`hartley_normalization` to (*, N, 2) points."""
    return (points - c[..., None, :]) * s[..., None, None]


def normalize_pair(src: mx.array, dst: mx.array, w: mx.array) -> tuple[mx.array, mx.array, tuple[mx.array, ...]]:
    """Both point sets (*, N, 2) Hartley-normalized, and ``norm = (c_src, s_src, c_dst, s_dst)``
    for :func:`denormalize` (``denormalize(hn, *norm)``) and :func:`normalize_h`."""
    cs, ks = hartley_normalization(src, w)
    cd, kd = hartley_normalization(dst, w)
    return normalize_points(src, cs, ks), normalize_points(dst, cd, kd), (cs, ks, cd, kd)


def normalize_h(h: mx.array, norm: tuple[mx.array, ...]) -> mx.array:
    """``Hn = T_dst H T_src^-1`` for (*, 3, 3) ``h``: :func:`denormalize` with the inverse transforms."""
    cs, ks, cd, kd = norm
    return denormalize(h, -cs * ks[..., None], 1 / ks, -cd * kd[..., None], 1 / kd)


def denormalize(hn: mx.array, c_src: mx.array, s_src: mx.array, c_dst: mx.array, s_dst: mx.array) -> mx.array:
    """``T_dst^-1 Hn T_src`` for (*, 3, 3) ``hn`` (H&Z Alg. 4.2, step (iii))."""
    zero, one = mx.zeros_like(s_src), mx.ones_like(s_src)
    t_src = mx.stack(
        [s_src, zero, -s_src * c_src[..., 0], zero, s_src, -s_src * c_src[..., 1], zero, zero, one], axis=-1
    ).reshape(*s_src.shape, 3, 3)
    inv_s = 1 / s_dst
    zero, one = mx.zeros_like(s_dst), mx.ones_like(s_dst)
    t_dst_inv = mx.stack(
        [inv_s, zero, c_dst[..., 0], zero, inv_s, c_dst[..., 1], zero, zero, one], axis=-1
    ).reshape(*s_dst.shape, 3, 3)
    return linalg.matmul(t_dst_inv, linalg.matmul(hn, t_src))


def normal_matrix(xn: mx.array, un: mx.array, w: mx.array) -> mx.array:
    """9x9 ``sum_i w_i (a_i1 a_i1^T + a_i2 a_i2^T)`` of the DLT rows, (*, 9, 9).

    With ``p = (x, y, 1)`` the rows are ``[p, 0, -u p]`` and ``[0, p, -v p]``, so M is built from
    four weighted 3x3 moment matrices ``sum w c p p^T`` with ``c`` in ``1, u, v, u^2 + v^2``: this
    needs 24 products per point instead of a (*, 2N, 9, 9) intermediate.
    """
    x, y = xn[..., 0], xn[..., 1]
    u, v = un[..., 0], un[..., 1]
    mono = mx.stack([x * x, x * y, x, y * y, y, mx.ones_like(x)], axis=-1)
    coef = w[..., None] * mx.stack([mx.ones_like(u), u, v, u * u + v * v], axis=-1)
    mom = mx.sum(coef[..., :, None] * mono[..., None, :], axis=-3)  # (*, 4, 6)
    idx = mx.array([0, 1, 2, 1, 3, 4, 2, 4, 5])
    blocks = take(mom, idx, axis=-1).reshape(*mom.shape[:-1], 3, 3)  # (*, 4, 3, 3)
    p0, pu, pv, puv = blocks[..., 0, :, :], blocks[..., 1, :, :], blocks[..., 2, :, :], blocks[..., 3, :, :]
    z = mx.zeros_like(p0)
    rows = [
        mx.concatenate([p0, z, -pu], axis=-1),
        mx.concatenate([z, p0, -pv], axis=-1),
        mx.concatenate([-pu, -pv, puv], axis=-1),
    ]
    return mx.concatenate(rows, axis=-2)


def _design_rows(xn: mx.array, un: mx.array, w: mx.array) -> mx.array:
    """The DLT rows ``sqrt(w) [p, 0, -u p]`` and ``sqrt(w) [0, p, -v p]``, p = (x, y, 1): (*, 2N, 9)."""
    p = mx.concatenate([xn, mx.ones_like(xn[..., :1])], axis=-1) * mx.sqrt(mx.maximum(w, 0))[..., None]
    z = mx.zeros_like(p)
    r1 = mx.concatenate([p, z, -un[..., :1] * p], axis=-1)
    r2 = mx.concatenate([z, p, -un[..., 1:] * p], axis=-1)
    return mx.stack([r1, r2], axis=-2).reshape(*p.shape[:-2], 2 * p.shape[-2], 9)


def dlt_normalized(xn: mx.array, un: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Least-squares algebraic fit in normalized coordinates.

    Args:
        xn, un: (*, N, 2) normalized source / destination points.
        w: (*, N) non-negative weights (0 drops a point).

    Returns:
        ``(Hn, ok)``: Hn (*, 3, 3) with unit Frobenius norm; ok (*) False where the null space is
        not one-dimensional (fewer than 4 usable points, collinear or repeated points) or not finite.
    """
    v, ok = determined_null_vector(lambda: _design_rows(xn, un, w), lambda: normal_matrix(xn, un, w),
                                   (2 * xn.shape[-2], 9), _GAP)
    hn = v.reshape(*v.shape[:-1], 3, 3)
    finite = mx.all(mx.isfinite(hn), axis=(-2, -1))
    return mx.where(finite[..., None, None], hn, 0), all_of(ok, finite)
