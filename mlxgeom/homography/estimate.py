"""``find_homography``: the batched front end (DLT, RANSAC, LM), like ``cv2.findHomography``."""

from __future__ import annotations

import math

from typing import Any

import mlx.core as mx

from .._checks import cast_out
from .._vmap import all_of
from ._common import check_correspondences, drop_invalid, safe_div
from ..solve import ransac
from .dlt import denormalize, normalize_pair
from .minimal import finish
from .ransac import fit_dlt, homography_model, transfer_sq_error
from .refine import lm_refine
from .result import HomographyResult

_METHODS = ("dlt", "ransac", "lm")
# Local optimisation after RANSAC: rounds of a DLT refit on the inliers followed by LM.
_REFITS = 1


def find_homography(src: Any, dst: Any, weights: Any | None = None, *, method: str = "dlt", threshold: float = 3.0,
                    confidence: float = 0.995, max_trials: int = 1024, min_inliers: int = 8, iterations: int = 5,
                    error: str = "reprojection", key: mx.array | None = None) -> HomographyResult:
    """Estimate homographies ``dst ~ H src`` for a batch of image pairs, on the device.

    Methods (all batched over the leading axes, no host sync, ``mx.compile``-able):

    - ``"dlt"``: Hartley-normalized DLT (H&Z Alg. 4.2) over all points of positive weight.
    - ``"lm"``: ``"dlt"`` followed by ``iterations`` Levenberg-Marquardt steps on SL(3) (like
      ``cv2.findHomography(method=0)``, which refines its DLT the same way).
    - ``"ransac"``: the batched driver :func:`mlxgeom.solve.ransac`: ``max_trials`` four-point
      hypotheses per pair drawn without repeats with ``mx.random`` from ``key``, solved in closed
      form and MSAC-scored in parallel (preemptively for N >= 512: all on a random 128-point
      subset, the best 16 on every point); the best is refit by DLT on its inliers and refined by
      LM (like ``cv2.RANSAC``).

    Args:
        src, dst: (*, N, 2) pixel correspondences; batch dims broadcast.
        weights: optional (*, N) non-negative per-point weights; 0 (or a non-finite point) drops
            a correspondence from sampling, scoring and fitting.
        threshold: inlier threshold on the reprojection error ``|dst - pi(H src)|``, pixels.
        confidence: RANSAC confidence ``p`` for the reported adaptive trial count.
        max_trials: RANSAC hypotheses per pair (static; evaluated in rounds of bounded memory).
        min_inliers: RANSAC pairs with fewer final inliers are not ``ok`` (any four points fit
            exactly, so a few more are needed to tell a model from chance).
        iterations: LM iterations for ``"lm"`` and ``"ransac"`` (0 skips refinement).
        error: LM cost, ``"reprojection"`` or ``"symmetric"`` (see :func:`refine_homography`).
        key: ``mx.random.key`` for RANSAC; default ``mx.random.key(0)`` (reproducible, as OpenCV).

    Returns:
        :class:`HomographyResult` ``(H, inliers, ok, num_inliers, residual, trials)``; H is the
        identity and ok False where the pair is degenerate (fewer than 4 usable points, collinear
        or duplicate points, too few inliers, singular or non-finite estimate).

    Example:
        >>> import mlx.core as mx
        >>> src = mx.array([[0.0, 0], [10, 0], [10, 10], [0, 10], [5, 3]])
        >>> res = find_homography(src, src * 2 + 1)
        >>> [round(v, 3) + 0.0 for v in res.H[0].tolist()], res.ok.item()
        ([2.0, 0.0, 1.0], True)
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if error not in ("reprojection", "symmetric"):
        raise ValueError(f"error must be 'reprojection' or 'symmetric', got {error!r}")
    if max_trials < 1 or not 0 < confidence < 1 or threshold <= 0:
        raise ValueError("need max_trials >= 1, 0 < confidence < 1 and threshold > 0")
    s, d, w, out_dtype = check_correspondences(src, dst, weights)
    batch, n = s.shape[:-2], s.shape[-2]
    # Explicit size: MLX cannot infer -1 when N = 0.
    b = math.prod(batch)
    s, d, w = s.reshape(b, n, 2), d.reshape(b, n, 2), w.reshape(b, n)
    s, d, w, valid = drop_invalid(s, d, w)
    num_valid = mx.sum(valid.astype(mx.int32), -1)
    symmetric = error == "symmetric"
    if method == "ransac":
        xn, un, norm = normalize_pair(s, d, w)
        # Errors in normalized destination units are pixel errors times the destination scale.
        res = ransac(homography_model(s, d, norm, iterations, symmetric), (xn, un), w, threshold * norm[3],
                     max_trials=max_trials, confidence=confidence, key=key, refit_rounds=_REFITS,
                     min_inliers=max(min_inliers, 4))
        h, hn, ok, trials = denormalize(res.model, *norm), res.model, res.ok, res.trials
    else:
        h, hn, ok = fit_dlt(s, d, w)
        trials = mx.zeros(ok.shape, dtype=mx.int32)
        if method == "lm" and iterations > 0:
            h_lm, hn_lm, cost = lm_refine(h, s, d, w, iterations, symmetric)
            better = mx.isfinite(cost)[:, None, None]
            h, hn = mx.where(better, h_lm, h), mx.where(better, hn_lm, hn)
    h, ok = finish(h, hn, all_of(ok, num_valid >= 4))
    e2 = transfer_sq_error(h[:, None], s, d)[:, 0]
    inliers = all_of(valid, e2 <= threshold * threshold)
    num_inliers = mx.sum(inliers.astype(mx.int32), -1)
    if method == "ransac":
        ok = all_of(ok, num_inliers >= max(min_inliers, 4))
    # The masks agree with ok: a pair that failed has no inliers.
    inliers = all_of(inliers, ok[:, None])
    num_inliers = mx.where(ok, num_inliers, 0)
    residual = mx.sqrt(safe_div(mx.sum(mx.where(inliers, e2, 0), -1), num_inliers.astype(e2.dtype), num_inliers > 0))
    eye = mx.broadcast_to(mx.eye(3, dtype=h.dtype), h.shape)
    h = mx.where(ok[:, None, None], h, eye)
    return HomographyResult(
        H=cast_out(h.reshape(batch + (3, 3)), out_dtype),
        inliers=inliers.reshape(batch + (n,)),
        ok=ok.reshape(batch),
        num_inliers=num_inliers.reshape(batch),
        residual=cast_out(residual.reshape(batch), out_dtype),
        trials=trials.reshape(batch),
    )
