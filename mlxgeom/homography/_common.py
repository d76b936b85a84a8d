"""Shared helpers: NaN-safe square root, input checks for point correspondences."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_floats, broadcast_batch, check_trailing
from .._vmap import all_of


def safe_sqrt(x: mx.array) -> mx.array:
    """sqrt(max(x, 0)) whose gradient is 0 (not inf / NaN) at x <= 0 ("double where")."""
    pos = x > 0
    return mx.where(pos, mx.sqrt(mx.where(pos, x, 1)), 0)


def safe_div(a: mx.array, b: mx.array, valid: mx.array) -> mx.array:
    """a / b where ``valid``, else 0, with finite gradients in the untaken branch."""
    return mx.where(valid, a / mx.where(valid, b, 1), 0)


def spread_ok(points: mx.array, w: mx.array, ratio: float = 1e-5) -> mx.array:
    """False where the weighted points (*, N, 2) lie on one line (or one point) to working precision.

    With the weighted 2x2 covariance C, ``det C > ratio * trace(C)^2`` bounds the ratio of its
    eigenvalues (the squared aspect ratio of the point cloud) from below by about ``ratio``.
    """
    total = mx.maximum(mx.sum(w, -1, keepdims=True), 1e-30)
    mean = mx.sum(w[..., None] * points, -2, keepdims=True) / total[..., None]
    x = points - mean
    cxx = mx.sum(w * x[..., 0] * x[..., 0], -1)
    cyy = mx.sum(w * x[..., 1] * x[..., 1], -1)
    cxy = mx.sum(w * x[..., 0] * x[..., 1], -1)
    tr = cxx + cyy
    return (cxx * cyy - cxy * cxy) > ratio * tr * tr


def drop_invalid(src: mx.array, dst: mx.array, w: mx.array) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """``(src, dst, w, valid)``: correspondences (*, N, 2) with zero weight or a non-finite point are
    zeroed (weight and points, so nothing non-finite reaches a sum); valid (*, N) marks the others."""
    valid = all_of(w > 0, mx.all(mx.isfinite(src), -1), mx.all(mx.isfinite(dst), -1))
    keep = valid[..., None]
    return mx.where(keep, src, 0), mx.where(keep, dst, 0), mx.where(valid, w, 0), valid


def check_correspondences(
    src: Any, dst: Any, weights: Any | None, names: tuple[str, str] = ("src", "dst")
) -> tuple[mx.array, mx.array, mx.array, mx.Dtype]:
    """Convert and broadcast ``src``/``dst`` (*, N, 2) and ``weights`` (*, N).

    ``names`` are the caller's names for src and dst (``("x1", "x2")`` for the epipolar front ends),
    so every error names the arguments the user passed.

    Returns float arrays broadcast to one batch shape and the output dtype. Raises ``ValueError``
    naming the expected shape when a trailing dimension or N does not match.
    """
    names = [*names, "weights"]
    (src, dst, *given), out_dtype = as_floats(src, dst, *([] if weights is None else [weights]), names=names)
    check_trailing(src, (None, 2), names[0])
    check_trailing(dst, (None, 2), names[1])
    n = src.shape[-2]
    if dst.shape[-2] != n:
        raise ValueError(f"{names[1]}: expected shape (*, N, 2) with N = {n} as in {names[0]}, got {tuple(dst.shape)}")
    w = given[0] if given else mx.ones(src.shape[:-1], dtype=src.dtype)
    if w.ndim < 1 or w.shape[-1] != n:
        raise ValueError(f"weights: expected shape (*, N) with N = {n}, got {tuple(w.shape)}")
    batch = broadcast_batch(src.shape[:-2], dst.shape[:-2], w.shape[:-1], names=names)
    return (mx.broadcast_to(src, batch + (n, 2)), mx.broadcast_to(dst, batch + (n, 2)),
            mx.broadcast_to(w, batch + (n,)), out_dtype)
