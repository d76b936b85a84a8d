"""stereo_rectify against cv2.stereoRectify: horizontal and vertical pairs, alpha, flags, lenses."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest
from helpers import LENSES, assert_device_safe

from mlxgeom.camera import Camera
from mlxgeom.epipolar import stereo_rectify

K1 = np.array([[520.0, 0, 318], [0, 515, 243], [0, 0, 1]])
K2 = np.array([[510.0, 0, 322], [0, 512, 236], [0, 0, 1]])
SIZE = (640, 480)
R, _ = cv2.Rodrigues(np.array([0.02, -0.05, 0.01]))
BASELINES = {"horizontal": np.array([-0.1, 0.005, 0.002]), "vertical": np.array([0.004, 0.12, -0.003]),
             "horizontal_positive": np.array([0.1, -0.01, 0.004])}


def _pose(T: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R, T
    return pose


def _compare(T, d1, d2, alpha, zero_disparity, atol, dtype=mx.float32):
    flags = cv2.CALIB_ZERO_DISPARITY if zero_disparity else 0
    ref = cv2.stereoRectify(K1, d1, K2, d2, SIZE, R, T.reshape(3, 1), flags=flags, alpha=alpha)
    cam1 = Camera(mx.array(K1, dtype), dist=None if d1 is None else mx.array(d1, dtype), size=SIZE)
    cam2 = Camera(mx.array(K2, dtype), dist=None if d2 is None else mx.array(d2, dtype))
    ours = stereo_rectify(cam1, cam2, mx.array(_pose(T), dtype), alpha=alpha, zero_disparity=zero_disparity)
    for name, a, b in zip(("R1", "R2", "P1", "P2", "Q"), ours[:5], ref[:5]):
        a = np.array(a, np.float64)
        tol = 2e-6 if name in ("R1", "R2") else atol * max(1.0, np.abs(b).max() / 600)
        np.testing.assert_allclose(a, b, atol=tol, err_msg=f"{name} alpha={alpha}")
    return ours


@pytest.mark.parametrize("layout", sorted(BASELINES))
@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.5, 1.0])
@pytest.mark.parametrize("zero_disparity", [True, False])
def test_matches_opencv_without_distortion(layout, alpha, zero_disparity):
    ours = _compare(BASELINES[layout], None, None, alpha, zero_disparity, atol=2e-3)
    assert bool(ours.horizontal) == layout.startswith("horizontal")


@pytest.mark.parametrize("layout", ["horizontal", "vertical"])
@pytest.mark.parametrize("alpha", [-1.0, 0.0, 1.0])
@pytest.mark.parametrize("lens", ["mild", 4, 5])
def test_matches_opencv_with_distortion(layout, alpha, lens):
    # OpenCV undistorts the corners and the border grid with 5 fixed-point iterations; for the
    # test lenses (k1 = -0.28) they stop ~0.4 px short at the corners, which moves OpenCV's
    # principal points by up to ~0.35 px and its alpha = 1 focal length by up to ~0.8 px (0.25 %). Ours are the converged values; a mild lens
    # (where 5 iterations converge) agrees to float32 rounding.
    d = np.array([-0.1, 0.02, 1e-3, -5e-4, 0.0]) if lens == "mild" else np.array(LENSES[lens])
    _compare(BASELINES[layout], d, 0.8 * d, alpha, True, atol=2e-3 if lens == "mild" else 1.0)


def test_rectified_pairs_have_equal_rows_and_q_recovers_depth():
    T = BASELINES["horizontal"]
    rect = stereo_rectify(K1, K2, _pose(T), image_size=SIZE, alpha=0.0)
    rng = np.random.default_rng(0)
    X1 = np.c_[rng.uniform(-1, 1, (20, 2)), rng.uniform(2, 6, 20)]
    X2 = X1 @ R.T + T
    R1, R2, P1, P2, Q = (np.array(x, np.float64) for x in rect[:5])
    u1 = (X1 @ R1.T) @ P1[:, :3].T
    u2 = (X2 @ R2.T) @ P2[:, :3].T  # = P2 [R1 X1; 1]: the rectified frames differ by the baseline
    u1, u2 = u1[:, :2] / u1[:, 2:], u2[:, :2] / u2[:, 2:]
    np.testing.assert_allclose(u1[:, 1], u2[:, 1], atol=1e-3)
    h = np.c_[u1, u1[:, 0] - u2[:, 0], np.ones(20)] @ Q.T
    np.testing.assert_allclose(h[:, :3] / h[:, 3:], X1 @ R1.T, rtol=1e-4, atol=1e-4)


def test_cameras_with_world_poses_give_the_relative_pose_and_batch():
    T = BASELINES["horizontal"]
    world = _pose(np.array([0.3, -0.2, 1.0]))
    cam1 = Camera(mx.array(np.stack([K1, K1])), mx.array(np.stack([world, world])), size=SIZE)
    cam2 = Camera(mx.array(np.stack([K2, K2])), mx.array(np.stack([_pose(T) @ world] * 2)))
    rect = stereo_rectify(cam1, cam2)
    ref = cv2.stereoRectify(K1, None, K2, None, SIZE, R, T.reshape(3, 1))
    assert rect.P2.shape == (2, 3, 4) and rect.Q.shape == (2, 4, 4)
    np.testing.assert_allclose(np.array(rect.P2[1], np.float64), ref[3], atol=2e-3)


def test_gradients_with_respect_to_the_pose_are_finite():
    def loss(p):
        return sum(mx.sum(x) for x in stereo_rectify(K1, K2, p, image_size=SIZE, alpha=0.5)[:5])

    for T in (BASELINES["horizontal"], np.array([-0.1, 0.0, 0.0])):  # the second: already along x
        pose = np.eye(4)
        pose[:3, 3] = T
        g = mx.grad(loss)(mx.array(pose, mx.float32))
        assert np.all(np.isfinite(np.array(g)))


def test_stays_on_device_and_compiles_at_two_batch_sizes():
    rng = np.random.default_rng(1)
    d = mx.array(LENSES[5], mx.float32)

    def make(batch):
        poses = np.stack([_pose(BASELINES["horizontal"] + rng.normal(0, 0.01, 3)) for _ in range(batch)])
        return (mx.array(poses, mx.float32),)

    cam1 = Camera(mx.array(K1, mx.float32), dist=d, size=SIZE)
    cam2 = Camera(mx.array(K2, mx.float32), dist=d)
    assert_device_safe(lambda p: tuple(stereo_rectify(cam1, cam2, p, alpha=0.3)), make)


def test_missing_size_and_bad_pose_raise():
    with pytest.raises(ValueError, match="image_size"):
        stereo_rectify(K1, K2, np.eye(4))
    with pytest.raises(ValueError, match="pose"):
        stereo_rectify(K1, K2, np.eye(3), image_size=SIZE)
