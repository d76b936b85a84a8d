"""Four-point homography in closed form (the projective-basis construction).

A homography is fixed by four points in general position (Hartley and Zisserman, 2nd ed.,
Sect. 2.3 and Sect. 4.1). With ``P = [p1 p2 p3]`` and ``P l = det(P) p4`` (Cramer's rule,
``l_i`` = determinant of P with column i replaced by p4), ``A = P diag(l)`` sends the canonical
basis ``e1, e2, e3, (1, 1, 1)`` to ``p1..p4``; likewise ``B`` for the targets, and
``H ~ B adj(A)`` (Heckbert, "Fundamentals of texture mapping and image warping", 1989, Sect. 2.2.3).
Only 3x3 cross products and determinants: no 8x8 solve, no division, exact up to float
rounding, and ``l_i`` are the four triangle determinants that reveal collinear triples.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import linalg
from .._checks import cast_out, check_trailing
from .._vmap import all_of, any_of
from ..lie.so3 import cross
from ._common import check_correspondences, safe_div
from .dlt import denormalize, normalize_pair
from .result import ExactHomography

# Twice the triangle area, in Hartley-normalized units, below which three points count as collinear.
_COLLINEAR = 1e-3


def _tri(a: mx.array, b: mx.array, c: mx.array) -> mx.array:
    """det [[a; 1], [b; 1], [c; 1]] = twice the signed area of triangle abc, for (*, 2) points."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def _hom(p: mx.array) -> mx.array:
    return mx.concatenate([p, mx.ones(p.shape[:-1] + (1,), dtype=p.dtype)], axis=-1)


def four_point_normalized(xs: mx.array, us: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """Closed-form H for (*, 4, 2) point quadruples given in (roughly unit) normalized coordinates.

    Returns:
        ``(H, nondegenerate, same_orientation)``: H (*, 3, 3) (arbitrary scale, unnormalized);
        nondegenerate (*) False if three of the four source or target points are collinear;
        same_orientation (*) True if the four triangles keep (or all flip) their orientation,
        the sample check of OpenCV's RANSAC homography estimator.
    """
    p = [xs[..., i, :] for i in range(4)]
    q = [us[..., i, :] for i in range(4)]
    # l_i: Cramer's rule for P l = det(P) p4; with det(P) they are the four triangle determinants.
    lp = [_tri(p[3], p[1], p[2]), _tri(p[0], p[3], p[2]), _tri(p[0], p[1], p[3]), _tri(p[0], p[1], p[2])]
    lq = [_tri(q[3], q[1], q[2]), _tri(q[0], q[3], q[2]), _tri(q[0], q[1], q[3]), _tri(q[0], q[1], q[2])]
    ph = [_hom(x) for x in p[:3]]
    qh = [_hom(x) for x in q[:3]]
    # adj(P diag(l)) has rows l_j l_k (p_j x p_k) for cyclic (i, j, k).
    h = mx.zeros(xs.shape[:-2] + (3, 3), dtype=xs.dtype)
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        row = (lp[j] * lp[k])[..., None] * cross(ph[j], ph[k])
        col = lq[i][..., None] * qh[i]
        h = h + col[..., :, None] * row[..., None, :]
    small_p = mx.stack([mx.abs(d) for d in lp], axis=-1).min(axis=-1) < _COLLINEAR
    small_q = mx.stack([mx.abs(d) for d in lq], axis=-1).min(axis=-1) < _COLLINEAR
    flips = sum(((a * b) < 0).astype(mx.int32) for a, b in zip(lp, lq))
    finite = mx.all(mx.isfinite(h), axis=(-2, -1))
    return h, all_of(~small_p, ~small_q, finite), any_of(flips == 0, flips == 4)


def homography_from_4_points(src: Any, dst: Any) -> ExactHomography:
    """Exact homography through four correspondences, like ``cv2.getPerspectiveTransform``.

    Args:
        src, dst: (*, 4, 2) pixel coordinates; batch dims broadcast.

    Returns:
        :class:`ExactHomography` ``(H, ok)``: H (*, 3, 3) with ``H[..., 2, 2] = 1`` mapping src to
        dst (identity where not ok); ok (*) False if three source or three target points are
        (nearly) collinear or repeated.

    Example:
        >>> import mlx.core as mx
        >>> sq = mx.array([[0.0, 0], [1, 0], [1, 1], [0, 1]])
        >>> H, ok = homography_from_4_points(sq, 2 * sq + 1)
        >>> [round(v, 4) + 0.0 for v in H[0].tolist()], ok.item()
        ([2.0, 0.0, 1.0], True)
    """
    s, d, w, out_dtype = check_correspondences(src, dst, None)
    check_trailing(s, (4, 2), "src")
    sn, dn, norm = normalize_pair(s, d, w)
    hn, ok, _ = four_point_normalized(sn, dn)
    h, ok = finish(denormalize(hn, *norm), hn, ok)
    return ExactHomography(cast_out(h, out_dtype), ok)


def finish(h: mx.array, hn: mx.array, ok: mx.array) -> tuple[mx.array, mx.array]:
    """Scale pixel-space (*, 3, 3) ``h`` to ``h[2, 2] = 1``; ok also needs a finite, non-singular fit.

    Singularity is judged on ``hn``, the same map in Hartley-normalized coordinates, where a
    well-posed homography has a determinant of order 1 after scaling to unit Frobenius norm.
    Entries that are not ok become the identity so that no NaN or inf leaves the package.
    """
    eps = mx.finfo(h.dtype).eps
    scale = mx.max(mx.abs(h), axis=(-2, -1))
    h33 = h[..., 2, 2]
    good = all_of(ok, mx.abs(h33) > eps * scale)
    hs = safe_div(h, h33[..., None, None], good[..., None, None])
    fro2 = mx.sum(hn * hn, axis=(-2, -1))
    good = all_of(good, mx.all(mx.isfinite(hs), axis=(-2, -1)), linalg.det(hn) ** 2 > 1e-12 * fro2**3)
    eye = mx.broadcast_to(mx.eye(3, dtype=h.dtype), h.shape)
    return mx.where(good[..., None, None], hs, eye), good
