"""Batched RANSAC for homographies: thousands of hypotheses per pair, scored in parallel.

Hartley and Zisserman, 2nd ed., Alg. 4.4 / 4.6 (RANSAC, adaptive trial count
``N = log(1 - p) / log(1 - w^4)``), with the MSAC score of Torr and Zisserman ("MLESAC", CVIU
78, 2000): a hypothesis earns ``t^2 - e^2`` for each point with reprojection error ``e <= t``.
Everything is static: trials are drawn, solved (closed-form four-point solver) and scored in
rounds of a fixed size, and the best per pair is kept with ``argmax`` and ``where``; no host
sync, so the whole search runs under ``mx.compile`` on the device.

Scoring is preemptive (Nister, "Preemptive RANSAC for live structure and motion estimation",
ICCV 2003) when a pair has many more points than a scoring subset: every hypothesis is first
scored on the same random subset of ``_SUBSET`` valid points, and only the ``_KEEP`` best of
them are scored on all points. A hypothesis from an uncontaminated sample stands out on the
subset already, so the winner is the same while the work drops by ~N / _SUBSET.
"""

from __future__ import annotations

import mlx.core as mx

from .._checks import argmax
from .minimal import four_point_normalized

# Elements of the (pairs, trials, points) score tensor evaluated per round (bounds peak memory).
_ROUND_ELEMENTS = 1 << 25
# Preemptive scoring: points of the subset that scores every hypothesis, hypotheses kept per pair.
_SUBSET = 128
_KEEP = 16


def _sorted_insert(sorted_vals: list[mx.array], r: mx.array) -> tuple[mx.array, list[mx.array]]:
    """Map rank r in [0, n - k) to the r-th value not in ``sorted_vals``; return it and the new sorted list."""
    for s in sorted_vals:
        r = r + (r >= s).astype(r.dtype)
    out, carry = [], r
    for s in sorted_vals:
        out.append(mx.minimum(s, carry))
        carry = mx.maximum(s, carry)
    return r, out + [carry]


def sample_quadruples(key: mx.array, order: mx.array, num_valid: mx.array, trials: int) -> mx.array:
    """Indices (B, trials, 4) of four distinct valid points per trial, uniformly at random.

    ``order`` (B, N) lists valid points first; ``num_valid`` (B) counts them. Distinct ranks come
    from sequential draws in ``[0, n - k)`` shifted past the earlier picks (exact, no rejection).
    Pairs with fewer than 4 valid points get clamped (repeated) indices; their samples are then
    degenerate and rejected by the solver's checks.
    """
    b, n = order.shape
    u = mx.random.uniform(shape=(b, trials, 4), key=key)
    nv = num_valid.astype(mx.int32)[:, None]
    picks: list[mx.array] = []
    ranks = []
    for k in range(4):
        high = mx.maximum(nv - k, 1)
        r = mx.minimum((u[..., k] * high.astype(u.dtype)).astype(mx.int32), high - 1)
        r, picks = _sorted_insert(picks, r)
        ranks.append(r)
    rank = mx.clip(mx.stack(ranks, axis=-1), 0, n - 1)
    return mx.take_along_axis(order, rank.reshape(b, trials * 4), axis=-1).reshape(b, trials, 4)


def _gather(points: mx.array, idx: mx.array) -> mx.array:
    """points (B, N, 2), idx (B, T, 4) -> (B, T, 4, 2)."""
    b, t, _ = idx.shape
    flat = idx.reshape(b, t * 4)
    xs = mx.take_along_axis(points[..., 0], flat, axis=-1)
    ys = mx.take_along_axis(points[..., 1], flat, axis=-1)
    return mx.stack([xs, ys], axis=-1).reshape(b, t, 4, 2)


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
    return mx.where(good & ~mx.isnan(e2), e2, mx.inf)


def _msac_score(h: mx.array, good: mx.array, x: mx.array, u: mx.array, valid: mx.array, thr2: mx.array) -> mx.array:
    """MSAC score (B, T) of hypotheses h (B, T, 3, 3) on points (B, M, 2); -1 where not ``good``."""
    gain = mx.where(valid[:, None, :], mx.maximum(thr2[:, None, None] - transfer_sq_error(h, x, u), 0), 0)
    return mx.where(good, mx.sum(gain, axis=-1), -1.0)


def _take_points(points: mx.array, idx: mx.array) -> mx.array:
    return mx.stack([mx.take_along_axis(points[..., c], idx, axis=-1) for c in range(points.shape[-1])], axis=-1)


def best_hypothesis(
    xn: mx.array, un: mx.array, w: mx.array, thr2: mx.array, key: mx.array, max_trials: int
) -> tuple[mx.array, mx.array]:
    """Best four-point homography per pair by MSAC score, in normalized coordinates.

    Args:
        xn, un: (B, N, 2) Hartley-normalized source / destination points.
        w: (B, N) weights; points with ``w <= 0`` are neither sampled nor scored.
        thr2: (B) squared inlier threshold in normalized destination units.
        key: ``mx.random.key``; the draws depend on it only, so results are reproducible.
        max_trials: hypotheses per pair (static).

    Returns:
        ``(Hn, found)``: Hn (B, 3, 3) the best hypothesis; found (B) False if no sample was
        non-degenerate and orientation-consistent.
    """
    b, n, _ = xn.shape
    valid = w > 0
    order = mx.argsort(mx.where(valid, 0, 1).astype(mx.int32), axis=-1)
    num_valid = mx.sum(valid.astype(mx.int32), axis=-1)
    sample_key, subset_key = mx.random.split(key)
    preempt = n >= 4 * _SUBSET and max_trials > 2 * _KEEP
    if preempt:
        # The same random valid points score every hypothesis of a pair (invalid ones sort last).
        rank = mx.where(valid, mx.random.uniform(shape=(b, n), key=subset_key), 2.0)
        sub = mx.argsort(rank, axis=-1)[:, :_SUBSET]
        xs, us, vs = _take_points(xn, sub), _take_points(un, sub), mx.take_along_axis(valid, sub, axis=-1)
    else:
        xs, us, vs = xn, un, valid
    m = xs.shape[1]
    per_round = max(1, min(max_trials, _ROUND_ELEMENTS // max(1, b * m)))
    sizes = [per_round] * (max_trials // per_round) + ([max_trials % per_round] if max_trials % per_round else [])
    keys = mx.random.split(sample_key, len(sizes))
    hyps, scores = [], []
    best_score = mx.full((b,), -1.0, dtype=xn.dtype)
    best_h = mx.broadcast_to(mx.eye(3, dtype=xn.dtype), (b, 3, 3))
    for i, t in enumerate(sizes):
        idx = sample_quadruples(keys[i], order, num_valid, t)
        h, nondeg, oriented = four_point_normalized(_gather(xn, idx), _gather(un, idx))
        score = _msac_score(h, nondeg & oriented, xs, us, vs, thr2)
        if preempt:
            hyps.append(h), scores.append(score)
            continue
        j = argmax(score, axis=-1)
        s = mx.take_along_axis(score, j[:, None], axis=-1)[:, 0]
        better = s > best_score
        best_score = mx.where(better, s, best_score)
        best_h = mx.where(better[:, None, None], mx.take_along_axis(h, j[:, None, None, None], axis=1)[:, 0], best_h)
    if preempt:
        score = mx.concatenate(scores, axis=1)
        top = mx.stop_gradient(mx.argsort(-score, axis=-1)[:, :_KEEP])
        h = mx.take_along_axis(mx.concatenate(hyps, axis=1), top[..., None, None], axis=1)
        full = _msac_score(h, mx.take_along_axis(score, top, axis=-1) >= 0, xn, un, valid, thr2)
        j = argmax(full, axis=-1)
        best_score = mx.take_along_axis(full, j[:, None], axis=-1)[:, 0]
        best_h = mx.take_along_axis(h, j[:, None, None, None], axis=1)[:, 0]
    return best_h, best_score >= 0


def adaptive_trials(num_inliers: mx.array, num_valid: mx.array, confidence: float, max_trials: int) -> mx.array:
    """H&Z Alg. 4.6: trials needed for ``confidence`` at inlier ratio w, ``log(1-p)/log(1-w^4)``, capped."""
    w = num_inliers.astype(mx.float32) / mx.maximum(num_valid, 1).astype(mx.float32)
    q = 1 - w**4
    easy = q <= 1e-7
    hopeless = q >= 1 - 1e-12
    qs = mx.where(easy | hopeless, 0.5, q)
    need = mx.ceil(mx.log(mx.array(1 - confidence, mx.float32)) / mx.log(qs))
    need = mx.where(easy, 1, mx.where(hopeless, max_trials, need))
    return mx.minimum(need, max_trials).astype(mx.int32)
