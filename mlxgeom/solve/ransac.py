"""The batched hypothesise-and-verify driver (RANSAC with MSAC scoring) for many problems at once.

Hartley and Zisserman, 2nd ed., Alg. 4.4 / 4.6 (RANSAC; the adaptive trial count
``N = log(1 - p) / log(1 - w^s)`` for inlier ratio ``w`` and sample size ``s``), scored by MSAC
(Torr and Zisserman, "MLESAC", CVIU 78, 2000): a model earns ``t^2 - e_i^2`` from each point
with squared error ``e_i^2 <= t^2``. Trials are drawn, solved and scored in rounds of a fixed size
and the best model per problem is kept with ``argmax`` and ``where``: static shapes, no host sync,
so the whole search runs under ``mx.compile`` on the device. Every one of the ``max_trials``
samples is solved and scored; ``trials`` reports the count the adaptive rule asks for at the inlier
ratio found (what a sequential RANSAC stopping at ``confidence`` would have drawn), capped at
``max_trials``.

Preemptive scoring (Nister, "Preemptive RANSAC for live structure and motion estimation", ICCV
2003): with many points, every candidate is first scored on one random subset of
``preemptive_points`` (128) points of the problem and only the ``_KEEP`` best are scored on all
points; a model from an uncontaminated sample stands out on the subset already. Local
optimisation (Chum, Matas, Kittler,
"Locally optimized RANSAC", DAGM 2003): the winner is refit on its inliers and the inliers are
re-selected ``refit_rounds`` times; a refit is kept only where it does not lower the score.
Optionally the first rounds fit a wider selection (Lebeda, Matas, Chum, "Fixed locally optimized
RANSAC", BMVC 2012: the threshold shrinks to its value over the rounds).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import mlx.core as mx

from .._checks import argmax
from .._compiled import compiled
from .._indexing import take_rows
from .._vmap import all_of, any_of

# Elements of the (problems, candidates, points) error tensor evaluated per round (bounds peak memory).
_ROUND_ELEMENTS = 1 << 25
# Preemptive scoring: points of the subset that scores every candidate, candidates kept per problem.
_SUBSET = 128
_KEEP = 16

Data = tuple[mx.array, ...]


class RansacModel(NamedTuple):
    """A model for :func:`ransac`, given by three functions on batched arrays.

    Attributes:
        sample_size: s, points per minimal sample.
        minimal_solver: ``samples -> (models (B, T, K, *model_shape), ok (B, T, K))`` for a tuple of
            samples (B, T, s, d_i), one per data array; K candidates per sample (1 for a
            homography or PnP, 3 for the 7-point, 10 for the 5-point algorithm), ok False for
            degenerate samples and padding candidates.
        sq_error: ``(models (B, H, *model_shape), data) -> (B, H, N)`` squared errors of every point
            under every model, in the squared units of the threshold; +inf (never NaN) where undefined.
        refit: ``(model (B, *model_shape), data, weights (B, N)) -> (model, ok (B))``, a fit to the
            points of positive weight (the inliers), or None for no local optimisation.
    """

    sample_size: int
    minimal_solver: Callable[[Data], tuple[mx.array, mx.array]]
    sq_error: Callable[[mx.array, Data], mx.array]
    refit: Callable[[mx.array, Data, mx.array], tuple[mx.array, mx.array]] | None = None


class RansacResult(NamedTuple):
    """Result of :func:`ransac`, per problem.

    Attributes:
        model: (B, *model_shape) the best model (meaningless where not ok).
        inliers: (B, N) bool, points of positive weight within the threshold; all False where not ok.
        ok: (B) bool: enough points, a non-degenerate winner and at least ``min_inliers`` inliers.
        num_inliers: (B) int32, ``inliers.sum(-1)``.
        trials: (B) int32, ``log(1 - p) / log(1 - w^s)`` at the final inlier ratio w, capped at
            ``max_trials`` (``max_trials`` where not ok).
        score: (B) MSAC score ``sum_i max(t^2 - e_i^2, 0)`` of the model over the points of positive weight.
    """

    model: mx.array
    inliers: mx.array
    ok: mx.array
    num_inliers: mx.array
    trials: mx.array
    score: mx.array


def _sorted_insert(sorted_vals: list[mx.array], r: mx.array) -> tuple[mx.array, list[mx.array]]:
    """Map rank r in [0, n - k) to the r-th value not in ``sorted_vals``; return it and the new sorted list."""
    for s in sorted_vals:
        r = r + (r >= s).astype(r.dtype)
    out, carry = [], r
    for s in sorted_vals:
        out.append(mx.minimum(s, carry))
        carry = mx.maximum(s, carry)
    return r, out + [carry]


def sample_indices(key: mx.array, valid: mx.array, sample_size: int, trials: int) -> mx.array:
    """Indices (B, trials, s) of s distinct points with ``valid`` (B, N) True, uniformly at random.

    Valid points are listed first; distinct ranks come from sequential draws in ``[0, n - k)``
    shifted past the earlier picks (exact, no rejection, O(s^2) per sample). Problems with fewer
    than s valid points get repeated indices (the driver marks them not ok).
    """
    b, n = valid.shape
    order = mx.argsort(mx.where(valid, 0, 1).astype(mx.int32), axis=-1)
    nv = mx.sum(valid.astype(mx.int32), axis=-1)[:, None]
    u = mx.random.uniform(shape=(b, trials, sample_size), key=key)
    picks: list[mx.array] = []
    ranks = []
    for k in range(sample_size):
        high = mx.maximum(nv - k, 1)
        r = mx.minimum((u[..., k] * high.astype(u.dtype)).astype(mx.int32), high - 1)
        r, picks = _sorted_insert(picks, r)
        ranks.append(r)
    rank = mx.clip(mx.stack(ranks, axis=-1), 0, n - 1)
    return take_rows(order, rank.reshape(b, trials * sample_size), axis=-1, bound=n).reshape(b, trials, sample_size)


def gather_points(x: mx.array, idx: mx.array) -> mx.array:
    """x (B, N, d) at idx (B, *idx_shape) -> (B, *idx_shape, d), by one flat take (no broadcast copy)."""
    return take_rows(x, idx.reshape(idx.shape[0], math.prod(idx.shape[1:])), axis=1).reshape(*idx.shape, x.shape[-1])


@compiled
def _msac(e2: mx.array, valid: mx.array, thr2: mx.array) -> mx.array:
    """MSAC score (B, H) of squared errors (B, H, M) over the valid points (B, M).

    (A mask, not a product with the weights: the product keeps MLX from fusing the reduction with
    the error computation and made the scoring ~2x slower on the CPU.)
    """
    return mx.sum(mx.where(valid[:, None, :], mx.maximum(thr2[:, None, None] - e2, 0), 0), axis=-1)


def adaptive_trials(num_inliers: mx.array, num_valid: mx.array, sample_size: int, confidence: float,
                    max_trials: int) -> mx.array:
    """H&Z Alg. 4.6: trials (*) int32 for ``confidence`` at inlier ratio w = num_inliers / num_valid
    (both (*)), ``log(1 - p) / log(1 - w^s)``, capped at ``max_trials``.

    Example:
        >>> import mlx.core as mx
        >>> adaptive_trials(mx.array([50, 100]), mx.array([100, 100]), 4, 0.99, 1000).tolist()
        [72, 1]
    """
    w = num_inliers.astype(mx.float32) / mx.maximum(num_valid, 1).astype(mx.float32)
    q = 1 - w**sample_size
    easy = q <= 1e-7
    hopeless = q >= 1 - 1e-12
    qs = mx.where(any_of(easy, hopeless), 0.5, q)
    need = mx.ceil(mx.log(mx.array(1 - confidence, mx.float32)) / mx.log(qs))
    need = mx.where(easy, 1, mx.where(hopeless, max_trials, need))
    return mx.minimum(need, max_trials).astype(mx.int32)


def _check(model: RansacModel, data: Any, weights: mx.array) -> tuple[Data, int, int]:
    if model.sample_size < 1:
        raise ValueError(f"sample_size: expected >= 1, got {model.sample_size}")
    if weights.ndim != 2:
        raise ValueError(f"weights: expected shape (B, N), got {tuple(weights.shape)}")
    b, n = weights.shape
    data = tuple(data)
    for i, d in enumerate(data):
        if d.ndim != 3 or d.shape[:2] != (b, n):
            raise ValueError(f"data[{i}]: expected shape (B, N, d) = ({b}, {n}, d), got {tuple(d.shape)}")
    return data, b, n


def _candidates(model: RansacModel, data: Data, idx: mx.array, enough: mx.array) -> tuple[mx.array, mx.array]:
    """Candidate models (B, T K, *model_shape) and their ok mask (B, T K) from samples idx (B, T, s)."""
    hyps, ok = model.minimal_solver(tuple(gather_points(d, idx) for d in data))
    b, t, k = ok.shape
    ok = all_of(ok, enough[:, None, None])
    return hyps.reshape(b, t * k, *hyps.shape[3:]), ok.reshape(b, t * k)


def _take(a: mx.array, j: mx.array) -> mx.array:
    """a (B, H, *rest) at j (B, J) -> (B, J, *rest)."""
    return take_rows(a, j, axis=1)


def _best(model: RansacModel, data: Data, w: mx.array, thr2: mx.array, key: mx.array, max_trials: int,
          preempt: int) -> tuple[mx.array, mx.array]:
    """The best candidate per problem (B, *model_shape) and its MSAC score (B) (-1: none usable).

    ``preempt``: points of the preemptive subset (0: every candidate is scored on all points).
    """
    b, n = w.shape
    valid = w > 0
    enough = mx.sum(valid.astype(mx.int32), axis=-1) >= model.sample_size
    sample_key, subset_key = mx.random.split(key)
    if preempt:
        # The same random valid points score every candidate of a problem (invalid ones sort last).
        sub = mx.argsort(mx.where(valid, mx.random.uniform(shape=(b, n), key=subset_key), 2.0), axis=-1)[:, :preempt]
        scoring = tuple(gather_points(d, sub) for d in data)
        ws = take_rows(valid, sub, axis=-1)
    else:
        scoring, ws = data, valid
    per_round = max(1, min(max_trials, _ROUND_ELEMENTS // max(1, b * ws.shape[1])))
    hyps_all, scores_all = [], []
    best_h, best_s = None, mx.full((b,), -1.0, dtype=w.dtype)
    done = 0
    while done < max_trials:
        t = min(per_round, max_trials - done)
        sample_key, round_key = mx.random.split(sample_key)
        hyps, ok = _candidates(model, data, sample_indices(round_key, valid, model.sample_size, t), enough)
        score = mx.where(ok, _msac(model.sq_error(hyps, scoring), ws, thr2), -1.0)
        done += t
        if preempt:
            hyps_all.append(hyps), scores_all.append(score)
            continue
        j = argmax(score, axis=-1)[:, None]
        s, h = _take(score, j)[:, 0], _take(hyps, j)[:, 0]
        better = s > best_s
        best_s = mx.where(better, s, best_s)
        best_h = h if best_h is None else mx.where(better.reshape(b, *([1] * (h.ndim - 1))), h, best_h)
    if preempt:
        score = mx.concatenate(scores_all, axis=1)
        top = mx.argsort(-score, axis=-1)[:, :_KEEP]
        hyps = _take(mx.concatenate(hyps_all, axis=1), top)
        full = mx.where(_take(score, top) >= 0, _msac(model.sq_error(hyps, data), valid, thr2), -1.0)
        j = argmax(full, axis=-1)[:, None]
        best_s, best_h = _take(full, j)[:, 0], _take(hyps, j)[:, 0]
    return best_h, best_s


def ransac(model: RansacModel, data: Any, weights: mx.array, threshold: Any, *, max_trials: int,
           confidence: float = 0.999, key: mx.array | None = None, preemptive: bool = True,
           refit_rounds: int = 2, min_inliers: int | None = None, refit_widen: float = 1.0,
           preemptive_points: int = _SUBSET) -> RansacResult:
    """Robust fit of ``model`` to B problems at once: sample, solve, MSAC-score, refit on the inliers.

    Args:
        model: the :class:`RansacModel`.
        data: tuple of arrays (B, N, d_i), one row per point (e.g. ``(src, dst)`` pixels).
        weights: (B, N) non-negative; points with weight 0 are neither sampled nor scored (padding,
            masks); the refit receives the weights of the inliers.
        threshold: inlier threshold t, a float or (B,), in the units of ``sqrt(sq_error)``.
        max_trials: samples per problem (static; solved and scored in rounds of bounded memory).
        confidence: p of the reported adaptive trial count.
        key: ``mx.random.key``; default ``mx.random.key(0)`` (reproducible).
        preemptive: score on a random subset first where N >= 512 (see the module docstring).
        preemptive_points: size of that subset; a smaller one is cheaper and still ranks the
            candidates of an uncontaminated sample first where inliers are not rare.
        refit_rounds: local-optimisation rounds with ``model.refit`` (0 or no refit: none).
        min_inliers: problems with fewer inliers are not ok; default ``sample_size``.
        refit_widen: the first refit round fits the points within ``refit_widen`` x the threshold,
            the factor shrinking geometrically to 1 in the last round (more inliers reach the fit
            in fewer rounds); 1: every round fits the inliers. Rounds keep a refit by the score at
            the threshold either way.

    Returns:
        :class:`RansacResult`. Model search runs on ``mx.stop_gradient`` of the data and its winner
        is a constant of the gradient (whatever arrays the model's functions close over); gradients
        reach the result only through ``sq_error`` and ``refit`` on the data.

    Example:
        >>> import mlx.core as mx
        >>> x = mx.concatenate([mx.arange(8.0), mx.array([3.0, 5.0])])[None, :, None]
        >>> y = mx.concatenate([2 * mx.arange(8.0) + 1, mx.array([-9.0, 30.0])])[None, :, None]
        >>> def solver(s):  # the line y = a x + b through two points: model (a, b)
        ...     (x, y) = s
        ...     dx = x[..., 1, 0] - x[..., 0, 0]
        ...     a = (y[..., 1, 0] - y[..., 0, 0]) / mx.where(dx == 0, 1, dx)
        ...     return mx.stack([a, y[..., 0, 0] - a * x[..., 0, 0]], -1)[:, :, None], (dx != 0)[:, :, None]
        >>> def sq_error(m, d):
        ...     return (m[:, :, None, 0] * d[0][:, None, :, 0] + m[:, :, None, 1] - d[1][:, None, :, 0]) ** 2
        >>> res = ransac(RansacModel(2, solver, sq_error), (x, y), mx.ones((1, 10)), 0.1, max_trials=50)
        >>> res.model.tolist(), res.num_inliers.tolist(), res.ok.tolist()
        ([[2.0, 1.0]], [8], [True])
    """
    data, b, n = _check(model, data, weights)
    if max_trials < 1 or not 0 < confidence < 1 or refit_rounds < 0:
        raise ValueError(f"need max_trials >= 1, 0 < confidence < 1 and refit_rounds >= 0, got {max_trials}, "
                         f"{confidence}, {refit_rounds}")
    key = mx.random.key(0) if key is None else key
    w = mx.maximum(weights, 0)
    thr = mx.broadcast_to(mx.array(threshold, dtype=w.dtype), (b,))
    thr2 = thr * thr
    valid = w > 0
    num_valid = mx.sum(valid.astype(mx.int32), axis=-1)
    if preemptive_points < 1 or refit_widen < 1:
        raise ValueError(f"need preemptive_points >= 1 and refit_widen >= 1, got {preemptive_points}, {refit_widen}")
    preempt = min(preemptive_points, n) if preemptive and n >= 4 * _SUBSET and max_trials > 2 * _KEEP else 0
    fixed = tuple(mx.stop_gradient(d) for d in data)
    # The solver and error may close over differentiated arrays (F's Hartley transforms): the stop
    # keeps the discrete search, whose argmax indices MLX cannot differentiate, out of the VJP.
    best, score = (mx.stop_gradient(a) for a in
                   _best(model, fixed, mx.stop_gradient(w), mx.stop_gradient(thr2), key, max_trials, preempt))
    found = score >= 0

    def verify(m: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        e2 = model.sq_error(m[:, None], data)[:, 0]
        return e2, all_of(valid, e2 <= thr2[:, None]), _msac(e2[:, None], valid, thr2)[:, 0]

    e2, inliers, score = verify(best)
    rounds = refit_rounds if model.refit is not None else 0
    for r in range(rounds):
        # a wider selection first (Lebeda, Matas, Chum, BMVC 2012): refit_widen x the threshold in
        # round 0, shrinking geometrically to the threshold in the last round
        widen = refit_widen ** ((rounds - 1 - r) / max(rounds - 1, 1))
        sel = all_of(valid, e2 <= (widen * widen) * thr2[:, None]) if widen > 1 else inliers
        cand, ok = model.refit(best, data, mx.where(sel, w, 0))
        cand_e2, cand_inliers, cand_score = verify(cand)
        take = all_of(found, ok, cand_score >= score)
        best = mx.where(take.reshape(b, *([1] * (cand.ndim - 1))), cand, best)
        e2 = mx.where(take[:, None], cand_e2, e2)
        inliers, score = mx.where(take[:, None], cand_inliers, inliers), mx.where(take, cand_score, score)
    count = mx.sum(inliers.astype(mx.int32), axis=-1)
    need = model.sample_size if min_inliers is None else max(min_inliers, model.sample_size)
    ok = all_of(found, num_valid >= model.sample_size, count >= need)
    inliers = all_of(inliers, ok[:, None])
    count = mx.where(ok, count, 0)
    trials = adaptive_trials(count, num_valid, model.sample_size, confidence, max_trials)
    return RansacResult(best, inliers, ok, count, trials, score)

