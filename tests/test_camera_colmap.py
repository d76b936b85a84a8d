"""COLMAP I/O: lossless write -> read (text and binary, every model), conversion to batched cameras."""

from __future__ import annotations

import re
import struct
from pathlib import Path

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
        images[10 + i] = colmap.ColmapImage(10 + i, q, rng.normal(size=3), i + 1, f"img_{i:03d}.jpg",
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


SCENE = Path(__file__).resolve().parents[1] / "data" / "scene" / "sparse"
FILES = ("cameras", "images", "points3D")


def file_bytes(folder, ext: str) -> list[bytes]:
    return [(Path(folder) / (name + ext)).read_bytes() for name in FILES]


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_pycolmap_written_files_round_trip_byte_identically(tmp_path, ext):
    pycolmap = pytest.importorskip("pycolmap")
    (tmp_path / "peer").mkdir()
    peer = pycolmap.Reconstruction(str(SCENE))
    (peer.write_text if ext == ".txt" else peer.write_binary)(str(tmp_path / "peer"))
    model = colmap.read_model(str(tmp_path / "peer"), ext)
    colmap.write_model(model, str(tmp_path / "ours"), ext)
    assert file_bytes(tmp_path / "ours", ext) == file_bytes(tmp_path / "peer", ext)
    assert_models_equal(model, colmap.read_model(str(SCENE), ".txt"))


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_pycolmap_reads_the_model_we_write(tmp_path, ext):
    pycolmap = pytest.importorskip("pycolmap")
    model = random_model(5)
    colmap.write_model(model, str(tmp_path), ext)
    peer = pycolmap.Reconstruction(str(tmp_path))
    assert set(peer.cameras) == set(model.cameras) and set(peer.images) == set(model.images)
    for cid, c in model.cameras.items():
        cam = peer.cameras[cid]
        assert (cam.model.name, cam.width, cam.height) == (c.model, c.width, c.height)
        np.testing.assert_array_equal(peer.cameras[cid].params, c.params)
    for iid, im in model.images.items():
        pose = peer.images[iid].cam_from_world()
        np.testing.assert_allclose(np.roll(pose.rotation.quat, 1), im.qvec, atol=1e-15)  # pycolmap: xyzw
        np.testing.assert_array_equal(pose.translation, im.tvec)
        assert peer.images[iid].name == im.name
        np.testing.assert_array_equal(np.array([p.xy for p in peer.images[iid].points2D]).reshape(-1, 2), im.xys)
    for pid, p in model.points3D.items():
        np.testing.assert_array_equal(peer.points3D[pid].xyz, p.xyz)
        np.testing.assert_array_equal(peer.points3D[pid].color, p.rgb)
        assert sorted((e.image_id, e.point2D_idx) for e in peer.points3D[pid].track.elements) == \
            sorted(zip(p.image_ids.tolist(), p.point2D_idxs.tolist()))


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_read_then_write_gives_the_same_bytes(tmp_path, ext):
    colmap.write_model(random_model(6), str(tmp_path / "a"), ext)
    colmap.write_model(colmap.read_model(str(tmp_path / "a"), ext), str(tmp_path / "b"), ext)
    assert file_bytes(tmp_path / "b", ext) == file_bytes(tmp_path / "a", ext)


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_non_utf8_image_names_are_kept_byte_for_byte(tmp_path, ext):
    model = random_model(7)
    name = b"caf\xe9 \xff.jpg".decode("utf-8", "surrogateescape")
    model.images[10] = model.images[10]._replace(name=name)
    colmap.write_model(model, str(tmp_path / "a"), ext)
    assert b"caf\xe9 \xff.jpg" in (tmp_path / "a" / f"images{ext}").read_bytes()
    back = colmap.read_model(str(tmp_path / "a"), ext)
    assert back.images[10].name == name
    colmap.write_model(back, str(tmp_path / "b"), ext)
    assert file_bytes(tmp_path / "b", ext) == file_bytes(tmp_path / "a", ext)


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_a_failed_write_leaves_the_old_model_and_no_temporary_file(tmp_path, ext, monkeypatch):
    colmap.write_model(random_model(8), str(tmp_path), ext)
    before = sorted(p.name for p in tmp_path.iterdir()), file_bytes(tmp_path, ext)
    bad = random_model(9)
    bad.points3D[100] = bad.points3D[100]._replace(xyz=np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"points3D.* point 100: xyz: non-finite"):
        colmap.write_model(bad, str(tmp_path), ext)
    calls = []

    def failing_fsync(fd):  # the disk fills up while the third file is written
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(colmap.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        colmap.write_model(random_model(9), str(tmp_path), ext)
    assert (sorted(p.name for p in tmp_path.iterdir()), file_bytes(tmp_path, ext)) == before


def test_text_header_count_that_disagrees_warns(tmp_path):
    colmap.write_model(random_model(10), str(tmp_path), ".txt")
    path = tmp_path / "points3D.txt"
    path.write_text(path.read_text().replace("# Number of points: 6", "# Number of points: 9"))
    with pytest.warns(colmap.ColmapHeaderWarning, match=r"points3D.txt: the header says 9 points, the file holds 6"):
        assert len(colmap.read_points3D_text(str(path))) == 6


@pytest.mark.parametrize("name, text, message", [
    ("cameras.txt", "# a comment\n1 PINHOLE\n", "line 2: CAMERA_ID, MODEL, WIDTH, HEIGHT: 2 of the 4 fields"),
    ("cameras.txt", "garbage\n", "line 1: CAMERA_ID, MODEL, WIDTH, HEIGHT: 1 of the 4 fields"),
    ("cameras.txt", "1 PINHOLE 640 480 500 500 320\n", "line 1: params: COLMAP model PINHOLE expects 4 params, got 3"),
    ("cameras.txt", "1 PINHOLE 640 480 500 nan 320 240\n", "line 1: params: non-finite value nan"),
    ("cameras.txt", "1 PINHOLE 640 -480 500 500 320 240\n", "line 1: height: -480 outside"),
    ("cameras.txt", "1 KANNALA 640 480 500 500 320 240\n", "line 1: model: unknown COLMAP camera model"),
    ("cameras.txt", "1 PINHOLE 640 480.5 500 500 320 240\n", "line 1: CAMERA_ID, WIDTH, HEIGHT: not a number"),
    ("images.txt", "1 1 0 0 0 0 0 0 1 a.png\n", "line 1: POINTS2D: the image line is the last line"),
    ("images.txt", "1 1 0 0 0 0 0 0 1 a.png\n1 2 3 4 5\n", "line 2: POINTS2D: 5 values, not a multiple of 3"),
    ("images.txt", "1 1 0 0 0 0 0 0 1 a.png\n1 2 3.5\n", "line 2: POINTS2D POINT3D_ID: not a number"),
    ("images.txt", "1 0 0 0 0 0 0 0 1 a.png\n\n", "lines 1-2: qvec: the zero quaternion is no rotation"),
    ("images.txt", "1 1 0 0 0 0 0 0 1\n\n", "line 1: IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME: 9 of"),
    ("points3D.txt", "1 0 0 0 300 0 0 0\n", "line 1: rgb: [300, 0, 0] outside [0, 256)"),
    ("points3D.txt", "1 0 0 inf 3 0 0 0\n1 0 0 0 0 0 0 0\n", "line 1: xyz: non-finite value in [0.0, 0.0, inf]"),
    ("points3D.txt", "1 0 0 0 3 0 0 0\n1 0 0 0 0 0 0 0\n", "line 2: point3D_id: duplicate id 1"),
    ("points3D.txt", "1 0 0 0 3 0 0 0 5\n", "line 1: POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]: 9 values"),
])
def test_malformed_text_lines_name_file_line_and_field(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    read = {"cameras.txt": colmap.read_cameras_text, "images.txt": colmap.read_images_text,
            "points3D.txt": colmap.read_points3D_text}[name]
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        read(str(path))


def test_dangling_references_between_files_are_rejected(tmp_path):
    model = random_model(11)
    del model.points3D[next(p for p, pt in model.points3D.items() if len(pt.image_ids))]
    colmap.write_model(model, str(tmp_path), ".bin")
    with pytest.raises(ValueError, match=r"images.bin: image \d+: point3D_ids: \d+ is not in .*points3D.bin"):
        colmap.read_model(str(tmp_path))


def test_model_keypoints_unproject_onto_their_own_points():
    """Issue 22: cameras and keypoints of one model in one pixel convention; unshifted keypoints miss."""
    model = colmap.read_model(str(SCENE), ".txt")
    cams, ids = colmap.model_to_cameras(model, dtype=mx.float64)
    pids, xyz, _, _ = colmap.model_points(model, dtype=mx.float64)
    kp = colmap.model_keypoints(model, ids, dtype=mx.float64)
    has = np.array(kp.point_index) >= 0
    assert np.array_equal(has, np.array(kp.valid) & (kp.point3D_ids >= 0)) and has.sum() == 9138
    X = np.array(xyz)[np.where(has, np.array(kp.point_index), 0)]  # (I, N, 3)
    depth = cams.project(mx.array(X)).depth
    R = np.broadcast_to(np.array(cams.pose)[:, None, :3, :3], X.shape[:2] + (3, 3))
    bias = {}
    for name, pixels in (("model_keypoints", kp.pixels), ("raw xys", kp.pixels + colmap.HALF_PIXEL)):
        miss = np.einsum("bnij,bnj->bni", R, np.array(cams.unproject(pixels, depth)) - X)  # camera frame
        bias[name] = (miss[..., :2] / np.array(depth)[..., None] * 520.0)[has].mean(0)  # in pixels (f = 520)
    # the scene's keypoints carry 1 px of zero-mean noise: the mean over 9138 of them is ~0.01 px
    np.testing.assert_allclose(bias["model_keypoints"], 0.0, atol=0.05)
    np.testing.assert_allclose(bias["raw xys"], 0.5, atol=0.05)
    np.testing.assert_array_equal(kp.point3D_ids[has], pids[np.array(kp.point_index)[has]])


def test_binary_counts_are_checked_against_the_bytes_left(tmp_path):
    colmap.write_model(random_model(12), str(tmp_path), ".bin")
    path = tmp_path / "images.bin"
    data = path.read_bytes()
    at = data.index(b"\0", 8 + 64) + 1  # the first image's num_points2D, after its name
    path.write_bytes(data[:at] + struct.pack("<Q", 2**64 - 1) + data[at + 8:])
    with pytest.raises(ValueError, match=re.escape(f"{path}: image 0 at byte 8: num_points2D: "
                                                   f"{2**64 - 1} records need at least {24 * (2**64 - 1)} bytes")):
        colmap.read_images_binary(str(path))
    path.write_bytes(data + b"\0")
    with pytest.raises(ValueError, match=re.escape(f"{path}: end of file: num_reg_images: 1 bytes after the 7 ")):
        colmap.read_images_binary(str(path))
    path.write_bytes(data[:-1])
    with pytest.raises(ValueError, match=re.escape(f"{path}: image 6 at byte ") + r"\d+: \w+: truncated: \d+ bytes"):
        colmap.read_images_binary(str(path))


def test_writers_refuse_records_that_would_not_read_back(tmp_path):
    model = random_model(13)
    cases = [
        ("cameras", {**model.cameras, 99: model.cameras[1]}, r"cameras.bin: camera 99: camera_id: 1 differs from"),
        ("images", {**model.images, 10: model.images[10]._replace(name="a\nb")}, r"image 10: name: 'a\\nb'"),
        ("images", {**model.images, 10: model.images[10]._replace(camera_id=-1)}, r"image 10: camera_id: -1 outside"),
        ("points3D", {**model.points3D, 100: model.points3D[100]._replace(rgb=[1, 2])}, r"point 100: record: not a"),
        ("points3D", {**model.points3D, 100: model.points3D[100]._replace(error=np.inf)}, r"point 100: error: non-fin"),
    ]
    for field, records, message in cases:
        with pytest.raises(ValueError, match=message):
            colmap.write_model(model._replace(**{field: records}), str(tmp_path), ".bin")
    assert list(tmp_path.iterdir()) == []


def test_text_files_with_windows_line_ends_read_the_same(tmp_path):
    model = random_model(14)
    colmap.write_model(model, str(tmp_path), ".txt")
    for name in FILES:
        path = tmp_path / f"{name}.txt"
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert_models_equal(colmap.read_model(str(tmp_path), ".txt"), model)


def test_names_with_edge_whitespace_survive_binary_and_are_refused_by_text(tmp_path):
    model = random_model(15)
    model.images[10] = model.images[10]._replace(name=" a.jpg ")
    colmap.write_model(model, str(tmp_path), ".bin")
    assert colmap.read_model(str(tmp_path), ".bin").images[10].name == " a.jpg "
    with pytest.raises(ValueError, match=r"images.txt: image 10: name: ' a.jpg ' starts or ends with whitespace"):
        colmap.write_model(model, str(tmp_path), ".txt")
