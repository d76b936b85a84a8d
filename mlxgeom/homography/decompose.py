"""Decomposition of a calibrated homography into (R, t, n), like ``cv2.decomposeHomographyMat``.

Analytic method of Malis and Vargas, "Deeper understanding of the homography decomposition for
vision-based control", INRIA RR-6303, 2007 (Sect. 4: ``S = H^T H - I``, its opposite minors
``M_ii``, and the closed forms for ``n``, ``t`` and ``R``), with OpenCV's choices of pivot
(largest ``|S_ii|``), sign conventions and pure-rotation test so that the solution sets match.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

from .. import linalg
from .._checks import as_floats, broadcast_batch, cast_out, check_trailing
from .._vmap import all_of
from ._common import safe_div, safe_sqrt

# OpenCV's threshold on max |H^T H - I| below which H is a pure rotation.
_ROTATION_EPS = 1e-3


class HomographyDecomposition(NamedTuple):
    """Candidate motions: R (*, 4, 3, 3), t (*, 4, 3) (translation over plane distance), n (*, 4, 3)
    plane normals in the first camera, valid (*, 4). A pure rotation gives one solution
    ``(H_norm, 0, 0)`` in slot 0 and invalid slots 1-3; otherwise all four are valid."""

    R: mx.array
    t: mx.array
    n: mx.array
    valid: mx.array


def _opposite_minor(s: mx.array, row: int, col: int) -> mx.array:
    x1, x2 = (1 if col == 0 else 0), (1 if col == 2 else 2)
    y1, y2 = (1 if row == 0 else 0), (1 if row == 2 else 2)
    return s[..., y1, x2] * s[..., y2, x1] - s[..., y1, x1] * s[..., y2, x2]


def _sign(x: mx.array) -> mx.array:
    return mx.where(x >= 0, 1.0, -1.0).astype(x.dtype)


def _unit(v: mx.array) -> mx.array:
    norm = safe_sqrt(mx.sum(v * v, axis=-1))
    return safe_div(v, norm[..., None], (norm > 0)[..., None])


def _normals(s: mx.array, m: dict[str, mx.array]) -> tuple[mx.array, mx.array, mx.array]:
    """npa, npb (*, 3) for OpenCV's pivot (largest |S_ii|), and the sign of that S_ii."""
    r00, r11, r22 = safe_sqrt(m["00"]), safe_sqrt(m["11"]), safe_sqrt(m["22"])
    e12, e02, e01 = _sign(m["12"]), _sign(m["02"]), _sign(m["01"])
    S = lambda i, j: s[..., i, j]  # noqa: E731
    cand = [
        (mx.stack([S(0, 0), S(0, 1) + r22, S(0, 2) + e12 * r11], -1),
         mx.stack([S(0, 0), S(0, 1) - r22, S(0, 2) - e12 * r11], -1)),
        (mx.stack([S(0, 1) + r22, S(1, 1), S(1, 2) - e02 * r00], -1),
         mx.stack([S(0, 1) - r22, S(1, 1), S(1, 2) + e02 * r00], -1)),
        (mx.stack([S(0, 2) + e01 * r11, S(1, 2) + r00, S(2, 2)], -1),
         mx.stack([S(0, 2) - e01 * r11, S(1, 2) - r00, S(2, 2)], -1)),
    ]
    a0, a1, a2 = mx.abs(S(0, 0)), mx.abs(S(1, 1)), mx.abs(S(2, 2))
    # OpenCV's tie-breaking: idx = 1 if |S00| < |S11| (then 2 if |S11| < |S22|), else 2 if |S00| < |S22|.
    idx = mx.where(a0 < a1, mx.where(a1 < a2, 2, 1), mx.where(a0 < a2, 2, 0))
    pick = lambda k: mx.where((idx == 0)[..., None], cand[0][k], mx.where((idx == 1)[..., None], cand[1][k], cand[2][k]))  # noqa: E731
    sii = mx.where(idx == 0, S(0, 0), mx.where(idx == 1, S(1, 1), S(2, 2)))
    return pick(0), pick(1), _sign(sii)


def _rotation(hn: mx.array, tstar: mx.array, n: mx.array, v: mx.array) -> mx.array:
    """R = H (I - (2 / v) t* n^T), sign-fixed to det(R) = +1."""
    eye = mx.eye(3, dtype=hn.dtype)
    r = linalg.matmul(hn, eye - safe_div(2.0, v, v > 0)[..., None, None] * tstar[..., :, None] * n[..., None, :])
    return r * _sign(linalg.det(r))[..., None, None]


def decompose_homography(H: Any, K: Any) -> HomographyDecomposition:
    """Decompose image-to-image homographies into rotation, translation and plane normal.

    Same solutions as ``cv2.decomposeHomographyMat(H, K)`` (up to order and float32 rounding):
    ``K^-1 H K`` is scaled by its middle singular value, ``S = Hn^T Hn - I`` and the analytic
    formulas of Malis and Vargas (INRIA RR-6303) give ``(Ra, ta, na), (Ra, -ta, -na), (Rb, tb, nb),
    (Rb, -tb, -nb)``, where ``x2 ~ (R + t n^T) x1`` for points on the plane ``n^T x1 = d``
    (t is divided by d).

    Args:
        H: (*, 3, 3) homography mapping image-1 pixels to image-2 pixels.
        K: (*, 3, 3) camera matrix (the same camera for both images); batch dims broadcast.

    Returns:
        :class:`HomographyDecomposition` ``(R, t, n, valid)`` with shapes (*, 4, 3, 3), (*, 4, 3),
        (*, 4, 3), (*, 4). valid is False for slots 1-3 of a pure rotation and for every slot of a
        singular K or H or non-finite input (whose outputs are then zeros, never NaN).

    Example:
        >>> import mlx.core as mx
        >>> K = mx.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        >>> dec = decompose_homography(mx.eye(3), K)
        >>> dec.valid.tolist()
        [True, False, False, False]
    """
    (h, k), out_dtype = as_floats(H, K, names=["H", "K"])
    check_trailing(h, (3, 3), "H")
    check_trailing(k, (3, 3), "K")
    broadcast_batch(h.shape[:-2], k.shape[:-2], names=["H", "K"])
    k_inv, k_ok = linalg.inv_ex(k)
    hn = linalg.matmul(k_inv, linalg.matmul(h, k))
    gram = linalg.matmul(mx.swapaxes(hn, -1, -2), hn)
    evals, _ = linalg.eigh(gram)
    sigma2 = safe_sqrt(evals[..., 1])
    ok = all_of(k_ok, sigma2 > 0, mx.all(mx.isfinite(hn), axis=(-2, -1)))
    hn = safe_div(hn, sigma2[..., None, None], ok[..., None, None])
    s = linalg.matmul(mx.swapaxes(hn, -1, -2), hn) - mx.eye(3, dtype=hn.dtype)
    rotation = mx.max(mx.abs(s), axis=(-2, -1)) < _ROTATION_EPS
    m = {f"{i}{j}": _opposite_minor(s, i, j) for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))}
    npa, npb, esii = _normals(s, m)
    tr = s[..., 0, 0] + s[..., 1, 1] + s[..., 2, 2]
    v = 2.0 * safe_sqrt(1 + tr - m["00"] - m["11"] - m["22"])
    r = safe_sqrt(2 + tr + v)
    n_t = safe_sqrt(2 + tr - v)
    na, nb = _unit(npa), _unit(npb)
    ta_star = (0.5 * n_t)[..., None] * ((esii * r)[..., None] * nb - n_t[..., None] * na)
    tb_star = (0.5 * n_t)[..., None] * ((esii * r)[..., None] * na - n_t[..., None] * nb)
    ra, rb = _rotation(hn, ta_star, na, v), _rotation(hn, tb_star, nb, v)
    ta, tb = (linalg.matmul(r_, t_[..., None])[..., 0] for r_, t_ in ((ra, ta_star), (rb, tb_star)))
    R = mx.stack([ra, ra, rb, rb], axis=-3)
    t = mx.stack([ta, -ta, tb, -tb], axis=-2)
    n = mx.stack([na, -na, nb, -nb], axis=-2)
    # Pure rotation: one solution (Hn, 0, 0), as OpenCV returns.
    rot = rotation[..., None, None, None]
    R = mx.where(rot, mx.broadcast_to(hn[..., None, :, :], R.shape), R)
    t, n = (mx.where(rotation[..., None, None], 0, a) for a in (t, n))
    slot0 = mx.array([True, False, False, False])
    finite = all_of(mx.all(mx.isfinite(R), axis=(-2, -1)), mx.all(mx.isfinite(t), -1), mx.all(mx.isfinite(n), -1))
    valid = all_of(ok[..., None], finite, mx.where(rotation[..., None], slot0, (v > 0)[..., None]))
    zero = lambda a, extra: mx.where(valid.reshape(valid.shape + (1,) * extra), a, 0)  # noqa: E731
    return HomographyDecomposition(*(cast_out(zero(a, k), out_dtype) for a, k in ((R, 2), (t, 1), (n, 1))), valid)
