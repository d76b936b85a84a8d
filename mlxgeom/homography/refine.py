"""Levenberg-Marquardt refinement of homographies on SL(3).

Parametrization: ``H <- H sl3_exp(d)`` with ``d`` in R^8 (right update; the sl(3) generators of
Benhimane and Malis, IROS 2004, as ordered by :func:`mlxgeom.lie.sl3_hat`), so the 8 degrees of
freedom carry no scale gauge. The cost is the (weighted) reprojection error in the destination
image, ``sum_i w_i |u_i - pi(H x_i)|^2``, or the symmetric transfer error that adds
``|x_i - pi(H^-1 u_i)|^2`` (H&Z eq. 4.7 and 4.6). Work happens in Hartley-normalized coordinates
(residuals rescaled to pixels) for conditioning. The analytic normal equations are handed to the
library's one Levenberg-Marquardt loop, :func:`mlxgeom.solve.lm_loop` (per-pair damping, a fixed
number of iterations).
"""

from __future__ import annotations

import math

from typing import Any

import mlx.core as mx

from .. import lie, linalg
from .._checks import broadcast_batch, cast_out, check_trailing
from .._vmap import all_of
from ..solve import lm_loop
from ._common import check_correspondences, drop_invalid, safe_div, spread_ok
from .dlt import denormalize, normalize_h, normalize_pair
from .minimal import finish
from .result import RefinedHomography

_ERRORS = ("reprojection", "symmetric")


def _apply(h: mx.array, x: mx.array) -> mx.array:
    """Homogeneous h [x; 1] for h (B, 3, 3), x (B, N, 2) -> (B, N, 3)."""
    return h[:, None, :, 0] * x[..., 0:1] + h[:, None, :, 1] * x[..., 1:2] + h[:, None, :, 2]


def _generator_columns(v: tuple) -> tuple:
    """``G_k v`` for the 8 sl(3) generators in :func:`mlxgeom.lie.sl3_hat`'s order, v = (v0, v1, v2):
    8 triples of entries, None where the entry is 0 (the generators are sparse)."""
    v0, v1, v2 = v
    return ((v2, None, None), (None, v2, None), (v1, None, None), (None, v0, None),
            (v0, -v1, None), (None, -v1, v2), (None, None, v0), (None, None, v1))


def _residual_rows(y: mx.array, m: list, v: tuple, target: mx.array, scale: mx.array) -> tuple[list, list, mx.array]:
    """Rows of the residual pi(y) - target (2 arrays (B, N)), of its Jacobian (2 x 8 arrays) and
    the mask (B, N) of points not sent to infinity.

    ``y`` (B, N, 3) is homogeneous with ``dy / dd_k = M G_k v``; ``m`` holds M's rows as
    triples (arrays (B, 1) or floats). By the chain rule row a of the Jacobian is
    ``alpha_a . (G_k v)`` with ``alpha_a = (M_a - pi_a M_2) / (y_2 scale)``. Everything is
    divided by ``scale`` (B) to return to pixel units; points with |y_2| ~ 0 get zero rows.
    """
    w = y[..., 2]
    good = mx.abs(w) > 1e-9
    inv = safe_div(mx.ones_like(w), w, good) / scale[:, None]
    cols = _generator_columns(v)
    res, jac = [], []
    for a in range(2):
        p = y[..., a] * inv * scale[:, None]
        res.append(mx.where(good, (p - target[..., a]) / scale[:, None], 0))
        alpha = [inv * (m[a][c] - p * m[2][c]) for c in range(3)]
        row = [sum(alpha[c] * g for c, g in enumerate(col) if g is not None) for col in cols]
        jac.append([mx.where(good, j, 0) for j in row])
    return res, jac, good


def _linearize(h: mx.array, xn: mx.array, un: mx.array, w: mx.array, ks: mx.array, kd: mx.array,
               symmetric: bool) -> tuple[mx.array, mx.array, mx.array]:
    """Cost ``0.5 sum_i w_i |r_i|^2`` (B) in pixels (inf where a used point goes to infinity) and
    the Gauss-Newton system (J^T W J (B, 8, 8), J^T W r (B, 8)) at h, for the right update H exp(d)."""
    x3 = (xn[..., 0], xn[..., 1], mx.ones_like(xn[..., 0]))
    # d(H exp(d) x) / dd_k = H G_k x
    h_rows = [[h[:, a, c][:, None] for c in range(3)] for a in range(3)]
    res, jac, good = _residual_rows(_apply(h, xn), h_rows, x3, un, kd)
    if symmetric:
        hinv, _ = linalg.inv_ex(h)
        z = _apply(hinv, un)
        # (H exp(d))^-1 = exp(-d) H^-1, so dz/dd_k = -G_k z.
        minus_eye = [[-1.0 if a == c else 0.0 for c in range(3)] for a in range(3)]
        res_b, jac_b, good_b = _residual_rows(z, minus_eye, (z[..., 0], z[..., 1], z[..., 2]), xn, ks)
        res, jac, good = res + res_b, jac + jac_b, all_of(good, good_b)
    e2 = mx.where(good, w * sum(r * r for r in res), mx.inf)
    return (0.5 * mx.sum(mx.where(w > 0, e2, 0), axis=-1), *linalg.gauss_newton_system(jac, res, w))


def lm_normalized(hn: mx.array, xn: mx.array, un: mx.array, w: mx.array, ks: mx.array, kd: mx.array, iterations: int,
                  symmetric: bool) -> tuple[mx.array, mx.array]:
    """Run ``iterations`` steps of :func:`mlxgeom.solve.lm_loop` from hn (B, 3, 3) in normalized
    coordinates, right update ``Hn sl3_exp(d)``; return (hn, weighted sum of squared pixel errors)."""
    fro = mx.sqrt(mx.sum(hn * hn, axis=(-2, -1)))
    hn = safe_div(hn, fro[:, None, None], (fro > 0)[:, None, None])

    def linearize(h: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        return _linearize(h, xn, un, w, ks, kd, symmetric)

    res = lm_loop(linearize, hn, lambda h, d: linalg.matmul(h, lie.sl3_exp(d)), hn.shape[:1], max_iters=iterations)
    return res.x, 2.0 * res.cost


def lm_refine(h: mx.array, src: mx.array, dst: mx.array, w: mx.array, iterations: int,
              symmetric: bool) -> tuple[mx.array, mx.array, mx.array]:
    """Pixel-space wrapper of :func:`lm_normalized` for (B, ...) inputs: returns (H unnormalized, Hn, cost)."""
    xn, un, norm = normalize_pair(src, dst, w)
    hn, cost = lm_normalized(normalize_h(h, norm), xn, un, w, norm[1], norm[3], iterations, symmetric)
    return denormalize(hn, *norm), hn, cost


def refine_homography(H: Any, src: Any, dst: Any, weights: Any | None = None, *, iterations: int = 10,
                      error: str = "reprojection") -> RefinedHomography:
    """Levenberg-Marquardt refinement of homographies, batched, on SL(3).

    Args:
        H: (*, 3, 3) initial homographies mapping src to dst (e.g. from :func:`find_homography`).
        src, dst: (*, N, 2) pixel correspondences.
        weights: optional (*, N) non-negative weights (an inlier mask works); 0 drops a point.
        iterations: fixed number of LM iterations (each one solve of an 8x8 SPD system per pair).
        error: ``"reprojection"`` (``|dst - pi(H src)|``, as ``cv2.findHomography`` refines) or
            ``"symmetric"`` (transfer error both ways).

    Returns:
        :class:`RefinedHomography` ``(H, ok, rms)``: refined (*, 3, 3) with ``H[2, 2] = 1`` (identity
        where not ok); ok (*) False for degenerate input (as in :func:`find_homography`); rms (*)
        weighted root-mean-square point error in pixels (averaged over both directions for ``"symmetric"``).

    Example:
        >>> import mlx.core as mx
        >>> x = mx.array([[0.0, 0], [4, 0], [4, 3], [0, 3], [2, 1]])
        >>> H, ok, rms = refine_homography(mx.eye(3), x, x + 0.5)
        >>> round(H[0, 2].item(), 3), ok.item(), rms.item() < 1e-3
        (0.5, True, True)
    """
    if error not in _ERRORS:
        raise ValueError(f"error must be one of {_ERRORS}, got {error!r}")
    s, d, w, out_dtype = check_correspondences(src, dst, weights)
    h0 = mx.array(H) if not isinstance(H, mx.array) else H
    check_trailing(h0, (3, 3), "H")
    batch = broadcast_batch(s.shape[:-2], h0.shape[:-2], names=["src/dst", "H"])
    n = s.shape[-2]
    b = math.prod(batch)  # explicit: MLX cannot infer -1 when N = 0
    s, d = (mx.broadcast_to(a, batch + (n, 2)).reshape(b, n, 2) for a in (s, d))
    w = mx.broadcast_to(w, batch + (n,)).reshape(b, n)
    h0 = mx.broadcast_to(h0.astype(s.dtype), batch + (3, 3)).reshape(b, 3, 3)
    s, d, w, valid = drop_invalid(s, d, w)
    h, hn, cost = lm_refine(h0, s, d, w, iterations, error == "symmetric")
    enough = all_of(mx.sum(valid.astype(mx.int32), -1) >= 4, spread_ok(s, w), spread_ok(d, w))
    h, ok = finish(h, hn, all_of(enough, mx.isfinite(cost)))
    terms = mx.sum(w, -1) * (2 if error == "symmetric" else 1)
    rms = mx.sqrt(safe_div(cost, terms, all_of(enough, mx.isfinite(cost))))
    return RefinedHomography(cast_out(h.reshape(batch + (3, 3)), out_dtype), ok.reshape(batch),
                             cast_out(rms.reshape(batch), out_dtype))
