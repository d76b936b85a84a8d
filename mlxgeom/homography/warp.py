"""``warp_perspective``: batched inverse-map warping with OpenCV's conventions, on the device."""

from __future__ import annotations

import math
from typing import Any, Sequence

import mlx.core as mx

from .._checks import as_checked, as_float, broadcast_batch, cast_out
from .._indexing import take
from .._vmap import all_of
from ..linalg.inverse import _adjugate_transposed

_INTERPOLATIONS = ("bilinear", "nearest")
_BORDERS = ("constant", "replicate")


def _source_coords(h: mx.array, height: int, width: int) -> tuple[mx.array, mx.array, mx.array]:
    """Source coordinates (*, height, width) of every output pixel centre, and where they are finite."""
    m = _adjugate_transposed(h).swapaxes(-1, -2)  # det(h) h^-1: the inverse map up to scale, even for singular h
    xs = mx.arange(width, dtype=h.dtype)[None, :]
    ys = mx.arange(height, dtype=h.dtype)[:, None]
    e = [[m[..., i, j][..., None, None] for j in range(3)] for i in range(3)]
    X = e[0][0] * xs + e[0][1] * ys + e[0][2]
    Y = e[1][0] * xs + e[1][1] * ys + e[1][2]
    W = e[2][0] * xs + e[2][1] * ys + e[2][2]
    scale = mx.max(mx.abs(m), axis=(-2, -1))[..., None, None]
    good = mx.abs(W) > 1e-12 * scale
    Ws = mx.where(good, W, 1)
    return X / Ws, Y / Ws, good


def _check_layout(img: mx.array, has_c: bool, channels: bool | None) -> None:
    """Refuse layouts that would be misread: too few dims, an empty image, C > 4 guessed."""
    shape, k = tuple(img.shape), 3 if has_c else 2
    if img.ndim < k:
        raise ValueError(f"images: expected shape (*, h, w, C) or (*, h, w), got {shape}")
    if min(shape[-k:]) == 0:
        raise ValueError(f"images: empty image of shape {shape} (h, w and C must be >= 1)")
    if channels is None and img.ndim >= 3 and img.shape[-1] > 4:
        raise ValueError(
            f"images: shape {shape} would be read as (*, h, w, C) with C = {img.shape[-1]} channels; "
            f"images are channels-last: move a channels-first (C, h, w) axis last (e.g. "
            f"img.transpose(1, 2, 0)), pass channels=False for a batch of single-channel (*, h, w) "
            f"images, or channels=True for a {img.shape[-1]}-channel image")


def warp_perspective(images: Any, H: Any, out_size: Sequence[int], *, interpolation: str = "bilinear",
                     border: str = "constant", border_value: float | Sequence[float] = 0.0,
                     channels: bool | None = None) -> mx.array:
    """Warp images by homographies, like ``cv2.warpPerspective(img, H, out_size)``.

    Conventions (OpenCV): ``H`` maps source pixels to output pixels; each output pixel centre
    ``(x, y)`` (integers) samples the source at ``pi(H^-1 [x, y, 1])``; ``out_size`` is
    ``(width, height)``. Unlike OpenCV, which rounds source coordinates to 1/32 pixel and bilinear
    weights to 15 bits, sampling here is exact float arithmetic (so results differ from OpenCV's
    by at most about |image gradient| / 64 per pixel), and the output is differentiable with
    respect to both the images and ``H``.

    Args:
        images: (*, h, w, C) images, or (*, h, w) when ``channels`` is False; a 2-D array is one
            single-channel image. Layouts are channels-last only (OpenCV's, not PyTorch's
            (C, h, w)). By default (``channels=None``) inputs with 3 or more dims are read as
            (*, h, w, C) with C <= 4, and a last dim above 4 raises ``ValueError`` (it is a
            channels-first image or a batch of single-channel images, and would be read as a
            w-channel image): pass ``channels=False`` for a batch of single-channel images,
            ``channels=True`` for feature maps with many channels, or move a channels-first
            axis last (``img.transpose(1, 2, 0)``). Empty images (h, w or C = 0) raise
            ``ValueError``. Integer images are computed (and returned) in float32: round them yourself.
        H: (*, 3, 3) src -> dst homographies; batch dims broadcast against the images'.
        out_size: ``(width, height)`` of the output.
        interpolation: ``"bilinear"`` (``cv2.INTER_LINEAR``) or ``"nearest"`` (``cv2.INTER_NEAREST``,
            rounding half to even like ``cvRound``).
        border: ``"constant"`` (taps outside the image read ``border_value``, ``cv2.BORDER_CONSTANT``)
            or ``"replicate"`` (``cv2.BORDER_REPLICATE``).
        border_value: scalar or per-channel (C,) value for ``border="constant"``.

    Returns:
        (*, height, width, C) (or (*, height, width)) warped images. Output pixels whose source
        point is at infinity get the border value (constant) or are clamped (replicate).

    Example:
        >>> import mlx.core as mx
        >>> img = mx.arange(12, dtype=mx.float32).reshape(3, 4)
        >>> shift = mx.array([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]])
        >>> warp_perspective(img, shift, (4, 3))[0].tolist()
        [0.0, 0.0, 1.0, 2.0]
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {_BORDERS}, got {border!r}")
    if len(out_size) != 2 or min(int(out_size[0]), int(out_size[1])) < 1:
        raise ValueError(f"out_size must be (width, height) with positive entries, got {out_size!r}")
    img, out_dtype = as_float(images, "images")
    h_mat = as_checked(H, (3, 3), "H")[0].astype(img.dtype)
    has_c = img.ndim >= 3 if channels is None else channels
    _check_layout(img, has_c, channels)
    if not has_c:
        img = img[..., None]
    in_h, in_w, c = img.shape[-3:]
    batch = broadcast_batch(img.shape[:-3], h_mat.shape[:-2], names=["images", "H"])
    width, height = int(out_size[0]), int(out_size[1])
    sx, sy, good = _source_coords(mx.broadcast_to(h_mat, batch + (3, 3)), height, width)
    fill = mx.broadcast_to(mx.array(border_value, dtype=img.dtype), (c,))
    # Index of each output's source image in the flattened image stack (no copy of the images).
    img_batch = img.shape[:-3]
    which = mx.broadcast_to(mx.arange(math.prod(img_batch)).reshape(img_batch + (1, 1)) if img_batch else mx.zeros((1, 1), mx.int32), batch + (1, 1))
    flat = img.reshape(-1, c)
    # Clamping far-away coordinates keeps them outside (or on the edge) and the integers small.
    sx = mx.where(good, mx.clip(sx, -2, in_w + 1), -2)
    sy = mx.where(good, mx.clip(sy, -2, in_h + 1), -2)

    def tap(xi: mx.array, yi: mx.array) -> mx.array:
        inside = all_of(xi >= 0, xi < in_w, yi >= 0, yi < in_h)
        xc, yc = mx.clip(xi, 0, in_w - 1), mx.clip(yi, 0, in_h - 1)
        # Gradients flow through the interpolation weights, not the integer tap positions.
        lin = mx.stop_gradient((which * (in_h * in_w) + yc * in_w + xc).astype(mx.int32))
        vals = take(flat, lin.reshape(-1), axis=0).reshape(lin.shape + (c,))
        if border == "constant":
            vals = mx.where(inside[..., None], vals, fill)
        return vals

    if interpolation == "nearest":
        out = tap(mx.stop_gradient(mx.round(sx)).astype(mx.int32), mx.stop_gradient(mx.round(sy)).astype(mx.int32))
    else:
        x0, y0 = mx.stop_gradient(mx.floor(sx)), mx.stop_gradient(mx.floor(sy))
        fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
        xi, yi = x0.astype(mx.int32), y0.astype(mx.int32)
        top = tap(xi, yi) * (1 - fx) + tap(xi + 1, yi) * fx
        bottom = tap(xi, yi + 1) * (1 - fx) + tap(xi + 1, yi + 1) * fx
        out = top * (1 - fy) + bottom * fy
    if border == "constant":
        out = mx.where(good[..., None], out, fill)
    if not has_c:
        out = out[..., 0]
    return cast_out(out, out_dtype)
