"""Applying a homography to points: ``cv2.perspectiveTransform`` on the device."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_floats, broadcast_batch, cast_out, check_trailing
from ._common import safe_div

# OpenCV's perspectiveTransform treats |w| <= FLT_EPSILON as a point at infinity.
_W_EPS = 1.1920929e-07


def perspective_transform_ex(points: Any, H: Any) -> tuple[mx.array, mx.array]:
    """Map points through projective matrices, with a validity mask.

    Args:
        points: (*, N, d) with d = 2 (pixels) or d = 3.
        H: (*, d + 1, d + 1); batch dims broadcast against ``points``' batch dims.

    Returns:
        ``(mapped, valid)``: mapped (*, N, d) = ``(H [p; 1])[:d] / (H [p; 1])[d]``; valid (*, N) bool,
        False where ``|w| <= FLT_EPSILON`` (the point maps to infinity), and there ``mapped`` is 0,
        as in ``cv2.perspectiveTransform``, or NaN where ``w`` is NaN (a NaN input). Gradients
        are finite everywhere.

    Example:
        >>> import mlx.core as mx
        >>> p, ok = perspective_transform_ex(mx.array([[1.0, 2.0]]), 2 * mx.eye(3))
        >>> p.tolist(), ok.tolist()
        ([[1.0, 2.0]], [True])
    """
    (p, h), out_dtype = as_floats(points, H, names=["points", "H"])
    check_trailing(p, (None, None), "points")
    d = p.shape[-1]
    if d not in (2, 3):
        raise ValueError(f"points: expected shape (*, N, 2) or (*, N, 3), got {tuple(p.shape)}")
    check_trailing(h, (d + 1, d + 1), "H")
    broadcast_batch(p.shape[:-2], h.shape[:-2], names=["points", "H"])
    hom = mx.concatenate([p, mx.ones(p.shape[:-1] + (1,), dtype=p.dtype)], axis=-1)
    # Elementwise product-and-sum keeps full float32 (no TF32 matmul on CUDA).
    out = mx.sum(h[..., None, :, :] * hom[..., :, None, :], axis=-1)
    w = out[..., d]
    valid = mx.abs(w) > _W_EPS
    mapped = safe_div(out[..., :d], w[..., None], valid[..., None])
    # A NaN input stays NaN (in its own entry) instead of passing for a point at infinity.
    mapped = mx.where(mx.isnan(w)[..., None], w[..., None], mapped)
    return cast_out(mapped, out_dtype), valid


def perspective_transform(points: Any, H: Any) -> mx.array:
    """``cv2.perspectiveTransform``: (*, N, d) points through (*, d + 1, d + 1) matrices, d in {2, 3}.

    Points that map to infinity (``|w| <= FLT_EPSILON``) come out as 0, as in OpenCV (NaN inputs
    stay NaN); use :func:`perspective_transform_ex` to get the validity mask.

    Example:
        >>> import mlx.core as mx
        >>> H = mx.array([[1.0, 0, 5], [0, 1, -1], [0, 0, 1]])
        >>> perspective_transform(mx.array([[0.0, 0.0]]), H).tolist()
        [[5.0, -1.0]]
    """
    return perspective_transform_ex(points, H)[0]
