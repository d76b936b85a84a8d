"""COLMAP I/O: lossless write -> read (text and binary, every model), conversion to batched cameras."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import lie
from mlxgeom.camera import Camera, colmap

MODEL_PARAMS = {
    "SIMPLE_PINHOLE": [500.1, 320.2, 240.3],
    "PINHOLE": [500.1, 510.7, 320.2, 240.3],
    "SIMPLE_RADIAL": [500.1, 320.2, 240.3, -0.05],
    "RADIAL": [500.1, 320.2, 240.3, -0.05, 0.01],
    "OPENCV": [500.1, 510.7, 320.2, 240.3, -0.05, 0.01, 0.001, -0.002],
    "OPENCV_FISHEYE": [500.1, 510.7, 320.2, 240.3, 0.05, -0.01, 0.003, -0.001],
    "FULL_OPENCV": [500.1, 510.7, 320.2, 240.3, -0.05, 0.01, 0.001, -0.002, 0.003, 0.02, -0.01, 0.004],
}


def random_model(seed: int) -> colmap.ColmapModel:
    """Every camera model, images with keypoints, points whose tracks agree with the keypoints."""
    rng = np.random.default_rng(seed)
    cams = {i + 1: colmap.ColmapCamera(i + 1, m, 640 + i, 480 - i, np.array(p) * (1 + rng.normal() * 1e-3))
            for i, (m, p) in enumerate(MODEL_PARAMS.items())}
    point_ids = list(range(100, 106))
    tracks = {pid: ([], []) for pid in point_ids}
    images = {}
    for i in range(len(cams)):
        q = rng.normal(size=4)
        q = q / np.linalg.norm(q) * np.sign(q[0])
        n = int(rng.integers(0, 5))
        pids = np.where(rng.random(n) < 0.7, rng.choice(point_ids, n), -1).astype(np.int64)
        for j, pid in enumerate(pids):
            if pid >= 0:
                tracks[int(pid)][0].append(10 + i)
                tracks[int(pid)][1].append(j)
        images[10 + i] = colmap.ColmapImage(10 + i, q, rng.normal(size=3), i + 1, f"img {i:03d}.jpg",
                                            rng.uniform(0, 600, (n, 2)), pids)
    points = {pid: colmap.ColmapPoint3D(pid, rng.normal(size=3), rng.integers(0, 256, 3).astype(np.uint8),
                                        float(rng.uniform(0, 2)), np.array(tracks[pid][0], np.int64),
                                        np.array(tracks[pid][1], np.int64)) for pid in point_ids}
    return colmap.ColmapModel(cams, images, points)


def assert_models_equal(a: colmap.ColmapModel, b: colmap.ColmapModel) -> None:
    for da, db in zip(a, b):
        assert list(da) == list(db)
        for k in da:
            for fa, fb in zip(da[k], db[k]):
                if isinstance(fa, np.ndarray):
                    assert fa.shape == np.asarray(fb).shape and np.array_equal(fa, fb), (k, fa, fb)
                else:
                    assert fa == fb, (k, fa, fb)


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_write_then_read_is_lossless_for_every_model(tmp_path, ext):
    model = random_model(0)
    colmap.write_model(model, str(tmp_path), ext)
    back = colmap.read_model(str(tmp_path), ext)
    assert_models_equal(model, back)
    assert {c.model for c in back.cameras.values()} == set(MODEL_PARAMS)


def test_text_and_binary_files_hold_the_same_model(tmp_path):
    model = random_model(1)
    colmap.write_model(model, str(tmp_path / "t"), ".txt")
    colmap.write_model(colmap.read_model(str(tmp_path / "t")), str(tmp_path / "b"), ".bin")
    assert_models_equal(model, colmap.read_model(str(tmp_path / "b")))


@pytest.mark.parametrize("name", list(MODEL_PARAMS))
def test_model_to_cameras_projects_like_the_colmap_model(name):
    """COLMAP's projection of each model written out by hand, against Camera.project."""
    p = np.array(MODEL_PARAMS[name])
    q = np.array([0.9, 0.1, -0.2, 0.3])
    q /= np.linalg.norm(q)
    t = np.array([0.1, -0.2, 0.5])
    model = colmap.ColmapModel({1: colmap.ColmapCamera(1, name, 640, 480, p)},
                               {1: colmap.ColmapImage(1, q, t, 1, "a.png", np.zeros((0, 2)), np.zeros(0, np.int64))}, {})
    cams, ids = colmap.model_to_cameras(model, dtype=mx.float64)
    assert ids.tolist() == [1] and cams.batch_shape == (1,)
    X = np.random.default_rng(2).uniform(-1, 1, (20, 3)) + [0, 0, 5]
    R = np.array(lie.quaternion_to_matrix(mx.array(q, dtype=mx.float64)))
    Xc = X @ R.T + t
    rvec = cv2.Rodrigues(R)[0]
    intr, dist, lens = colmap.colmap_params_to_opencv(name, p)
    K = np.array([[intr[0], 0, intr[2]], [0, intr[1], intr[3]], [0, 0, 1]])
    if lens == "fisheye":
        ref = cv2.fisheye.projectPoints(X[:, None], rvec, t, K, dist)[0][:, 0]
    else:
        ref = cv2.projectPoints(X, rvec, t, K, dist if len(dist) else None)[0][:, 0]
    got = np.array(cams.project(mx.array(X, dtype=mx.float64)).pixels)[0]
    # COLMAP's pixel centres are at +0.5: mlxgeom pixels = COLMAP pixels - 0.5
    np.testing.assert_allclose(got, ref - 0.5, atol=1e-8)
    np.testing.assert_allclose(np.array(cams.project(mx.array(X, dtype=mx.float64)).depth)[0], Xc[:, 2], atol=1e-12)
    np.testing.assert_allclose(np.array(cams.size), [[640, 480]])


def test_cameras_to_model_round_trips_through_files(tmp_path):
    rng = np.random.default_rng(3)
    pose = lie.se3_from_rt(lie.so3_exp(mx.array(rng.normal(size=(3, 3)), dtype=mx.float64)),
                           mx.array(rng.normal(size=(3, 3)), dtype=mx.float64))
    K = mx.broadcast_to(mx.array([[500.0, 0, 319.5], [0, 510, 239.5], [0, 0, 1]], dtype=mx.float64), (3, 3, 3))
    dist = mx.array(rng.normal(size=(3, 8)) * 0.01, dtype=mx.float64)
    cams = Camera(K, pose, dist, mx.array([640.0, 480.0], dtype=mx.float64))
    xyz = rng.normal(size=(7, 3))
    model = colmap.cameras_to_model(cams, ["a", "b", "c"], points_xyz=xyz)
    assert {c.model for c in model.cameras.values()} == {"FULL_OPENCV"}
    colmap.write_model(model, str(tmp_path), ".bin")
    back, ids = colmap.model_to_cameras(colmap.read_model(str(tmp_path)), dtype=mx.float64)
    for a, b in zip(cams, back):
        np.testing.assert_allclose(np.broadcast_to(np.array(a), np.array(b).shape), np.array(b), atol=1e-12)
    pids, pts, rgb, err = colmap.model_points(colmap.read_model(str(tmp_path)), dtype=mx.float64)
    np.testing.assert_array_equal(np.array(pts), xyz)
    assert rgb.dtype == mx.uint8 and pids.tolist() == list(range(1, 8))


def test_mixed_fisheye_and_pinhole_batch_is_rejected():
    model = random_model(4)
    with pytest.raises(ValueError, match="fisheye"):
        colmap.model_to_cameras(model)
    pinholes = [i for i, im in model.images.items() if model.cameras[im.camera_id].model != "OPENCV_FISHEYE"]
    cams, ids = colmap.model_to_cameras(model, pinholes)
    assert cams.dist.shape == (6, 8) and ids.tolist() == pinholes


def test_bad_inputs_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="expects 4 params"):
        colmap.write_cameras_text({1: colmap.ColmapCamera(1, "PINHOLE", 1, 1, np.zeros(3))}, str(tmp_path / "c.txt"))
    with pytest.raises(ValueError, match="unknown COLMAP camera model"):
        colmap.colmap_params_to_opencv("KANNALA", np.zeros(4))
    with pytest.raises(ValueError, match="no OpenCV equivalent"):
        colmap.colmap_params_to_opencv("FOV", np.zeros(5))
    with pytest.raises(ValueError, match="skew"):
        colmap.cameras_to_model(Camera.from_intrinsics(mx.array([1.0]), 1.0, 0.0, 0.0, skew=0.5), ["a"])
    (tmp_path / "cameras.bin").write_bytes(b"\x05\x00")
    with pytest.raises(ValueError, match="truncated"):
        colmap.read_cameras_binary(str(tmp_path / "cameras.bin"))
