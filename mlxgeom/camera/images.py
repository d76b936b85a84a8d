"""Image undistortion on the device: undistortion maps and bilinear remapping.

``undistort_map`` is ``cv2.initUndistortRectifyMap`` without rectification (R = I): for every
pixel of the ideal pinhole image (intrinsics ``K_new``) it gives the pixel of the distorted
image to sample, computed forward through the lens model (no iterations). ``remap`` samples
bilinearly with pixel centres at integer coordinates like ``cv2.remap(..., INTER_LINEAR,
BORDER_CONSTANT)``; it is built from ``mx.take_along_axis`` gathers, so it is differentiable
in the image and in the map and stays on the device.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_checked, as_float, as_floats, broadcast_batch, cast_out
from .._indexing import take_rows
from .._vmap import all_of
from .camera import Camera
from .projection import distort_points, pixel_grid


def undistort_map(K: Any, dist: Any, size: tuple[int, int], K_new: Any = None,
                  model: str = "opencv") -> tuple[mx.array, mx.array]:
    """Sampling map of the undistorted image: ``(map (*, H, W, 2) [u, v], valid (*, H, W))``.

    Args:
        K: (*, 3, 3) intrinsics of the distorted camera; dist (*, k); model as in
            :func:`mlxgeom.camera.project_points`.
        size: (width, height) of the output image (Python ints).
        K_new: (*, 3, 3) intrinsics of the output image; None uses K.

    Example:
        >>> m, ok = undistort_map(mx.eye(3), None, (4, 3))
        >>> m.shape, m[2, 3].tolist()
        ((3, 4, 2), [3.0, 2.0])
    """
    width, height = int(size[0]), int(size[1])
    K_new = K if K_new is None else K_new
    # The grid is float32 (integers beyond 2048 are not exact in float16): the map takes the
    # cameras' dtype, not the promotion with the grid's.
    _, out = as_floats(*[x for x in (K, dist, K_new) if x is not None], names=("K", "dist", "K_new"))
    grid = pixel_grid(height, width).reshape(height * width, 2)
    px, ok = distort_points(grid, K, dist, model, K_new)
    px = cast_out(px, out)
    return px.reshape(*px.shape[:-2], height, width, 2), ok.reshape(*ok.shape[:-1], height, width)


def remap(image: Any, map_uv: Any, fill: float = 0.0) -> mx.array:
    """Bilinear sampling of ``image`` at ``map_uv``; samples outside the image get ``fill``.

    A sample is inside when ``-1 < u < W`` and ``-1 < v < H``; taps that fall outside are
    replaced by ``fill`` (OpenCV's BORDER_CONSTANT), so edges blend into the fill value.

    Args:
        image: (*, H, W, C) or (H, W) for a single-channel image.
        map_uv: (*, Ho, Wo, 2) pixel coordinates [u, v]; batch dims broadcast with the image's.

    Returns:
        (*, Ho, Wo, C) (or (Ho, Wo) for a 2-D image) in the image's dtype.

    Example:
        >>> img = mx.arange(6, dtype=mx.float32).reshape(2, 3)
        >>> remap(img, mx.array([[[0.5, 0.5]]])).tolist()
        [[2.0]]
    """
    img, out = as_float(image, "image")
    uv = as_checked(map_uv, (None, None, 2), "map_uv")[0].astype(img.dtype)
    plain = img.ndim == 2
    if plain:
        img = img[..., None]
    if img.ndim < 3:
        raise ValueError(f"image: expected shape (*, H, W, C) or (H, W), got {tuple(img.shape)}")
    h, w, c = img.shape[-3:]
    ho, wo = uv.shape[-3:-1]
    batch = broadcast_batch(img.shape[:-3], uv.shape[:-3], names=("image", "map_uv"))
    flat = mx.broadcast_to(img, (*batch, h, w, c)).reshape(*batch, h * w, c)
    uv = mx.broadcast_to(uv, (*batch, ho, wo, 2)).reshape(*batch, ho * wo, 2)
    u, v = uv[..., 0], uv[..., 1]
    finite = all_of(mx.isfinite(u), mx.isfinite(v))
    u, v = mx.where(finite, u, -2.0), mx.where(finite, v, -2.0)
    u0, v0 = mx.floor(u), mx.floor(v)
    fu, fv = u - u0, v - v0
    acc = mx.zeros((*batch, ho * wo, c), dtype=img.dtype)
    for du, dv, wgt in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)), (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
        ui, vi = u0 + du, v0 + dv
        inside = all_of(ui >= 0, ui <= w - 1, vi >= 0, vi <= h - 1)
        # The tap index is piecewise constant in the map: the gradient flows through the weights.
        idx = mx.stop_gradient((mx.clip(vi, 0, h - 1) * w + mx.clip(ui, 0, w - 1)).astype(mx.int32))
        tap = take_rows(flat, idx, axis=-2)
        acc = acc + wgt[..., None] * mx.where(inside[..., None], tap, fill)
    res = acc.reshape(*batch, ho, wo, c)
    return cast_out(res[..., 0] if plain else res, out)


def undistort_image(image: Any, camera: Any, K_new: Any = None, size: tuple[int, int] | None = None,
                    fill: float = 0.0) -> mx.array:
    """Undistorted image of a :class:`~mlxgeom.camera.Camera` (``cv2.undistort`` for one camera,
    batched over cameras and images).

    Args:
        image: (*, H, W, C) or (H, W) distorted image(s).
        camera: Camera (its K, dist and model; the pose is not used).
        K_new: intrinsics of the output; None keeps the camera's K (as ``cv2.undistort``).
        size: (width, height) of the output; None keeps the input's.

    Example:
        >>> from mlxgeom.camera import Camera
        >>> img = mx.ones((4, 5))
        >>> undistort_image(img, Camera(mx.array([[5.0, 0, 2], [0, 5, 1.5], [0, 0, 1]]))).shape
        (4, 5)
    """
    if not isinstance(camera, Camera):
        raise TypeError(f"camera: expected a mlxgeom.camera.Camera, got {type(camera).__name__}")
    img, _ = as_float(image, "image")
    k_new = None if K_new is None else as_float(K_new, "K_new")[0]
    # Checked here, so a clash names the camera rather than the sampling map built from it.
    broadcast_batch(img.shape[:-3], camera.batch_shape, *([] if k_new is None else [k_new.shape[:-2]]),
                    names=("image", "camera", "K_new"))
    if size is None:
        size = (img.shape[-1], img.shape[-2]) if img.ndim == 2 else (img.shape[-2], img.shape[-3])
    dist = camera.dist if camera.dist.shape[-1] else None
    m, _ = undistort_map(camera.K, dist, size, k_new, camera.model)
    return remap(image, m, fill)
