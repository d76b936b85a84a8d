"""Stereo rectification of a calibrated pair, like ``cv2.stereoRectify`` (Bouguet's method).

Each camera turns by half the relative rotation (so both look the same way), then both turn
together so that the baseline lies along x (horizontal stereo) or y (vertical stereo, where
|t_y| > |t_x|). The new projection matrices share one focal length (the mean of the two
fy, or fx for vertical stereo) and principal points that centre the undistorted image corners;
``alpha`` in [0, 1] zooms between "only valid pixels" (0) and "every source pixel" (1). The
steps, their order and the tie-breaks follow OpenCV's ``cvStereoRectify``
(``modules/calib3d/src/calibration.cpp``); Bradski and Kaehler, *Learning OpenCV*, 2008, ch. 12.

What differs with lens distortion: OpenCV undistorts the corners (and the 9x9 border grid used
for ``alpha``) with 5 fixed-point iterations, this with ``camera.undistort_points``' converged
Newton steps. For a mild lens (k1 = -0.1) the outputs agree to ~3e-4 px; for k1 = -0.28 OpenCV's
corners stop ~0.4 px short, which moves its principal points by up to ~0.35 px and its alpha = 1
focal length by up to ~0.25 % (tests bound both). Without distortion the outputs equal OpenCV's
to float32 rounding. OpenCV's ``validPixROI`` rectangles are not returned.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

from .. import linalg
from .._checks import as_floats, broadcast_batch, cast_out, check_trailing
from .._vmap import all_of, any_of
from ..lie import so3_exp, so3_log
from ..lie.so3 import cross
from .pose import _normalised
from .relations import relative_pose

_GRID = 9  # OpenCV's border grid for the alpha rectangles (icvGetRectangles)


class StereoRectification(NamedTuple):
    """Result of :func:`stereo_rectify` (cv2.stereoRectify's R1, R2, P1, P2, Q), batched.

    Attributes:
        R1, R2: (*, 3, 3) rotations from each camera's frame to its rectified frame.
        P1, P2: (*, 3, 4) projection matrices of the rectified cameras (in the rectified frame
            of camera 1; ``P2[idx, 3] = f * baseline``, idx 0 horizontal, 1 vertical).
        Q: (*, 4, 4) disparity-to-depth matrix (``cv2.reprojectImageTo3D``).
        horizontal: (*) bool, the baseline is along x after rectification (else along y).
    """

    R1: mx.array
    R2: mx.array
    P1: mx.array
    P2: mx.array
    Q: mx.array
    horizontal: mx.array


def _matvec(m: mx.array, v: mx.array) -> mx.array:
    return linalg.matmul(m, v[..., None])[..., 0]


def _half_rotations(r: mx.array, t: mx.array) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """R1, R2 (*, 3, 3), the rectified baseline (*, 3) and the horizontal flag (*)."""
    r_half = so3_exp(-0.5 * so3_log(r))
    tr = _matvec(r_half, t)
    horizontal = mx.abs(tr[..., 0]) > mx.abs(tr[..., 1])
    c = mx.where(horizontal, tr[..., 0], tr[..., 1])
    sign = mx.where(c > 0, 1.0, -1.0).astype(t.dtype)
    zero = mx.zeros_like(sign)
    uu = mx.where(horizontal[..., None], mx.stack([sign, zero, zero], -1), mx.stack([zero, sign, zero], -1))
    ww = cross(tr, uu)
    nw2 = mx.sum(ww * ww, axis=-1)
    turn = nw2 > 0
    nw = mx.sqrt(mx.where(turn, nw2, 1.0))  # double where: a baseline already on the axis has a finite VJP
    # The angle between the baseline and the axis, atan2(|t x u|, |t . u|) (= OpenCV's acos(|c| / |t|)).
    scale = mx.where(turn, mx.arctan2(nw, mx.abs(c)) / nw, 0.0)
    w_r = so3_exp(ww * scale[..., None])
    r1 = linalg.matmul(w_r, r_half.swapaxes(-1, -2))
    r2 = linalg.matmul(w_r, r_half)
    return r1, r2, _matvec(r2, t), horizontal


def _rectified_pixels(camera: Any, pixels: mx.array, rot: mx.array, f: mx.array, c: mx.array) -> mx.array:
    """Where pixels (*, M, 2) of a camera's image land in its rectified image (rotation rot (*, 3, 3),
    focal length f (*), principal point c (*, 2)): undistort, rotate, project."""
    xn, _ = _normalised(camera, pixels)
    v = mx.concatenate([xn, mx.ones_like(xn[..., :1])], -1)
    ray = mx.sum(rot[..., None, :, :] * v[..., None, :], axis=-1)  # R v per point, exact float32
    return f[..., None, None] * ray[..., :2] / ray[..., 2:] + c[..., None, :]


def _corners(size: mx.array) -> mx.array:
    """(*, 4, 2) pixel centres of the image corners, (0, 0) ... (w - 1, h - 1), in OpenCV's order."""
    w, h = size[..., 0] - 1, size[..., 1] - 1
    z = mx.zeros_like(w)
    return mx.stack([mx.stack([z, z], -1), mx.stack([w, z], -1), mx.stack([z, h], -1), mx.stack([w, h], -1)], -2)


def _border_grid(size: mx.array) -> mx.array:
    """(*, 81, 2) OpenCV's 9x9 grid from (0, 0) to (w, h), row by row (icvGetRectangles)."""
    u = mx.arange(_GRID, dtype=size.dtype) / (_GRID - 1)
    gx = mx.broadcast_to(u[None, :], (_GRID, _GRID)).reshape(-1)
    gy = mx.broadcast_to(u[:, None], (_GRID, _GRID)).reshape(-1)
    return mx.stack([gx * (size[..., None, 0] - 1), gy * (size[..., None, 1] - 1)], -1)


def _rectangles(p: mx.array) -> tuple[mx.array, mx.array]:
    """Inner and outer rectangles (*, 4) = (x0, y0, x1, y1) of a rectified 9x9 border grid (*, 81, 2)."""
    g = p.reshape(*p.shape[:-2], _GRID, _GRID, 2)  # [row y, column x]
    inner = mx.stack([mx.max(g[..., :, 0, 0], -1), mx.max(g[..., 0, :, 1], -1),
                      mx.min(g[..., :, -1, 0], -1), mx.min(g[..., -1, :, 1], -1)], -1)
    outer = mx.concatenate([mx.min(p, -2), mx.max(p, -2)], -1)
    return inner, outer


def _zoom(rects: list[tuple[mx.array, mx.array]], centres: list[tuple[mx.array, mx.array]], new_size: mx.array,
          alpha: float) -> mx.array:
    """OpenCV's scale s = s0 (1 - alpha) + s1 alpha: s0 fits every inner rectangle to the new
    image (only valid pixels), s1 the outer ones (every source pixel)."""
    wn, hn = new_size[..., 0], new_size[..., 1]
    s0, s1 = [], []
    for (inner, outer), (c0, c) in zip(rects, centres):
        for rect, acc in ((inner, s0), (outer, s1)):
            acc += [c[..., 0] / (c0[..., 0] - rect[..., 0]), c[..., 1] / (c0[..., 1] - rect[..., 1]),
                    (wn - 1 - c[..., 0]) / (rect[..., 2] - c0[..., 0]), (hn - 1 - c[..., 1]) / (rect[..., 3] - c0[..., 1])]
    return mx.max(mx.stack(s0, -1), -1) * (1 - alpha) + mx.min(mx.stack(s1, -1), -1) * alpha


def _projection(f: mx.array, c: mx.array, tx: mx.array, ty: mx.array) -> mx.array:
    z, o = mx.zeros_like(f), mx.ones_like(f)
    return mx.stack([mx.stack([f, z, c[..., 0], tx], -1), mx.stack([z, f, c[..., 1], ty], -1),
                     mx.stack([z, z, o, z], -1)], -2)


def _pose_and_size(camera1: Any, camera2: Any, pose: Any, image_size: Any) -> tuple[mx.array, mx.array]:
    if pose is None:
        pose = relative_pose(camera1, camera2)
    if image_size is None:
        if not hasattr(camera1, "size"):
            raise ValueError("image_size: give (width, height), or pass Cameras with a size")
        image_size = camera1.size
    (pose, size), _ = as_floats(pose, image_size, names=("pose", "image_size"))
    if pose.ndim < 2 or pose.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"pose: expected shape (*, 4, 4) or (*, 3, 4), got {tuple(pose.shape)}")
    check_trailing(size, (2,), "image_size")
    return pose, size


def stereo_rectify(camera1: Any, camera2: Any, pose: Any = None, *, image_size: Any = None, alpha: float = -1.0,
                   zero_disparity: bool = True, new_image_size: Any = None) -> StereoRectification:
    """Rectifying rotations and projections of a stereo pair (like ``cv2.stereoRectify``).

    Conventions: ``pose`` is OpenCV's ``(R, T)`` of ``stereoRectify`` / ``stereoCalibrate``, the
    camera-2-from-camera-1 transform ``X2 = R X1 + T`` (*, 4, 4); None takes it from two
    ``Camera``s with world-to-camera poses (``T2 T1^-1``, :func:`relative_pose`).

    Args:
        camera1, camera2: ``camera.Camera`` (lens distortion honoured) or K (*, 3, 3).
        pose: (*, 4, 4) or (*, 3, 4) camera-2-from-camera-1, or None (from the Cameras).
        image_size: (*, 2) ``(width, height)``; None: camera1's ``size``.
        alpha: static; < 0 (OpenCV's -1, default) keeps the focal length, 0 zooms in until
            only valid pixels remain, 1 zooms out until every source pixel is kept.
        zero_disparity: static, OpenCV's ``CALIB_ZERO_DISPARITY`` (its default): both principal
            points equal, so points at infinity have zero disparity.
        new_image_size: (*, 2) size of the rectified images; None: image_size.

    Returns:
        :class:`StereoRectification` ``(R1, R2, P1, P2, Q, horizontal)``.

    Example:
        >>> import mlx.core as mx
        >>> K = mx.array([[500.0, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
        >>> pose = mx.array([[1.0, 0, 0, -0.1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        >>> rect = stereo_rectify(K, K, pose, image_size=[640, 480])
        >>> [round(v, 3) for v in rect.P2[0].tolist()]
        [500.0, 0.0, 319.5, -50.0]
    """
    pose, size = _pose_and_size(camera1, camera2, pose, image_size)
    new_size = size if new_image_size is None else as_floats(new_image_size, names=("new_image_size",))[0][0]
    k1 = camera1.K if hasattr(camera1, "K") else camera1
    k2 = camera2.K if hasattr(camera2, "K") else camera2
    (k1, k2), out = as_floats(k1, k2, names=("camera1 (K)", "camera2 (K)"))
    check_trailing(k1, (3, 3), "camera1 (K)")
    check_trailing(k2, (3, 3), "camera2 (K)")
    broadcast_batch(getattr(camera1, "batch_shape", k1.shape[:-2]), getattr(camera2, "batch_shape", k2.shape[:-2]),
                    pose.shape[:-2], size.shape[:-1], new_size.shape[:-1],
                    names=("camera1", "camera2", "pose", "image_size", "new_image_size"))
    r1, r2, t, horizontal = _half_rotations(pose[..., :3, :3], pose[..., :3, 3])
    ratio = mx.where(horizontal, new_size[..., 1] / size[..., 1], new_size[..., 0] / size[..., 0]) / 2
    f = mx.where(horizontal, k1[..., 1, 1] + k2[..., 1, 1], k1[..., 0, 0] + k2[..., 0, 0]) * ratio
    corners = _corners(size)
    zero = mx.zeros_like(size)
    cc = [(size - 1) / 2 - mx.mean(_rectified_pixels(cam, corners, rot, f, zero), axis=-2)
          for cam, rot in ((camera1, r1), (camera2, r2))]
    mean = (cc[0] + cc[1]) / 2
    if zero_disparity:
        cc = [mean, mean]
    else:  # only the coordinate across the baseline is shared
        keep_x = any_of(all_of(horizontal[..., None], mx.arange(2) == 0),
                        all_of(~horizontal[..., None], mx.arange(2) == 1))
        cc = [mx.where(keep_x, c, mean) for c in cc]
    scaled = [new_size * c / size for c in cc]
    if alpha >= 0:
        alpha = min(alpha, 1.0)
        grid = _border_grid(size)
        rects = [_rectangles(_rectified_pixels(cam, grid, rot, f, c))
                 for cam, rot, c in ((camera1, r1, cc[0]), (camera2, r2, cc[1]))]
        s = _zoom(rects, list(zip(cc, scaled)), new_size, alpha)
    else:
        s = mx.ones_like(f)
    f = f * s
    tb = mx.where(horizontal, t[..., 0], t[..., 1])
    zf = mx.zeros_like(f)
    p1 = _projection(f, scaled[0], zf, zf)
    p2 = _projection(f, scaled[1], mx.where(horizontal, tb * f, zf), mx.where(horizontal, zf, tb * f))
    q = _disparity_to_depth(f, scaled[0], scaled[1], tb, horizontal)
    return StereoRectification(*(cast_out(x, out) for x in (r1, r2, p1, p2, q)), horizontal)


def _disparity_to_depth(f: mx.array, c1: mx.array, c2: mx.array, tb: mx.array, horizontal: mx.array) -> mx.array:
    """OpenCV's Q: [x y d 1] -> [X Y Z W] with d the disparity along the baseline axis."""
    z, o = mx.zeros_like(f), mx.ones_like(f)
    shift = mx.where(horizontal, c1[..., 0] - c2[..., 0], c1[..., 1] - c2[..., 1])
    return mx.stack([mx.stack([o, z, z, -c1[..., 0]], -1), mx.stack([z, o, z, -c1[..., 1]], -1),
                     mx.stack([z, z, z, f], -1), mx.stack([z, z, -1 / tb, shift / tb], -1)], -2)
