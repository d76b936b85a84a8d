"""The homography as a model for the batched RANSAC/MSAC driver :func:`mlxgeom.solve.ransac`.

Hypotheses come from the closed-form four-point solver on Hartley-normalized points, with
OpenCV's orientation check on the sample (H&Z 2nd ed., Alg. 4.6); they are scored by the
reprojection error in the destination image; the local optimisation refits the normalized DLT
on the inliers and refines it by Levenberg-Marquardt on SL(3) (like ``cv2.RANSAC``).
"""

from __future__ import annotations

import mlx.core as mx

from .._compiled import eager
from .._vmap import all_of
from ..solve import RansacModel
from .dlt import denormalize, dlt_normalized, normalize_h, normalize_pair
from .minimal import four_point_normalized
from .refine import lm_refine


def transfer_sq_error(h: mx.array, x: mx.array, u: mx.array) -> mx.array:
    """Squared reprojection error |u - pi(h x)|^2, (B, T, N), for h (B, T, 3, 3), x, u (B, N, 2).

    Points mapped to (or behind) infinity get +inf so they never count as inliers.
    """
    px, py = x[:, None, :, 0], x[:, None, :, 1]
    row = [h[..., i, :, None] for i in range(3)]  # (B, T, 3, 1)
    X = row[0][..., 0, :] * px + row[0][..., 1, :] * py + row[0][..., 2, :]
    Y = row[1][..., 0, :] * px + row[1][..., 1, :] * py + row[1][..., 2, :]
    W = row[2][..., 0, :] * px + row[2][..., 1, :] * py + row[2][..., 2, :]
    good = mx.abs(W) > 1e-12
    Ws = mx.where(good, W, 1)
    e2 = (X / Ws - u[:, None, :, 0]) ** 2 + (Y / Ws - u[:, None, :, 1]) ** 2
    return mx.where(all_of(good, ~mx.isnan(e2)), e2, mx.inf)


def fit_dlt(src: mx.array, dst: mx.array, w: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """Normalized DLT in pixel space for (B, N, 2) inputs: (H unnormalized, Hn, ok)."""
    xn, un, norm = normalize_pair(src, dst, w)
    hn, ok = dlt_normalized(xn, un, w)
    return denormalize(hn, *norm), hn, ok


def _minimal(samples: tuple[mx.array, ...]) -> tuple[mx.array, mx.array]:
    hn, nondegenerate, oriented = four_point_normalized(*samples)
    return hn[:, :, None], all_of(nondegenerate, oriented)[:, :, None]


def homography_model(src: mx.array, dst: mx.array, norm: tuple[mx.array, ...], iterations: int,
                     symmetric: bool) -> RansacModel:
    """The :class:`RansacModel` on the data ``(xn, un)``, the points (B, N, 2) normalized by
    ``norm = (cs, ks, cd, kd)`` (:func:`normalize_pair`); models are Hn in those coordinates.

    Its refit is the DLT on the inliers of the pixels ``src``, ``dst`` followed by ``iterations``
    LM steps (``symmetric``: the symmetric transfer error), mapped back to normalized coordinates.
    The refit runs a few times per call on one model per pair, so its cores run eagerly
    (:func:`mlxgeom._compiled.eager`): compiled, its 8x8 and 9x9 solves were ~20 fused kernels to
    build on the first call.
    """
    @eager()
    def refit(hn: mx.array, data: tuple[mx.array, ...], w: mx.array) -> tuple[mx.array, mx.array]:
        h, _, ok = fit_dlt(src, dst, w)
        if iterations > 0:
            h_lm, _, cost = lm_refine(h, src, dst, w, iterations, symmetric)
            h = mx.where(mx.isfinite(cost)[:, None, None], h_lm, h)
        return normalize_h(h, norm), ok

    return RansacModel(4, _minimal, lambda hyps, data: transfer_sq_error(hyps, *data), refit)
