"""Batched PnP RANSAC: all hypotheses of all problems sampled, solved and scored on the device."""

from __future__ import annotations

import math
from typing import Any, Union

import mlx.core as mx

from .._checks import argmin
from ..solve import RobustLoss
from .pnp import PnPResult, _finish, _prepare, initial_pose, refine_pnp, reprojection_residuals

_MIN_SAMPLE = {"epnp": 4, "dlt": 6}


def _sample(key: mx.array, batch: tuple[int, ...], hyps: int, size: int, n: int) -> tuple[mx.array, mx.array]:
    """Random index sets (*, H, s) and a mask (*, H) of the sets without repeated indices.

    Drawing with replacement and discarding the rare sets with repeats keeps sampling
    O(H s) per problem instead of a permutation of all N points.
    """
    idx = mx.random.randint(0, n, (*batch, hyps, size), key=key)
    distinct = mx.ones((*batch, hyps), dtype=mx.bool_)
    for i in range(size):
        for j in range(i + 1, size):
            distinct = distinct & (idx[..., i] != idx[..., j])
    return idx, distinct


def _gather(x: mx.array, idx: mx.array) -> mx.array:
    """x (*, N, d) gathered at idx (*, H, s) -> (*, H, s, d), via a flat take (no broadcast copy)."""
    batch, n, d = x.shape[:-2], x.shape[-2], x.shape[-1]
    count = math.prod(batch)
    offsets = (mx.arange(count) * n).reshape(*batch, 1, 1)
    flat = (idx + offsets).reshape(-1)
    return mx.take(x.reshape(count * n, d), flat, axis=0).reshape(*idx.shape, d)


def _squared_errors(pose: mx.array, pw: mx.array, uv: mx.array, k: mx.array) -> tuple[mx.array, mx.array]:
    """Squared pixel errors (*, N) and in-front mask of poses (*, 4, 4)."""
    res = reprojection_residuals(pose, pw, uv, k)
    depth = pose[..., None, 2, :3] * pw
    in_front = mx.sum(depth, axis=-1) + pose[..., None, 2, 3] > 0
    return mx.sum(res * res, axis=-1), in_front


def _best_hypothesis(poses: mx.array, hyp_ok: mx.array, pw: mx.array, uv: mx.array, k: mx.array,
                     w: mx.array, thr2: float) -> tuple[mx.array, mx.array]:
    """MSAC choice (Torr and Zisserman 2000): least ``sum_i min(e_i^2, thr^2)`` per problem."""
    e2, in_front = _squared_errors(poses, pw[..., None, :, :], uv[..., None, :, :], k[..., None, :, :])
    e2 = mx.where(mx.isfinite(e2) & in_front, e2, thr2)
    cost = mx.sum(w[..., None, :] * mx.minimum(e2, thr2), axis=-1)
    cost = mx.where(hyp_ok, cost, mx.inf)
    best = argmin(cost, axis=-1)
    pose = mx.take_along_axis(poses, best[..., None, None, None], axis=-3)[..., 0, :, :]
    return pose, mx.take_along_axis(hyp_ok, best[..., None], axis=-1)[..., 0]


def _inliers(pose: mx.array, pw: mx.array, uv: mx.array, k: mx.array, w: mx.array, thr2: float) -> mx.array:
    e2, in_front = _squared_errors(pose, pw, uv, k)
    return (w > 0) & in_front & (e2 < thr2)


def solve_pnp_ransac(points_3d: Any, pixels: Any, camera_or_k: Any, *, threshold: float = 8.0,
                     num_hypotheses: int = 128, sample_size: int = 5, method: str = "epnp",
                     refine: bool = True, refit_rounds: int = 2, loss: Union[RobustLoss, str, None] = None,
                     loss_scale: float = 2.0, max_iters: int = 10, min_inliers: int = 6,
                     mask: Any = None, key: mx.array | None = None) -> PnPResult:
    """Robust PnP for many problems at once: batched RANSAC/MSAC on the device.

    For every problem, ``num_hypotheses`` minimal sets of ``sample_size`` correspondences
    are drawn with ``mx.random`` (sets with a repeated index are discarded), each is solved
    by EPnP (or DLT), all hypotheses are scored on all points with the truncated
    quadratic MSAC cost, the best one per problem is kept, and it is refitted by LM on its
    inliers ``refit_rounds`` times (re-selecting inliers after each fit). The count is
    static (no adaptive early stop): the probability that no hypothesis is outlier-free is
    ``(1 - w^s)^H`` for inlier ratio w (Hartley-Zisserman Alg. 4.6); with w = 0.7, s = 5,
    H = 128 it is 1e-10.

    Args:
        points_3d: (*, N, 3); pixels: (*, N, 2); camera_or_k: K (*, 3, 3) or a Camera.
        threshold: inlier threshold in pixels (OpenCV's default reprojectionError is 8).
        num_hypotheses, sample_size: H and s (s >= 4 for EPnP, >= 6 for DLT).
        method: minimal solver, ``"epnp"`` or ``"dlt"``.
        refine, refit_rounds, loss, loss_scale, max_iters: the inlier refit.
        min_inliers: problems with fewer inliers get ``ok == False``.
        mask: optional (*, N) bool, correspondences that exist (padding of ragged problems).
        key: ``mx.random.key``; default ``mx.random.key(0)`` (deterministic).

    Returns:
        :class:`PnPResult` with ``inliers`` (*, N).

    Example:
        >>> import mlx.core as mx
        >>> pw = mx.random.uniform(-1, 1, (40, 3), key=mx.random.key(1)) + mx.array([0., 0, 6])
        >>> k = mx.array([[500., 0, 320], [0, 500, 240], [0, 0, 1]])
        >>> uv = pw[:, :2] / pw[:, 2:] * 500 + mx.array([320., 240])
        >>> uv = mx.where(mx.arange(40)[:, None] < 10, uv + 50.0, uv)
        >>> res = solve_pnp_ransac(pw, uv, k)
        >>> bool(res.ok), int(res.inliers.sum())
        (True, 30)
    """
    if method not in _MIN_SAMPLE:
        raise ValueError(f"method: expected 'epnp' or 'dlt', got {method!r}")
    if sample_size < _MIN_SAMPLE[method]:
        raise ValueError(f"sample_size: {method} needs at least {_MIN_SAMPLE[method]} points, got {sample_size}")
    if num_hypotheses < 1 or threshold <= 0:
        raise ValueError("num_hypotheses must be >= 1 and threshold > 0")
    pw, uv, k, w, out = _prepare(points_3d, pixels, camera_or_k, mask)
    batch, n = pw.shape[:-2], pw.shape[-2]
    thr2 = float(threshold) ** 2
    if n < max(sample_size, min_inliers):
        pose = mx.broadcast_to(mx.eye(4, dtype=pw.dtype), (*batch, 4, 4))
        return _finish(pose, mx.zeros(batch, dtype=mx.bool_), pw, uv, k, w, None, w > 0, out)
    key = mx.random.key(0) if key is None else key
    idx, distinct = _sample(key, batch, num_hypotheses, sample_size, n)
    # Hypothesis generation and scoring are constants for autodiff; the refit is not.
    pw0, uv0, k0, w0 = (mx.stop_gradient(a) for a in (pw, uv, k, w))
    ws = _gather(w0[..., None], idx)[..., 0]
    kh = mx.broadcast_to(k0[..., None, :, :], (*batch, num_hypotheses, 3, 3))
    poses, hyp_ok = initial_pose(_gather(pw0, idx), _gather(uv0, idx), kh, ws, method)
    hyp_ok = hyp_ok & distinct & mx.all(ws > 0, axis=-1)
    pose, ok = _best_hypothesis(poses, hyp_ok, pw0, uv0, k0, w0, thr2)
    hessian = None
    inl = _inliers(pose, pw, uv, k, w, thr2)
    for _ in range(refit_rounds if refine else 0):
        lm = refine_pnp(pose, pw, uv, k, inl.astype(pw.dtype), loss=loss, loss_scale=loss_scale, max_iters=max_iters)
        pose, hessian = lm.x, lm.hessian
        inl = _inliers(pose, pw, uv, k, w, thr2)
    if refine and refit_rounds > 0:
        # The inlier set moved after the last fit: one more refit so pose and inliers agree.
        lm = refine_pnp(pose, pw, uv, k, inl.astype(pw.dtype), loss=loss, loss_scale=loss_scale, max_iters=max_iters)
        pose, hessian = lm.x, lm.hessian
    ok = ok & (mx.sum(inl, axis=-1) >= min_inliers)
    return _finish(pose, ok, pw, uv, k, inl.astype(pw.dtype), hessian, inl, out)
