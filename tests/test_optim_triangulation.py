"""Batched triangulation against ground truth and live cv2.triangulatePoints."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest
from helpers import FLOAT_DTYPES, assert_device_safe, to_np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from mlxgeom import camera
from mlxgeom.optim import triangulate_points

K_NP = np.array([[800.0, 0.0, 320.0], [0.0, 780.0, 240.0], [0.0, 0.0, 1.0]])


def _rig(views: int, seed: int) -> np.ndarray:
    """World-to-camera poses (V, 4, 4) of cameras on a ~1 m baseline looking at +z."""
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (views, 1, 1))
    poses[:, :3, :3] = Rotation.from_rotvec(rng.normal(size=(views, 3)) * 0.08).as_matrix()
    poses[:, :3, 3] = rng.normal(size=(views, 3)) * [0.6, 0.3, 0.2]
    poses[0] = np.eye(4)
    return poses


def _observe(points: np.ndarray, poses: np.ndarray, noise: float, seed: int) -> np.ndarray:
    pc = np.einsum("vij,pj->pvi", poses[:, :3, :3], points) + poses[:, :3, 3]
    uv = (pc[..., :2] / pc[..., 2:]) @ K_NP[:2, :2].T + K_NP[:2, 2]
    return uv + noise * np.random.default_rng(seed).normal(size=uv.shape)


def _points(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3)) * [2.0, 1.5, 1.0] + [0.0, 0.0, 7.0]


def _f32(a) -> mx.array:
    return mx.array(np.asarray(a, dtype=np.float32))


def _cv_triangulate(poses: np.ndarray, uv: np.ndarray) -> np.ndarray:
    xh = cv2.triangulatePoints(K_NP @ poses[0, :3], K_NP @ poses[1, :3], uv[:, 0].T.copy(), uv[:, 1].T.copy())
    return (xh[:3] / xh[3]).T


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_two_view_dlt_matches_opencv(noise):
    pts, poses = _points(100, 1), _rig(2, 1)
    uv = _observe(pts, poses, noise, 2)
    res = triangulate_points(_f32(K_NP), _f32(uv), _f32(poses))
    ref = _cv_triangulate(poses, uv)
    ours = np.array(res.points).astype(np.float64)
    assert bool(mx.all(res.ok))
    rel = np.linalg.norm(ours - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    # Noise-free: both are the truth up to float32. Noisy: OpenCV's DLT is in pixel units,
    # ours in normalised coordinates, so the algebraic minimisers differ slightly.
    assert rel.max() < (1e-5 if noise == 0 else 2e-3), rel.max()
    if noise == 0:
        np.testing.assert_allclose(ours, pts, atol=1e-4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_refinement_lowers_reprojection_error_over_many_views(dtype):
    pts, poses = _points(64, 3), _rig(5, 3)
    uv = _observe(pts, poses, 1.0, 4)
    args = (mx.array(K_NP, dtype=dtype), mx.array(uv, dtype=dtype), mx.array(poses, dtype=dtype))
    dlt = triangulate_points(*args)
    ref = triangulate_points(*args, refine=True)
    assert ref.points.dtype == dtype
    assert bool(mx.all(ref.ok))
    assert np.all(to_np(ref.reprojection_error) <= to_np(dlt.reprojection_error) * (1 + 1e-5))
    assert np.abs(to_np(ref.points) - pts).max() < 0.2
    # The refined point is the reprojection-error minimiser (scipy's LM on the same cost).
    for i in range(0, 64, 16):
        def resid(x, i=i):
            pc = poses[:, :3, :3] @ x + poses[:, :3, 3]
            return ((pc[:, :2] / pc[:, 2:]) @ K_NP[:2, :2].T + K_NP[:2, 2] - uv[i]).ravel()
        opt = least_squares(resid, to_np(dlt.points[i]), method="lm", xtol=1e-14, ftol=1e-14)
        rms = np.sqrt(np.mean(np.sum(resid(opt.x).reshape(-1, 2) ** 2, -1)))
        np.testing.assert_allclose(to_np(ref.reprojection_error[i]), rms, rtol=1e-4 if dtype == mx.float32 else 1e-9)
        np.testing.assert_allclose(to_np(ref.points[i]), opt.x, atol=1e-3 if dtype == mx.float32 else 1e-8)


def test_camera_batch_input_and_broadcasting():
    pts, poses = _points(10, 5), _rig(3, 5)
    uv = _observe(pts, poses, 0.0, 6)
    cams = camera.Camera(_f32(np.broadcast_to(K_NP, (3, 3, 3))), pose=_f32(poses))
    res = triangulate_points(cams, _f32(uv))
    np.testing.assert_allclose(np.array(res.points), pts, atol=1e-4)
    res2 = triangulate_points(_f32(K_NP), _f32(uv.reshape(2, 5, 3, 2)), _f32(poses))
    np.testing.assert_allclose(np.array(res2.points).reshape(10, 3), pts, atol=1e-4)


def test_degenerate_points_are_flagged_and_isolated():
    pts, poses = _points(5, 7), _rig(2, 7)
    pts[1] = [0.0, 0.0, -7.0]  # behind both cameras
    uv = _observe(pts, poses, 0.0, 8)
    uv[2, 1] = np.nan  # a NaN observation: that view is dropped, one view is left
    mask = np.ones((5, 2), bool)
    mask[3, 0] = False  # one view only
    res = triangulate_points(_f32(K_NP), _f32(uv), _f32(poses), mask=mx.array(mask), refine=True)
    assert np.array(res.ok).tolist() == [True, False, False, False, True]
    assert np.all(np.isfinite(np.array(res.points)))
    np.testing.assert_allclose(np.array(res.points)[[0, 4]], pts[[0, 4]], atol=1e-4)


def test_parallel_rays_give_point_at_infinity_flag():
    poses = _rig(2, 9)
    poses[1, :3, :3] = np.eye(3)
    poses[1, :3, 3] = [0.5, 0.0, 0.0]
    uv = np.array([[[320.0, 240.0], [320.0, 240.0]]])  # same pixel, pure translation: rays meet at infinity
    res = triangulate_points(_f32(K_NP), _f32(uv), _f32(poses))
    assert not bool(res.ok[0]) and np.all(np.isfinite(np.array(res.points)))


def test_triangulation_is_device_safe_and_compiles_at_two_batch_sizes():
    poses = _rig(3, 10)

    def make(b: int):
        return _f32(K_NP), _f32(_observe(_points(b, b), poses, 0.3, b)), _f32(poses)

    assert_device_safe(lambda k, uv, p: tuple(triangulate_points(k, uv, p, refine=True, max_iters=2)), make)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="pixels"):
        triangulate_points(mx.eye(3), mx.zeros((5, 2, 2)), mx.broadcast_to(mx.eye(4), (3, 4, 4)))
    with pytest.raises(ValueError, match="poses"):
        triangulate_points(mx.eye(3), mx.zeros((5, 2, 2)))


def test_opencv_layout_raises_naming_the_expected_layout():
    poses = _f32(_rig(2, 3))
    uv = _f32(np.transpose(_observe(_points(30, 3), _rig(2, 3), 0.0, 3), (1, 0, 2)))  # OpenCV's (V, N, 2)
    with pytest.raises(ValueError, match=r"\(\*, N, V, 2\).*swapaxes"):
        triangulate_points(_f32(K_NP), uv, poses)


def test_distorted_camera_matches_cv2_undistort_then_triangulate():
    pts, poses = _points(60, 4), _rig(2, 4)
    dist = np.array([-0.25, 0.08, 1e-3, -5e-4, -0.01])
    rvecs = [cv2.Rodrigues(p[:3, :3])[0] for p in poses]
    uv = np.stack([cv2.projectPoints(pts, r, p[:3, 3], K_NP, dist)[0][:, 0] for r, p in zip(rvecs, poses)], 1)
    cams = camera.Camera(_f32(np.broadcast_to(K_NP, (2, 3, 3))), pose=_f32(poses), dist=_f32(np.broadcast_to(dist, (2, 5))))
    res = triangulate_points(cams, _f32(uv))
    und = [cv2.undistortPoints(uv[:, v][:, None], K_NP, dist)[:, 0] for v in range(2)]
    xh = cv2.triangulatePoints(poses[0, :3], poses[1, :3], und[0].T, und[1].T)
    ref = (xh[:3] / xh[3]).T
    assert bool(mx.all(res.ok))
    np.testing.assert_allclose(np.array(res.points), ref, atol=2e-3)
    np.testing.assert_allclose(np.array(res.points), pts, atol=2e-3)
    # Ignoring the lens (plain K) puts the points metres off: distortion is honoured.
    plain = triangulate_points(_f32(np.broadcast_to(K_NP, (2, 3, 3))), _f32(uv), _f32(poses))
    assert np.abs(np.array(plain.points) - pts).max() > 0.05
