"""Batched multi-view triangulation: linear DLT plus optional Levenberg-Marquardt refinement."""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

from .. import linalg
from ..camera.projection import MIN_DEPTH
from .._checks import as_floats, broadcast_batch, cast_out, check_trailing
from ..solve import levenberg_marquardt
from .pnp import normalize_pixels


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
    """Pixel residuals (*, V, 2) of world points x (*, 3) and their depths (*, V)."""
    pc = linalg.matmul(pose[..., :3, :3], x[..., None, :, None])[..., 0] + pose[..., :3, 3]
    z = pc[..., 2]
    zs = mx.where(mx.abs(z) > 1e-12, z, 1e-12)
    xn, yn = pc[..., 0] / zs, pc[..., 1] / zs
    u = k[..., 0, 0] * xn + k[..., 0, 1] * yn + k[..., 0, 2]
    v = k[..., 1, 1] * yn + k[..., 1, 2]
    return mx.stack([u - uv[..., 0], v - uv[..., 1]], axis=-1), z


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
    refined by :func:`levenberg_marquardt` on the pixel reprojection error (autodiff
    Jacobian, vector update).

    Args:
        camera_or_k: a ``camera.Camera`` batch of V views (its ``K`` and ``pose`` are used)
            or intrinsics K (*, V, 3, 3).
        pixels: (*, V, 2) observations of each point in each view (undistorted).
        poses: (*, V, 4, 4) world-to-camera poses when K is given.
        mask: optional (*, V) bool, views to use.
        refine: run LM after the DLT; max_iters: its iteration count.

    Returns:
        :class:`TriangulationResult`.

    Example:
        >>> import mlx.core as mx
        >>> k = mx.array([[500., 0, 320], [0, 500, 240], [0, 0, 1]])
        >>> poses = mx.stack([mx.eye(4), mx.array([[1., 0, 0, -1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])])
        >>> uv = mx.array([[320., 240], [220., 240]])
        >>> res = triangulate_points(k, uv, poses)
        >>> [round(v, 3) for v in res.points.tolist()], bool(res.ok)
        ([0.0, 0.0, 5.0], True)
    """
    if poses is None:
        if not hasattr(camera_or_k, "pose"):
            raise ValueError("poses: give (*, V, 4, 4) world-to-camera poses, or pass a Camera with a pose")
        camera_or_k, poses = camera_or_k.K, camera_or_k.pose
    elif hasattr(camera_or_k, "K"):
        camera_or_k = camera_or_k.K
    (k, pose, uv), out = as_floats(camera_or_k, poses, pixels, names=("K", "poses", "pixels"))
    check_trailing(k, (3, 3), "K")
    check_trailing(pose, (4, 4), "poses")
    check_trailing(uv, (None, 2), "pixels")
    v = uv.shape[-2]
    batch = broadcast_batch(k.shape[:-2], pose.shape[:-2], uv.shape[:-1], names=("K", "poses", "pixels"))
    if len(batch) < 1 or batch[-1] != v:
        raise ValueError(f"K (*, V, 3, 3), poses (*, V, 4, 4) and pixels (*, V, 2) must share V, got {tuple(k.shape)}, "
                         f"{tuple(pose.shape)}, {tuple(uv.shape)}")
    w = mx.ones(batch, dtype=uv.dtype) if mask is None else mx.broadcast_to(mx.array(mask).astype(uv.dtype), batch)
    k, pose = mx.broadcast_to(k, (*batch, 3, 3)), mx.broadcast_to(pose, (*batch, 4, 4))
    uv = mx.broadcast_to(uv, (*batch, 2))
    finite = mx.all(mx.isfinite(uv), axis=-1) & mx.all(mx.isfinite(pose), axis=(-2, -1)) & mx.all(mx.isfinite(k), axis=(-2, -1))
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
    ok = ok & mx.all((depth > MIN_DEPTH) | ~used, axis=-1) & (mx.sum(w, axis=-1) >= 2) & mx.all(mx.isfinite(x), axis=-1)
    x = mx.where(ok[..., None], x, 0.0)
    rms = mx.sqrt(mx.sum(w * mx.sum(res * res, -1), -1) / mx.maximum(mx.sum(w, -1), 1.0))
    return TriangulationResult(cast_out(x, out), ok, cast_out(mx.where(ok, rms, mx.inf), out))
