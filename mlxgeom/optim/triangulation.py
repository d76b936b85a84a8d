"""Batched multi-view triangulation: linear DLT plus optional Levenberg-Marquardt refinement."""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

from .. import linalg
from ..camera import projection
from ..camera.projection import MIN_DEPTH
from ..homography._common import safe_sqrt
from .._checks import as_floats, broadcast_batch, cast_out, check_trailing
from .._vmap import all_of, any_of
from ..solve import levenberg_marquardt
from .pnp import normalize_pixels, undistorted


class TriangulationResult(NamedTuple):
    """Result of :func:`triangulate_points`, batched like the points.

    Attributes:
        points: (*, 3) world points (zeros where not ok).
        ok: (*) bool: >= 2 views used, the point is finite (not at infinity) and in front
            of every used camera (depth > ``camera.projection.MIN_DEPTH``, as ``Camera.project``).
        reprojection_error: (*) RMS pixel error over the used views (inf where not ok).
    """

    points: mx.array
    ok: mx.array
    reprojection_error: mx.array


def _view_residuals(x: mx.array, k: mx.array, pose: mx.array, uv: mx.array) -> tuple[mx.array, mx.array]:
    """Pixel residuals (*, V, 2) of world points x (*, 3) through the projection core, and depths (*, V)."""
    proj = projection._project_values(x[..., None, None, :], k, pose)
    return proj.pixels[..., 0, :] - uv, proj.depth[..., 0]


def _dlt(k: mx.array, pose: mx.array, uv: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Homogeneous DLT (Hartley-Zisserman sec. 12.2) in a frame centred on the cameras.

    Returns world points (*, 3) and a mask of points not at infinity.
    """
    r, t = pose[..., :3, :3], pose[..., :3, 3]
    centres = -linalg.matmul(r.swapaxes(-1, -2), t[..., None])[..., 0]  # (*, V, 3)
    wn = w / mx.maximum(mx.sum(w, axis=-1, keepdims=True), 1.0)
    c = mx.sum(wn[..., None] * centres, axis=-2)
    spread = mx.sqrt(mx.sum(wn * mx.sum(mx.square(centres - c[..., None, :]), axis=-1), axis=-1))
    s = mx.where(spread > 0, spread, 1.0)
    # P' = [s R | R c + t] maps the normalised point X' to X = s X' + c.
    p3 = mx.concatenate([s[..., None, None, None] * r, (linalg.matmul(r, c[..., None, :, None])[..., 0] + t)[..., None]], -1)
    xn = normalize_pixels(uv[..., None, :], k)[..., 0, :]
    rows = mx.concatenate([xn[..., 0:1] * p3[..., 2, :] - p3[..., 0, :], xn[..., 1:2] * p3[..., 2, :] - p3[..., 1, :]], -2)
    rows = rows * mx.concatenate([w, w], -1)[..., None]  # (*, 2V, 4)
    ata = mx.sum(rows[..., :, :, None] * rows[..., :, None, :], axis=-3)
    _, vecs = linalg.eigh(ata)
    xh = vecs[..., :, 0]
    norm = mx.sqrt(mx.sum(xh * xh, axis=-1))
    finite = mx.abs(xh[..., 3]) > 1e-6 * norm
    # Double where: points at infinity divide by 1 and are flagged.
    xw = s[..., None] * xh[..., :3] / mx.where(finite, xh[..., 3], 1.0)[..., None] + c
    return xw, finite


def triangulate_points(camera_or_k: Any, pixels: Any, poses: Any = None, *, mask: Any = None,
                       refine: bool = False, max_iters: int = 10) -> TriangulationResult:
    """Triangulate points seen by V cameras, many points at once.

    The linear solution is the null vector of the 4x4 ``A^T A`` of the homogeneous DLT
    (Hartley-Zisserman, 2nd ed., sec. 12.2), from ``linalg.eigh`` in a frame centred on
    and scaled to the cameras for float32 conditioning. With ``refine``, the point is then
    refined by :func:`mlxgeom.solve.levenberg_marquardt` on the pixel reprojection error
    (autodiff Jacobian, vector update). A Camera's lens distortion is removed from the pixels
    first (:func:`mlxgeom.camera.undistort_points`, like ``cv2.undistortPoints`` before
    ``cv2.triangulatePoints``); views whose undistortion does not converge are not used.

    Args:
        camera_or_k: a ``camera.Camera`` batch of V views (its ``K``, ``pose`` and distortion
            are used) or intrinsics K (*, V, 3, 3).
        pixels: (*, N, V, 2) observations of each point in each view, one row per point (OpenCV's
            ``triangulatePoints`` takes the transposed (V, N, 2) stack); undistorted when a plain
            K is given.
        poses: (*, V, 4, 4) world-to-camera poses when K is given.
        mask: optional (*, V) bool, views to use.
        refine: run LM after the DLT; max_iters: its iteration count.

    The camera arrays broadcast against the pixels' dims before N with numpy rules, so B separate
    problems of N points each take pixels (B, N, V, 2) with K (B, 1, V, 3, 3) and poses
    (B, 1, V, 4, 4) (the 1 stands for the points' axis).

    Returns:
        :class:`TriangulationResult`.

    Example:
        >>> import mlx.core as mx
        >>> k = mx.array([[500., 0, 320], [0, 500, 240], [0, 0, 1]])
        >>> poses = mx.stack([mx.eye(4), mx.array([[1., 0, 0, -1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])])
        >>> uv = mx.array([[320., 240], [220., 240]])
        >>> res = triangulate_points(k, uv, poses)
        >>> [round(v, 3) + 0.0 for v in res.points.tolist()], bool(res.ok)
        ([0.0, 0.0, 5.0], True)
    """
    if poses is None:
        if not hasattr(camera_or_k, "pose"):
            raise ValueError("poses: give (*, V, 4, 4) world-to-camera poses, or pass a Camera with a pose")
        poses = camera_or_k.pose
    (k, pose, uv), out = as_floats(getattr(camera_or_k, "K", camera_or_k), poses, pixels, names=("K", "poses", "pixels"))
    check_trailing(k, (3, 3), "K")
    check_trailing(pose, (4, 4), "poses")
    check_trailing(uv, (None, 2), "pixels")
    v = uv.shape[-2]
    cams = broadcast_batch(k.shape[:-2], pose.shape[:-2], names=("K", "poses"))
    layout = (f"pixels: expected (*, N, V, 2), one row per point and one column per view, for K (*, V, 3, 3) and "
              f"poses (*, V, 4, 4); got pixels {tuple(uv.shape)}, K {tuple(k.shape)}, poses {tuple(pose.shape)} "
              f"(an OpenCV-style (V, N, 2) stack is pixels.swapaxes(0, 1))")
    if len(cams) < 1 or cams[-1] not in (1, v):
        raise ValueError(layout)
    try:
        batch = broadcast_batch(cams, uv.shape[:-1], names=("K / poses (*, V)", "pixels (*, N, V)"))
    except ValueError as err:
        raise ValueError(f"{err}; {layout}") from None
    _, uv, mask = undistorted(camera_or_k, uv[..., None, :], None if mask is None else mx.array(mask)[..., None])
    uv, mask = uv[..., 0, :], None if mask is None else mask[..., 0]
    w = mx.ones(batch, dtype=uv.dtype) if mask is None else mx.broadcast_to(mx.array(mask).astype(uv.dtype), batch)
    k, pose = mx.broadcast_to(k, (*batch, 3, 3)), mx.broadcast_to(pose, (*batch, 4, 4))
    uv = mx.broadcast_to(uv, (*batch, 2))
    finite = all_of(mx.all(mx.isfinite(uv), axis=-1), mx.all(mx.isfinite(pose), axis=(-2, -1)),
                    mx.all(mx.isfinite(k), axis=(-2, -1)))
    w = mx.where(finite, w, 0.0)
    used = (w > 0)
    uv = mx.where(used[..., None], uv, 0.0)
    pose = mx.where(used[..., None, None], pose, mx.eye(4, dtype=pose.dtype))
    k = mx.where(used[..., None, None], k, mx.eye(3, dtype=k.dtype))
    x, ok = _dlt(k, pose, uv, w)
    x = mx.where(ok[..., None], x, 0.0)
    if refine:
        sw = mx.sqrt(w)[..., None]
        pb = batch[:-1]

        def residual(xc: mx.array) -> mx.array:
            return (_view_residuals(xc, k, pose, uv)[0] * sw).reshape(*pb, 2 * v)

        x = levenberg_marquardt(residual, mx.stop_gradient(x), max_iters=max_iters, tau=1e-4).x
    res, depth = _view_residuals(x, k, pose, uv)
    ok = all_of(ok, mx.all(any_of(depth > MIN_DEPTH, ~used), axis=-1), mx.sum(w, axis=-1) >= 2,
                mx.all(mx.isfinite(x), axis=-1))
    x = mx.where(ok[..., None], x, 0.0)
    # Double where (safe_sqrt): an exact fit has RMS 0 and gradient 0 (sqrt's derivative is infinite there).
    rms = safe_sqrt(mx.sum(w * mx.sum(res * res, -1), -1) / mx.maximum(mx.sum(w, -1), 1.0))
    return TriangulationResult(cast_out(x, out), ok, cast_out(mx.where(ok, rms, mx.inf), out))
