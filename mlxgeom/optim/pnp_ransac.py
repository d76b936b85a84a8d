"""Robust PnP: the pose as a model for the batched RANSAC/MSAC driver :func:`mlxgeom.solve.ransac`."""

from __future__ import annotations

import math
from typing import Any, Union

import mlx.core as mx

from .._compiled import eager
from ..solve import RansacModel, RobustLoss, ransac
from .pnp import PnPResult, _finish, _prepare, initial_pose, refine_pnp, reprojection_errors

_MIN_SAMPLE = {"epnp": 4, "dlt": 6}


def pnp_model(k: mx.array, sample_size: int, method: str, refine: bool, loss: Union[RobustLoss, str, None],
              loss_scale: float, max_iters: int) -> RansacModel:
    """The :class:`RansacModel` of world-to-camera poses (B, 4, 4) on data ``(points (B, N, 3),
    pixels (B, N, 2))`` of cameras k (B, 3, 3): EPnP / DLT on each sample, squared pixel errors
    (+inf behind the camera), and LM on the inliers as the refit (None without ``refine``). The
    refit runs a few times per call on one pose per problem, so its cores run eagerly
    (:func:`mlxgeom._compiled.eager`) rather than compiling kernels of their own."""

    def minimal(samples: tuple[mx.array, ...]) -> tuple[mx.array, mx.array]:
        pw, uv = samples
        poses, ok = initial_pose(pw, uv, k[:, None], mx.ones(pw.shape[:-1], dtype=pw.dtype), method)
        return poses[:, :, None], ok[:, :, None]

    def sq_error(poses: mx.array, data: tuple[mx.array, ...]) -> mx.array:
        return reprojection_errors(poses, data[0][:, None], data[1][:, None], k[:, None])

    @eager()
    def refit(pose: mx.array, data: tuple[mx.array, ...], w: mx.array) -> tuple[mx.array, mx.array]:
        lm = refine_pnp(pose, *data, k, w, loss=loss, loss_scale=loss_scale, max_iters=max_iters)
        return lm.x, mx.all(mx.isfinite(lm.x), axis=(-2, -1))

    return RansacModel(sample_size, minimal, sq_error, refit if refine else None)


def solve_pnp_ransac(points_3d: Any, pixels: Any, camera_or_k: Any, *, threshold: float = 8.0,
                     num_hypotheses: int = 128, sample_size: int = 5, method: str = "epnp",
                     refine: bool = True, refit_rounds: int = 2, loss: Union[RobustLoss, str, None] = None,
                     loss_scale: float = 2.0, max_iters: int = 10, min_inliers: int = 6,
                     mask: Any = None, key: mx.array | None = None) -> PnPResult:
    """Robust PnP for many problems at once: the batched RANSAC/MSAC driver on the device.

    For every problem, :func:`mlxgeom.solve.ransac` draws ``num_hypotheses`` minimal sets of
    ``sample_size`` distinct correspondences with ``mx.random``, solves each by EPnP (or DLT),
    scores all hypotheses with the MSAC cost (preemptively on a random subset for N >= 512),
    keeps the best one per problem and refits it by LM on its inliers ``refit_rounds`` times
    (re-selecting the inliers after each fit, keeping a refit only where the score does not drop).
    The count is static: the probability that no hypothesis is outlier-free is ``(1 - w^s)^H`` for
    inlier ratio w (Hartley-Zisserman Alg. 4.6); with w = 0.7, s = 5, H = 128 it is 1e-10.

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
        :class:`PnPResult` with ``inliers`` (*, N) (all False where ``ok`` is False) and
        ``converged`` equal to ``ok``.

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
    if n < max(sample_size, min_inliers):
        # Known from shapes alone: no problem can have enough inliers.
        pose = mx.broadcast_to(mx.eye(4, dtype=pw.dtype), (*batch, 4, 4))
        return _finish(pose, mx.zeros(batch, dtype=mx.bool_), pw, uv, k, w, None, w > 0, out)
    b = math.prod(batch)
    model = pnp_model(k.reshape(b, 3, 3), sample_size, method, refine, loss, loss_scale, max_iters)
    res = ransac(model, (pw.reshape(b, n, 3), uv.reshape(b, n, 2)), w.reshape(b, n), threshold,
                 max_trials=num_hypotheses, key=key, refit_rounds=refit_rounds,
                 min_inliers=min_inliers)
    inl = res.inliers.reshape(*batch, n)
    return _finish(res.model.reshape(*batch, 4, 4), res.ok.reshape(batch), pw, uv, k, inl.astype(pw.dtype), None,
                   inl, out)
