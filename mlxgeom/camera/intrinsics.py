"""Pinhole intrinsics: building K, its closed-form inverse, resizing and cropping.

Conventions (OpenCV): pixel centres sit at integer coordinates, the top-left pixel's
centre is (0, 0), u grows to the right and v downwards, and

    K = [[fx, s,  cx],
         [0,  fy, cy],
         [0,  0,  1 ]].

mlxgeom applies the skew ``s`` (``u = fx x + s y + cx``); ``cv2.projectPoints`` ignores
K[0, 1], so parity with OpenCV holds for ``s = 0`` (OpenCV's fisheye module takes the skew
as ``alpha = s / fx`` instead). The last row of K is taken to be [0, 0, 1] and is not read.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_float, as_floats, cast_out, check_batch, check_trailing
from .._vmap import all_of


def check_K(K: mx.array, name: str = "K") -> None:
    """Raise ``TypeError`` unless ``K`` is an array (e.g. None), ``ValueError`` unless it has shape (*, 3, 3)."""
    if not isinstance(K, mx.array):
        raise TypeError(f"{name}: expected a (*, 3, 3) intrinsics array, got {type(K).__name__}")
    check_trailing(K, (3, 3), name)


def intrinsics_matrix(fx: Any, fy: Any, cx: Any, cy: Any, skew: Any = 0.0) -> mx.array:
    """Build K from its five parameters; every argument broadcasts (batch of cameras).

    Args:
        fx, fy: focal lengths in pixels, (*) or scalars.
        cx, cy: principal point in pixels (OpenCV convention, top-left pixel centre (0, 0)).
        skew: K[0, 1], (*) or scalar.

    Returns:
        (*, 3, 3) intrinsics matrices.

    Example:
        >>> intrinsics_matrix(500.0, 500.0, 320.0, 240.0).shape
        (3, 3)
    """
    names = ("fx", "fy", "cx", "cy", "skew")
    (fx, fy, cx, cy, skew), out = as_floats(fx, fy, cx, cy, skew, names=names)
    check_batch(*((n, a, 0) for n, a in zip(names, (fx, fy, cx, cy, skew))))
    fx, fy, cx, cy, skew = mx.broadcast_arrays(fx, fy, cx, cy, skew)
    zero, one = mx.zeros_like(fx), mx.ones_like(fx)
    flat = mx.stack([fx, skew, cx, zero, fy, cy, zero, zero, one], axis=-1)
    return cast_out(flat.reshape(*fx.shape, 3, 3), out)


def intrinsics_inverse(K: Any) -> mx.array:
    """Closed-form inverse of upper-triangular intrinsics (skew included).

    ``K^-1 = [[1/fx, -s/(fx fy), (s cy - cx fy)/(fx fy)], [0, 1/fy, -cy/fy], [0, 0, 1]]``.
    Zero focal lengths give inf/NaN in that camera's entries only (no host sync to check).

    Args:
        K: (*, 3, 3); only fx, fy, cx, cy and skew are read.

    Returns:
        (*, 3, 3).

    Example:
        >>> intrinsics_inverse(mx.array([[2.0, 0, 1], [0, 4.0, 2], [0, 0, 1]]))[0, 2].item()
        -0.5
    """
    K, out = as_float(K, "K")
    check_K(K)
    fx, fy, cx, cy, s = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 0, 1]
    ifx, ify = 1.0 / fx, 1.0 / fy
    zero, one = mx.zeros_like(fx), mx.ones_like(fx)
    flat = mx.stack([ifx, -s * ifx * ify, (s * cy - cx * fy) * ifx * ify, zero, ify, -cy * ify, zero, zero, one], -1)
    return cast_out(flat.reshape(*fx.shape, 3, 3), out)


def focal_ok(K: mx.array) -> mx.array:
    """(*) bool: True where fx > 0, fy > 0 and the five parameters are finite (no sync)."""
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    params = mx.stack([fx, fy, K[..., 0, 2], K[..., 1, 2], K[..., 0, 1]], axis=-1)
    return all_of(fx > 0, fy > 0, mx.all(mx.isfinite(params), axis=-1))


def scale_intrinsics(K: Any, sx: Any, sy: Any | None = None) -> mx.array:
    """Intrinsics of the image resized by (sx, sy) (e.g. ``cv2.resize`` to a new size).

    With integer pixel centres, a pixel edge at -0.5 maps to -0.5, so
    ``fx' = sx fx, s' = sx s, cx' = sx (cx + 0.5) - 0.5`` (and likewise in y).

    Args:
        K: (*, 3, 3).
        sx, sy: scale factors, scalars or (*); sy defaults to sx.

    Returns:
        (*, 3, 3).

    Example:
        >>> scale_intrinsics(mx.array([[100.0, 0, 49.5], [0, 100, 49.5], [0, 0, 1]]), 2.0)[0, 2].item()
        99.5
    """
    sy = sx if sy is None else sy
    (K, sx, sy), out = as_floats(K, sx, sy, names=("K", "sx", "sy"))
    check_K(K)
    check_batch(("K", K, 2), ("sx", sx, 0), ("sy", sy, 0))
    return cast_out(_left_affine(mx.broadcast_arrays(sx, sy, 0.5 * sx - 0.5, 0.5 * sy - 0.5), K), out)


def crop_intrinsics(K: Any, left: Any, top: Any) -> mx.array:
    """Intrinsics of the crop whose top-left pixel is (left, top) of the original image.

    Example:
        >>> crop_intrinsics(mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]), 10, 20)[1, 2].item()
        20.0
    """
    (K, left, top), out = as_floats(K, left, top, names=("K", "left", "top"))
    check_K(K)
    check_batch(("K", K, 2), ("left", left, 0), ("top", top, 0))
    S = mx.broadcast_arrays(mx.ones_like(left), mx.ones_like(top), -left, -top)
    return cast_out(_left_affine(S, K), out)


def _left_affine(S: tuple[mx.array, ...], K: mx.array) -> mx.array:
    """[[sx, 0, tx], [0, sy, ty], [0, 0, 1]] @ K for upper-triangular K, elementwise."""
    sx, sy, tx, ty = (a[..., None] for a in S)
    row0 = sx * K[..., 0, :] + tx * K[..., 2, :]
    row1 = sy * K[..., 1, :] + ty * K[..., 2, :]
    row2 = mx.broadcast_to(K[..., 2, :], row0.shape)
    return mx.stack([row0, row1, row2], axis=-2)

