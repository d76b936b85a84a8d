"""Relative pose, essential and fundamental relations against OpenCV (decomposeEssentialMat,
recoverPose, findFundamentalMat) and the epipolar identities on projected points."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest
from helpers import LENSES, assert_device_safe

from mlxgeom.camera import Camera
from mlxgeom.epipolar import (
    decompose_essential_matrix,
    essential_from_pose,
    find_essential_matrix,
    find_fundamental_matrix,
    fundamental_from_cameras,
    fundamental_from_essential,
    recover_pose,
)

K = np.array([[520.0, 0, 320], [0, 510, 240], [0, 0, 1]])


def _pose(rng: np.random.Generator, baseline: float = 1.0) -> np.ndarray:
    """Camera-2-from-camera-1 pose with a random rotation (~10 deg) and baseline direction."""
    R, _ = cv2.Rodrigues(rng.normal(0, 0.1, 3))
    t = rng.normal(0, 1, 3)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, baseline * t / np.linalg.norm(t)
    return T


def _scene(rng: np.random.Generator, n: int, noise: float = 0.0, far: float = 8.0):
    """Pixels (n, 2) of points 4 to ``far`` baselines in front of camera 1, with Gaussian pixel noise."""
    T = _pose(rng)
    X = np.c_[rng.uniform(-2, 2, (n, 2)) * rng.uniform(1, far / 4, (n, 1)), rng.uniform(4, far, n)]
    X2 = X @ T[:3, :3].T + T[:3, 3]
    p1 = X @ K.T
    p2 = X2 @ K.T
    p1 = p1[:, :2] / p1[:, 2:] + rng.normal(0, noise, (n, 2))
    p2 = p2[:, :2] / p2[:, 2:] + rng.normal(0, noise, (n, 2))
    return T, p1, p2


def _essential(T: np.ndarray) -> np.ndarray:
    t = T[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return tx @ T[:3, :3]


def test_essential_from_pose_is_t_cross_r_and_satisfies_the_epipolar_constraint():
    rng = np.random.default_rng(0)
    T, p1, p2 = _scene(rng, 20)
    E = np.array(essential_from_pose(mx.array(T, mx.float32)), np.float64)
    np.testing.assert_allclose(E, _essential(T), atol=1e-6)
    x1 = np.c_[p1, np.ones(20)] @ np.linalg.inv(K).T
    x2 = np.c_[p2, np.ones(20)] @ np.linalg.inv(K).T
    assert np.abs(np.einsum("ni,ij,nj->n", x2, E, x1)).max() < 1e-5


def test_fundamental_from_cameras_matches_opencv_eight_point_up_to_scale():
    rng = np.random.default_rng(1)
    K2 = np.array([[480.0, 0, 300], [0, 490, 250], [0, 0, 1]])
    pose1, rel = _pose(rng), _pose(rng)
    cam1 = Camera(mx.array(K, mx.float32), mx.array(pose1, mx.float32))
    cam2 = Camera(mx.array(K2, mx.float32), mx.array(rel @ pose1, mx.float32))
    F = np.array(fundamental_from_cameras(cam1, cam2), np.float64)
    Xw = np.linalg.inv(pose1) @ np.c_[rng.uniform(-2, 2, (30, 2)), rng.uniform(4, 8, 30), np.ones(30)].T
    p1 = np.array(cam1.project(mx.array(Xw[:3].T, mx.float32)).pixels, np.float64)
    p2 = np.array(cam2.project(mx.array(Xw[:3].T, mx.float32)).pixels, np.float64)
    ref, _ = cv2.findFundamentalMat(p1, p2, cv2.FM_8POINT)
    F, ref = F / np.linalg.norm(F), ref / np.linalg.norm(ref)
    np.testing.assert_allclose(F * np.sign(F.ravel() @ ref.ravel()), ref, atol=2e-4)
    resid = np.einsum("ni,ij,nj->n", np.c_[p2, np.ones(30)], F, np.c_[p1, np.ones(30)])
    assert np.abs(resid).max() < 1e-5
    F2 = np.array(fundamental_from_essential(mx.array(_essential(rel), mx.float32), K, K2), np.float64)
    np.testing.assert_allclose(F2 / np.linalg.norm(F2), F, atol=1e-5)


def _rotation_pair_matches(ours: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> bool:
    direct = max(np.abs(ours[0] - ref[0]).max(), np.abs(ours[1] - ref[1]).max())
    swapped = max(np.abs(ours[0] - ref[1]).max(), np.abs(ours[1] - ref[0]).max())
    return min(direct, swapped) < 1e-4


def test_decomposition_matches_opencv_rotation_pair_and_translation_line():
    rng = np.random.default_rng(2)
    Es = np.stack([_essential(_pose(rng)) * rng.uniform(0.1, 10) for _ in range(8)])
    R1, R2, t = (np.array(x, np.float64) for x in decompose_essential_matrix(mx.array(Es, mx.float32)))
    for b in range(8):
        r1, r2, tr = cv2.decomposeEssentialMat(Es[b])
        assert _rotation_pair_matches((R1[b], R2[b]), (r1, r2))
        assert abs(abs(float(t[b] @ tr[:, 0])) - 1) < 1e-6
        for r in (R1[b], R2[b]):
            np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
            assert abs(np.linalg.det(r) - 1) < 1e-5


def _opencv_depths(p1, p2, R, t):
    """Depths in both cameras of OpenCV's own DLT triangulation (what cv2.recoverPose tests)."""
    x1 = cv2.undistortPoints(p1.reshape(-1, 1, 2), K, None).reshape(-1, 2)
    x2 = cv2.undistortPoints(p2.reshape(-1, 1, 2), K, None).reshape(-1, 2)
    Q = cv2.triangulatePoints(np.eye(3, 4), np.c_[R, t], x1.T, x2.T)
    X = (Q[:3] / Q[3]).T
    return np.c_[X[:, 2], (X @ R.T + t[:, 0])[:, 2]]


@pytest.mark.float64
def test_recover_pose_matches_opencv_pose_and_inlier_mask_on_noisy_data():
    rng = np.random.default_rng(3)
    f64 = lambda x: mx.array(x, mx.float64)  # noqa: E731
    for trial in range(6):
        T, p1, p2 = _scene(rng, 200, noise=1.0)
        E = _essential(T)
        count, R, t, mask = cv2.recoverPose(E, p1, p2, K)
        res = recover_pose(f64(E), f64(p1), f64(p2), f64(K))
        pose = np.array(res.pose)
        np.testing.assert_allclose(pose[:3, :3], R, atol=1e-9)
        np.testing.assert_allclose(pose[:3, 3], t[:, 0], atol=1e-9)
        assert int(res.num_inliers) == count
        assert np.array_equal(np.array(res.inliers), mask[:, 0] > 0)
        # float32: the same pose and inliers.
        res32 = recover_pose(mx.array(E, mx.float32), mx.array(p1, mx.float32), mx.array(p2, mx.float32), K)
        np.testing.assert_allclose(np.array(res32.pose, np.float64)[:3], pose[:3], atol=1e-4)
        assert int(res32.num_inliers) == count


@pytest.mark.float64
def test_recover_pose_cheirality_limits_agree_with_opencv_away_from_the_limits():
    # Points out to 90 baselines (OpenCV's limit is 50) and 10 swapped pairs (gross outliers).
    # Ours triangulates the optimally corrected matches, OpenCV by DLT: the verdicts may differ
    # only for a gross outlier or where OpenCV's depth is within 10 % of the limit (there the
    # depth of a 1 px-noisy match is noise).
    rng = np.random.default_rng(3)
    f64 = lambda x: mx.array(x, mx.float64)  # noqa: E731
    differ_total = 0
    for trial in range(10):
        T, p1, p2 = _scene(rng, 200, noise=1.0, far=90.0)
        p1[:10], p2[:10] = p1[10:20], p2[10:20][::-1]
        E = _essential(T)
        count, R, t, mask = cv2.recoverPose(E, p1, p2, K)
        res = recover_pose(f64(E), f64(p1), f64(p2), f64(K))
        np.testing.assert_allclose(np.array(res.pose)[:3], np.c_[R, t], atol=1e-9)
        differ = np.nonzero(np.array(res.inliers) != (mask[:, 0] > 0))[0]
        depth = _opencv_depths(p1, p2, R, t)
        near_limit = np.abs(np.log(np.abs(depth) / 50.0)).min(-1) < 0.1
        assert np.all((differ < 10) | near_limit[differ]), (trial, differ, depth[differ])
        differ_total += len(differ)
    assert differ_total <= 20  # of 2000


@pytest.mark.parametrize("far", [100.0, 900.0])
def test_recover_pose_float32_counts_far_points_up_to_the_distance_threshold_like_opencv(far):
    # a parallax of 1 / far rad: the normal-equation determinant lost it below ~1e-2 in float32
    rng = np.random.default_rng(14)
    X = np.c_[rng.uniform(-1, 1, (100, 2)) * far / 4, rng.uniform(0.9, 1.0, 100) * far]
    T = np.eye(4)
    T[:3, 3] = [1.0, 0.0, 0.0]
    p1, p2 = (X @ K.T)[:, :2] / X[:, 2:], ((X + T[:3, 3]) @ K.T)[:, :2] / (X[:, 2:])
    E = _essential(T)
    count, R, t, _, _ = cv2.recoverPose(E, p1, p2, K, distanceThresh=1000.0)
    res = recover_pose(mx.array(E, mx.float32), mx.array(p1, mx.float32), mx.array(p2, mx.float32), K,
                       distance_threshold=1000.0)
    assert count == 100 and int(res.num_inliers) == count
    np.testing.assert_allclose(np.array(res.pose, np.float64)[:3], np.c_[R, t], atol=1e-5)
    np.testing.assert_allclose(np.array(res.points, np.float64), X, rtol=2e-2)


def test_recover_pose_honours_camera_distortion_and_two_intrinsics():
    rng = np.random.default_rng(4)
    K2 = np.array([[480.0, 0, 300], [0, 490, 250], [0, 0, 1]])
    T = _pose(rng)
    X = np.c_[rng.uniform(-2, 2, (100, 2)), rng.uniform(4, 8, 100)]
    cam1 = Camera(mx.array(K, mx.float32), dist=mx.array(LENSES[5], mx.float32))
    cam2 = Camera(mx.array(K2, mx.float32), mx.array(T, mx.float32), dist=mx.array(LENSES[4], mx.float32))
    p1 = cam1.project(mx.array(X, mx.float32)).pixels
    p2 = cam2.project(mx.array(X, mx.float32)).pixels
    res = recover_pose(mx.array(_essential(T) * 3.0, mx.float32), p1, p2, cam1, cam2)
    assert bool(res.ok) and int(res.num_inliers) == 100
    np.testing.assert_allclose(np.array(res.pose, np.float64)[:3, :3], T[:3, :3], atol=1e-4)
    np.testing.assert_allclose(np.array(res.pose, np.float64)[:3, 3], T[:3, 3], atol=1e-4)
    # Points come back in camera-1 coordinates, in baselines (|t| = 1 here).
    np.testing.assert_allclose(np.array(res.points, np.float64), X, rtol=2e-3, atol=2e-3)


def test_recover_pose_batched_over_pairs_with_a_mask():
    rng = np.random.default_rng(5)
    scenes = [_scene(rng, 50, noise=0.5) for _ in range(6)]
    E = np.stack([_essential(s[0]) for s in scenes]).reshape(2, 3, 3, 3)
    p1 = np.stack([s[1] for s in scenes]).reshape(2, 3, 50, 2)
    p2 = np.stack([s[2] for s in scenes]).reshape(2, 3, 50, 2)
    mask = rng.random((2, 3, 50)) > 0.2
    res = recover_pose(mx.array(E, mx.float32), mx.array(p1, mx.float32), mx.array(p2, mx.float32), K, mask=mask)
    assert res.pose.shape == (2, 3, 4, 4) and res.inliers.shape == (2, 3, 50) and res.points.shape == (2, 3, 50, 3)
    assert bool(mx.all(res.ok))
    assert not np.any(np.array(res.inliers) & ~mask)
    for b in range(6):
        i, j = divmod(b, 3)
        count, R, t, out = cv2.recoverPose(E[i, j], p1[i, j], p2[i, j], K, mask=mask[i, j].astype(np.uint8))
        np.testing.assert_allclose(np.array(res.pose[i, j], np.float64)[:3, :3], R, atol=1e-4)
        assert abs(int(res.num_inliers[i, j]) - count) <= 1


def test_degenerate_input_gives_not_ok_and_finite_placeholders():
    rng = np.random.default_rng(6)
    T, p1, p2 = _scene(rng, 30)
    E = _essential(T)
    # Points behind both cameras for every candidate: mirrored through camera 1's centre is not
    # enough (the twisted pair keeps them), so pair each point with a random other one.
    behind = p2[rng.permutation(30)]
    Es = np.stack([np.zeros((3, 3)), np.full((3, 3), np.nan), E, E])
    x2 = np.stack([p2, p2, p2, behind])
    res = recover_pose(mx.array(Es, mx.float32), mx.array(p1, mx.float32), mx.array(x2, mx.float32), K,
                       mask=np.stack([np.ones(30, bool)] * 3 + [np.zeros(30, bool)]))
    assert np.array(res.ok).tolist() == [False, False, True, False]
    for x in (res.pose, res.points):
        assert np.all(np.isfinite(np.array(x)))
    np.testing.assert_allclose(np.array(res.pose[0]), np.eye(4))
    assert np.array(res.num_inliers).tolist()[:2] == [0, 0] and int(res.num_inliers[3]) == 0


def test_recover_pose_rejects_matrices_far_from_essential_and_keeps_noisy_estimates():
    rng = np.random.default_rng(12)
    T, p1, p2 = _scene(rng, 60, noise=3.0)
    f32 = lambda x: mx.array(x, mx.float32)  # noqa: E731
    F, _ = cv2.findFundamentalMat(p1, p2, cv2.FM_8POINT)
    E8 = K.T @ F @ K  # unprojected eight-point estimate: singular values (1, 0.9.., 0.0..)
    E5, _ = cv2.findEssentialMat(p1, p2, K, cv2.RANSAC, 0.999, 3.0)
    u, _, vt = np.linalg.svd(_essential(T))
    rank1 = u[:, :1] @ vt[:1]
    es = np.stack([E8, E5[:3], np.eye(3), rank1, np.diag([1.0, 0.5, 0.0])])
    res = recover_pose(f32(es), f32(p1), f32(p2), K)
    assert np.array(res.ok).tolist() == [True, True, False, False, False]
    assert np.array(res.num_inliers).tolist()[2:] == [0, 0, 0]
    for i, e in enumerate(es[:2]):
        count, R, _, _ = cv2.recoverPose(e, p1, p2, K)
        assert np.allclose(np.array(res.pose[i], np.float64)[:3, :3], R, atol=1e-3) and count > 50


def test_failed_essential_and_fundamental_fits_report_no_inliers():
    rng = np.random.default_rng(13)
    a, b = rng.uniform(0, [640, 480], (2, 8, 2))
    e = find_essential_matrix(mx.array(a, mx.float32), mx.array(b, mx.float32), K)
    f = find_fundamental_matrix(mx.array(a[:6], mx.float32), mx.array(b[:6], mx.float32))
    for res in (e, f):
        assert not bool(res.ok) and int(res.num_inliers) == 0 and not bool(mx.any(res.inliers))
        assert float(res.residual) == 0.0
    pose = recover_pose(e.E, mx.array(a, mx.float32), mx.array(b, mx.float32), K, mask=e.inliers)
    assert not bool(pose.ok)
    assert not bool(recover_pose(mx.eye(3), mx.array(a, mx.float32), mx.array(b, mx.float32), K).ok)


def test_points_behind_every_candidate_are_not_ok():
    E = np.array([[0.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # t = (-1, 0, 0): disparity x1 - x2 = 1 / z
    x1 = np.array([[0.0, 0.0], [0.1, 0.2], [-0.2, 0.1]])
    x2 = x1.copy()  # zero disparity: every point at infinity, none closer than 50 baselines
    res = recover_pose(mx.array(E, mx.float32), mx.array(x1, mx.float32), mx.array(x2, mx.float32), np.eye(3))
    assert not bool(res.ok) and int(res.num_inliers) == 0


def test_gradients_of_pose_with_respect_to_E_are_finite_and_match_finite_differences():
    rng = np.random.default_rng(7)
    T, p1, p2 = _scene(rng, 40)
    E = mx.array(_essential(T), mx.float64)
    a, b = mx.array(p1, mx.float64), mx.array(p2, mx.float64)
    w = mx.array(rng.normal(size=(3, 4)), mx.float64)

    def f(e):
        return mx.sum(recover_pose(e, a, b, mx.array(K, mx.float64)).pose[:3] * w)

    with mx.stream(mx.cpu):
        g = np.array(mx.grad(f)(E))
        assert np.all(np.isfinite(g))
        d = rng.normal(size=(3, 3))
        h = 1e-6
        fd = (f(E + h * mx.array(d)).item() - f(E - h * mx.array(d)).item()) / (2 * h)
        assert abs(fd - float(np.sum(g * d))) < 1e-5 * max(1.0, abs(fd))
    # Degenerate E: gradients stay finite.
    g0 = mx.grad(lambda e: mx.sum(recover_pose(e, a.astype(mx.float32), b.astype(mx.float32), K).pose))(
        mx.zeros((3, 3)))
    assert np.all(np.isfinite(np.array(g0)))


def test_recover_pose_and_decomposition_stay_on_device_and_compile_at_two_batch_sizes():
    rng = np.random.default_rng(8)

    def make(batch):
        s = [_scene(rng, 16, noise=0.5) for _ in range(batch)]
        E = mx.array(np.stack([_essential(x[0]) for x in s]), mx.float32)
        return E, mx.array(np.stack([x[1] for x in s]), mx.float32), mx.array(np.stack([x[2] for x in s]), mx.float32)

    k = mx.array(K, mx.float32)
    assert_device_safe(lambda e, a, b: tuple(recover_pose(e, a, b, k)), make)
    assert_device_safe(lambda e, a, b: tuple(decompose_essential_matrix(e)), make)


def test_bad_shapes_raise_value_errors_naming_the_input():
    with pytest.raises(ValueError, match="E"):
        decompose_essential_matrix(mx.zeros((3, 4)))
    with pytest.raises(ValueError, match="x2"):
        recover_pose(mx.eye(3), mx.zeros((5, 2)), mx.zeros((5, 3)), K)
    with pytest.raises(ValueError, match="same number of points"):
        recover_pose(mx.eye(3), mx.zeros((5, 2)), mx.zeros((4, 2)), K)
    with pytest.raises(ValueError, match="pose"):
        essential_from_pose(mx.zeros((3, 3)))


def test_essential_from_pose_matches_pycolmap_up_to_its_unit_baseline():
    pycolmap = pytest.importorskip("pycolmap")
    T = _pose(np.random.default_rng(9), baseline=2.5)
    ref = pycolmap.essential_matrix_from_pose(pycolmap.Rigid3d(pycolmap.Rotation3d(T[:3, :3]), T[:3, 3]))
    ours = np.array(essential_from_pose(mx.array(T, mx.float32)), np.float64) / 2.5
    np.testing.assert_allclose(ours, ref, atol=1e-6)
