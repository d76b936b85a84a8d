"""Bundle adjustment of COLMAP sparse models, and BA arrays to and from a model.

Host-side conversion through the project's COLMAP reader and writer (:mod:`mlxgeom.camera.colmap`):
each COLMAP camera becomes one intrinsics group (images that share a camera keep sharing it), each
registered image one pose, each point3D track a set of observations. COLMAP's keypoints put the
centre of the top-left pixel at (0.5, 0.5); the arrays use mlxgeom's (0, 0), as ``model_to_cameras``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from .. import lie
from ..camera import Camera, colmap
from .bundle import BundleResult, bundle_adjust

#: The intrinsics COLMAP refines by default per camera model (focal and extra params, principal point kept).
COLMAP_REFINED = {
    "SIMPLE_PINHOLE": ("focal",), "PINHOLE": ("focal_xy",), "SIMPLE_RADIAL": ("focal", "k1"),
    "RADIAL": ("focal", "k1", "k2"), "OPENCV": ("focal_xy", "distortion"),
    "OPENCV_FISHEYE": ("focal_xy", "distortion"), "FULL_OPENCV": ("focal_xy", "distortion"),
}


class ModelProblem(NamedTuple):
    """A COLMAP model as BA arrays (ids map rows back to the model).

    Attributes:
        cameras: (G,) Camera, one per COLMAP camera.
        poses: (C, 4, 4) world-to-camera of the registered images.
        points: (P, 3).
        observations: (O, 2) pixels (mlxgeom convention).
        camera_index, point_index: (O,) int32 numpy.
        intrinsics_index: (C,) int32 numpy, the camera of each image.
        camera_ids, image_ids, point_ids: numpy ids of the rows.
    """

    cameras: Camera
    poses: mx.array
    points: mx.array
    observations: mx.array
    camera_index: np.ndarray
    point_index: np.ndarray
    intrinsics_index: np.ndarray
    camera_ids: np.ndarray
    image_ids: np.ndarray
    point_ids: np.ndarray


def model_problem(model: colmap.ColmapModel, dtype: mx.Dtype = mx.float32) -> ModelProblem:
    """The BA arrays of a COLMAP model (observations of points that exist in ``points3D``): poses
    (C, 4, 4), points (P, 3), observations (O, 2) ..., see :class:`ModelProblem`.

    Example:
        >>> from mlxgeom.sfm.synthetic import synthetic_problem
        >>> p = synthetic_problem(3, 30, seed=0)
        >>> m = problem_to_model(p.cameras, p.poses, p.points, p.observations, p.camera_index, p.point_index)
        >>> prob = model_problem(m)
        >>> prob.poses.shape, prob.points.shape, prob.observations.shape == p.observations.shape
        ((3, 4, 4), (30, 3), True)
    """
    cams, image_ids = colmap.model_to_cameras(model, dtype=dtype)
    camera_ids = np.array(sorted({model.images[int(i)].camera_id for i in image_ids}), dtype=np.int64)
    group_of_camera = {int(c): g for g, c in enumerate(camera_ids)}
    intrinsics_index = np.array([group_of_camera[model.images[int(i)].camera_id] for i in image_ids], np.int32)
    first = np.array([int(np.flatnonzero(intrinsics_index == g)[0]) for g in range(camera_ids.size)], np.int64)
    point_ids, points = colmap.model_points(model, dtype=dtype)[:2]
    row_of_point = {int(p): k for k, p in enumerate(point_ids)}
    obs, cam_idx, pt_idx = [], [], []
    for row, i in enumerate(image_ids):
        im = model.images[int(i)]
        ids = np.asarray(im.point3D_ids, dtype=np.int64)
        keep = np.flatnonzero([int(p) in row_of_point for p in ids]) if ids.size else np.zeros(0, np.int64)
        obs.append(np.asarray(im.xys, np.float64).reshape(-1, 2)[keep] - 0.5)
        cam_idx.append(np.full(keep.size, row, np.int32))
        pt_idx.append(np.array([row_of_point[int(p)] for p in ids[keep]], np.int32))
    cat = (lambda xs, d: np.concatenate(xs) if xs else np.zeros((0,) + d))
    return ModelProblem(cams.select(mx.array(first)), cams.pose, points,
                        mx.array(cat(obs, (2,)), dtype=dtype), cat(cam_idx, ()).astype(np.int32),
                        cat(pt_idx, ()).astype(np.int32), intrinsics_index, camera_ids, np.asarray(image_ids), point_ids)


def _np(x: mx.array) -> np.ndarray:
    return np.array(x.astype(mx.float32) if x.dtype != mx.float64 else x, dtype=np.float64)


def update_model(model: colmap.ColmapModel, problem: ModelProblem, result: BundleResult) -> colmap.ColmapModel:
    """A new model with the refined poses (C, 4, 4), points (P, 3) (their mean reprojection error)
    and camera params of ``result``, for the rows of ``problem`` (:func:`model_problem`).

    Example:
        >>> from mlxgeom.sfm.synthetic import synthetic_problem
        >>> p = synthetic_problem(3, 30, seed=0)
        >>> m = problem_to_model(p.cameras, p.poses, p.points, p.observations, p.camera_index, p.point_index)
        >>> prob = model_problem(m)
        >>> res = bundle_adjust(prob.cameras, prob.poses, prob.points, prob.observations, max_iters=3,
        ...                     point_index=prob.point_index, camera_index=prob.camera_index,
        ...                     intrinsics_index=prob.intrinsics_index)
        >>> new = update_model(m, prob, res)
        >>> bool(abs(new.points3D[1].xyz - m.points3D[1].xyz).max() > 0)
        True
    """
    q = _np(lie.matrix_to_quaternion(result.poses[:, :3, :3]))
    t = _np(result.poses[:, :3, 3])
    images = dict(model.images)
    for row, i in enumerate(problem.image_ids):
        images[int(i)] = images[int(i)]._replace(qvec=q[row], tvec=t[row])
    K, dist = _np(result.cameras.K), _np(result.cameras.dist)
    cameras = dict(model.cameras)
    for g, c in enumerate(problem.camera_ids):
        cam = cameras[int(c)]
        intr = np.array([K[g, 0, 0], K[g, 1, 1], K[g, 0, 2] + 0.5, K[g, 1, 2] + 0.5])
        cameras[int(c)] = cam._replace(params=colmap.opencv_to_colmap_params(cam.model, intr, dist[g]))
    xyz = _np(result.points)
    err = np.sqrt(np.sum(_np(result.residual) ** 2, axis=-1))
    valid = np.array(result.valid)
    sums = np.bincount(problem.point_index, weights=err * valid, minlength=xyz.shape[0])
    counts = np.bincount(problem.point_index, weights=valid.astype(np.float64), minlength=xyz.shape[0])
    points = dict(model.points3D)
    for k, p in enumerate(problem.point_ids):
        points[int(p)] = points[int(p)]._replace(xyz=xyz[k], error=float(sums[k] / max(counts[k], 1.0)))
    return colmap.ColmapModel(cameras, images, points)


def bundle_adjust_model(model: colmap.ColmapModel, *, refine_intrinsics: bool | Any = False,
                        **options: Any) -> tuple[colmap.ColmapModel, BundleResult]:
    """Bundle-adjust a COLMAP model; returns ``(new model, BundleResult)``.

    Args:
        model: a :class:`~mlxgeom.camera.colmap.ColmapModel` (``colmap.read_model``).
        refine_intrinsics: False, True (COLMAP's default per camera model: ``COLMAP_REFINED``; all
            cameras of one model type) or names as in :func:`bundle_adjust`.
        options: keyword arguments passed to :func:`bundle_adjust` (``loss``, ``max_iters``, ``linear_solver`` ...).

    Returns:
        The adjusted model (write it with ``colmap.write_model``) and the solver's result.

    Example:
        >>> from mlxgeom.sfm.synthetic import synthetic_problem
        >>> p = synthetic_problem(3, 30, seed=0)
        >>> m = problem_to_model(p.cameras, p.poses, p.points, p.observations, p.camera_index, p.point_index)
        >>> new, res = bundle_adjust_model(m, max_iters=5)
        >>> len(new.images), bool(res.cost < res.initial_cost)
        (3, True)
    """
    prob = model_problem(model)
    if refine_intrinsics is True:
        kinds = {model.cameras[int(c)].model for c in prob.camera_ids}
        if len(kinds) != 1:
            raise ValueError(f"refine_intrinsics=True: cameras of several models {sorted(kinds)}; name the parameters")
        refine_intrinsics = COLMAP_REFINED[kinds.pop()]
    res = bundle_adjust(prob.cameras, prob.poses, prob.points, prob.observations, point_index=prob.point_index,
                        camera_index=prob.camera_index, intrinsics_index=prob.intrinsics_index,
                        refine_intrinsics=refine_intrinsics, **options)
    return update_model(model, prob, res), res


def problem_to_model(cameras: Camera, poses: Any, points: Any, observations: Any, camera_index: Any,
                     point_index: Any, intrinsics_index: Any = None, colmap_model: str | None = None) -> colmap.ColmapModel:
    """A COLMAP model (with tracks) from BA arrays: one COLMAP camera per intrinsics group.

    Args:
        cameras: () or (G,) cameras; (C,) means one per image unless ``intrinsics_index`` is given.
        poses: (C, 4, 4). points: (P, 3). observations: (O, 2) (mlxgeom pixel convention).
        camera_index, point_index: (O,). intrinsics_index: (C,) or None.
        colmap_model: COLMAP camera model name (default as ``colmap.cameras_to_model``).

    Example:
        >>> from mlxgeom.sfm.synthetic import synthetic_problem
        >>> p = synthetic_problem(3, 30, seed=0)
        >>> m = problem_to_model(p.cameras, p.poses, p.points, p.observations, p.camera_index, p.point_index)
        >>> len(m.cameras), len(m.images), len(m.points3D)
        (3, 3, 30)
    """
    poses_np, pts = _np(mx.array(poses)), _np(mx.array(points))
    c = poses_np.shape[0]
    shape = cameras.batch_shape
    g = shape[0] if shape else 1
    groups = (np.zeros(c, np.int64) if g == 1 else np.arange(c)) if intrinsics_index is None else \
        np.asarray(intrinsics_index, np.int64)
    batch = Camera(mx.broadcast_to(cameras.K, (g, 3, 3)), dist=mx.broadcast_to(cameras.dist, (g, cameras.dist.shape[-1])),
                   size=mx.broadcast_to(cameras.size, (g, 2)), model=cameras.model)
    base = colmap.cameras_to_model(batch, [f"camera{k}" for k in range(g)], colmap_model)
    cam_idx, pt_idx = np.asarray(camera_index, np.int64), np.asarray(point_index, np.int64)
    obs = _np(mx.array(observations)) + 0.5
    q = _np(lie.matrix_to_quaternion(mx.array(poses_np[:, :3, :3].astype(np.float32))))
    images, slot = {}, np.zeros(cam_idx.size, np.int64)
    for k in range(c):
        sel = np.flatnonzero(cam_idx == k)
        slot[sel] = np.arange(sel.size)
        images[k + 1] = colmap.ColmapImage(k + 1, q[k], poses_np[k, :3, 3], int(groups[k]) + 1, f"image{k:05d}.png",
                                           obs[sel], pt_idx[sel] + 1)
    order = np.argsort(pt_idx, kind="stable")
    bounds = np.searchsorted(pt_idx[order], np.arange(pts.shape[0] + 1))
    points3D = {}
    for j in range(pts.shape[0]):
        sel = order[bounds[j]:bounds[j + 1]]
        points3D[j + 1] = colmap.ColmapPoint3D(j + 1, pts[j], np.zeros(3, np.uint8), 0.0,
                                               (cam_idx[sel] + 1).astype(np.int32), slot[sel].astype(np.int32))
    return colmap.ColmapModel(base.cameras, images, points3D)


def rms_error(result: BundleResult) -> float:
    """Root-mean-square reprojection error in pixels over the valid observations (host-side)."""
    r, v = np.array(result.residual), np.array(result.valid)
    return float(np.sqrt(np.sum(r[v] ** 2) / max(int(v.sum()), 1)))


def adjust_model_dir(model_dir: str, out_dir: str, *, ext: str = ".bin", max_iters: int = 50,
                     refine_intrinsics: bool = False, loss: str | None = None, loss_scale: float = 1.0,
                     linear_solver: str = "auto") -> str:
    """``python -m mlxgeom ba``: read a COLMAP model, bundle-adjust it with a tqdm bar, write it.

    Returns the summary (initial / final RMS reprojection error, iterations, time).
    """
    import time

    from tqdm import tqdm

    model = colmap.read_model(model_dir)
    start = bundle_adjust_model(model, max_iters=0)[1]
    t0 = time.perf_counter()
    with tqdm(total=max_iters, desc="bundle adjustment", unit="it") as bar:
        def progress(done: int, cost: float) -> None:
            bar.update(done - bar.n)
            bar.set_postfix(cost=f"{cost:.6g}")

        new, res = bundle_adjust_model(model, refine_intrinsics=refine_intrinsics, loss=loss, loss_scale=loss_scale,
                                       max_iters=max_iters, linear_solver=linear_solver, progress=progress)
    seconds = time.perf_counter() - t0
    colmap.write_model(new, out_dir, ext=ext)
    p, o = len(model.points3D), int(np.array(res.valid).sum())
    return (f"{len(model.images)} images, {len(model.cameras)} cameras, {p} points, {o} observations\n"
            f"RMS reprojection error: {rms_error(start):.4f} px -> {rms_error(res):.4f} px\n"
            f"cost {float(res.initial_cost.item()):.6g} -> {float(res.cost.item()):.6g}, "
            f"{int(res.iterations.item())} iterations, status {int(res.status.item())}, {seconds:.2f} s\n"
            f"wrote {out_dir}\n")
