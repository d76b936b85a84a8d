"""F and E as models for the one RANSAC driver (:func:`mlxgeom.solve.ransac`).

Both score with the squared Sampson distance (H&Z eq. 11.9), the first-order geometric error:

- F: seven-point samples (up to 3 candidates each; samples Hartley-normalised with the pair's
  transform), errors in pixels, refit on the inliers by the normalised eight-point algorithm (or
  the current model where that fits the inliers worse). No LM after it: on the rank-2 matrices
  it lowered the median error by only ~10 % at ~1.5x the cost of a single pair on the CPU.
- E: five-point samples (up to 10 candidates) on normalised coordinates, errors in normalised
  units (the caller divides the pixel threshold by the focal length); refit on the inliers by the
  normalised eight-point algorithm projected to the essential manifold (singular values (1, 1, 0)),
  or the current model where that fits the inliers worse, then LM on the manifold (:mod:`.refine`).
"""

from __future__ import annotations

import mlx.core as mx

from .._vmap import all_of
from ..linalg import matmul, svd3
from ..solve import RansacModel, ransac
from .distances import sampson_sq
from .five_point import five_point
from .fundamental import denormalize_f, eight_point, eight_point_normalized, hartley_pair, unit_frobenius
from .refine import refine_essential
from .seven_point import seven_point

# Local optimisation: refit rounds of the driver (each re-selects the inliers), LM iterations in
# each E round, and the widened threshold of the first round's selection (shrinking to 1x in the
# last). On the CPU a round is thousands of small ops, most of the cost of a single pair: 3
# widened rounds with 4 LM iterations match the E errors of 8 plain rounds with 3 (64 pairs of
# benchmarks/bench_epipolar.py); F's eight-point rounds end ~1.4x above them.
_REFIT_ROUNDS = 3
_LM_ITERATIONS = 4
_WIDEN = 2.0
# Points of the preemptive subset that ranks every hypothesis (the driver's default 128 costs
# F RANSAC on the CPU half its time; the best hypotheses stand out on 32 points already).
_PREEMPT = 32


def _sq_error(models: mx.array, data: tuple[mx.array, ...]) -> mx.array:
    """Squared Sampson distances (B, H, N) of models (B, H, 3, 3) on points (B, N, 2) in the models' units."""
    return sampson_sq(models[:, :, None], data[0][:, None], data[1][:, None])


def fundamental_model(norm) -> RansacModel:
    """The F model for pixel data (x1, x2); ``norm`` the pairs' Hartley transforms (c1, s1, c2, s2)."""
    c1, s1, c2, s2 = norm

    def solver(samples):
        a = (samples[0] - c1[:, None, None]) * s1[:, None, None, None]
        b = (samples[1] - c2[:, None, None]) * s2[:, None, None, None]
        fn, ok = seven_point(a, b)  # (B, T, 3, 3, 3)
        return unit_frobenius(denormalize_f(fn, norm)), ok

    def refit(model, data, w):
        f8, ok8 = eight_point(data[0], data[1], w)
        return _better(f8, ok8, model, data, w), mx.ones_like(ok8)

    return RansacModel(7, solver, _sq_error, refit)


def essential_projection(e: mx.array) -> mx.array:
    """Nearest essential matrix of unit Frobenius norm: ``U diag(1, 1, 0) V^T / sqrt 2`` (H&Z Result 9.18)."""
    u, _, vt = svd3(e)
    s = mx.array([1.0, 1.0, 0.0], dtype=e.dtype) / mx.sqrt(mx.array(2.0, dtype=e.dtype))
    return matmul(u * s, vt)


def _better(fit: mx.array, ok: mx.array, model: mx.array, data, w: mx.array) -> mx.array:
    """The eight-point fit where it is ok and has the lower weighted Sampson cost on the inliers, else the model."""
    cost = [mx.sum(mx.where(w > 0, w * _sq_error(m[:, None], data)[:, 0], 0), axis=-1) for m in (fit, model)]
    return mx.where(all_of(ok, cost[0] < cost[1])[:, None, None], fit, model)


def _essential_refit(model, data, w):
    y1, y2 = data
    xn1, xn2, norm = hartley_pair(y1, y2, w)
    fn, ok8 = eight_point_normalized(xn1, xn2, w)
    e8 = essential_projection(denormalize_f(fn, norm))
    return refine_essential(_better(e8, ok8, model, data, w), y1, y2, w, _LM_ITERATIONS)


def essential_model() -> RansacModel:
    """The E model for normalised data (y1, y2)."""
    return RansacModel(5, lambda s: five_point(s[0], s[1], fast=True), _sq_error, _essential_refit)


def ransac_fundamental(x1, x2, w, threshold, *, confidence, max_trials, key, min_inliers):
    """(F (B, 3, 3), ok (B), trials (B)) by RANSAC over pixels (B, N, 2)."""
    _, _, norm = hartley_pair(x1, x2, w)
    res = ransac(fundamental_model(norm), (x1, x2), w, threshold, max_trials=max_trials, confidence=confidence,
                 key=key, min_inliers=min_inliers, refit_rounds=_REFIT_ROUNDS, refit_widen=_WIDEN,
                 preemptive_points=_PREEMPT)
    return res.model, res.ok, res.trials


def ransac_essential(y1, y2, w, threshold, *, confidence, max_trials, key, min_inliers):
    """(E (B, 3, 3), ok (B), trials (B)) by RANSAC over normalised points, threshold (B,) in normalised units."""
    res = ransac(essential_model(), (y1, y2), w, threshold, max_trials=max_trials, confidence=confidence, key=key,
                 min_inliers=min_inliers, refit_rounds=_REFIT_ROUNDS, refit_widen=_WIDEN,
                 preemptive_points=_PREEMPT)
    return res.model, res.ok, res.trials
