"""COLMAP sparse models: read and write ``cameras``, ``images``, ``points3D`` (.txt and .bin).

Formats follow COLMAP's "Output Format" documentation (``colmap.github.io/format.html``):
text files with one record per line (images take two lines), binary files little-endian
with uint64 counts, camera ``(int32 id, int32 model_id, uint64 width, uint64 height,
float64 params[])``, image ``(int32 id, float64 qw qx qy qz tx ty tz, int32 camera_id,
NUL-terminated name, uint64 n, n x (float64 x, float64 y, int64 point3D_id))`` and point
``(uint64 id, float64 xyz, uint8 rgb, float64 error, uint64 n, n x (int32 image_id, int32
point2D_idx))``. Images store world-to-camera poses (``x_cam = R(q) x_world + t``, q = wxyz).

File I/O is host-side numpy / struct code (not a batched device path); floats are written
with 17 significant digits in text and as float64 in binary, so write -> read is lossless.
:func:`model_to_cameras` and :func:`cameras_to_model` convert to and from batched
:class:`~mlxgeom.camera.Camera` objects for SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL,
OPENCV, OPENCV_FISHEYE and FULL_OPENCV. COLMAP puts the centre of the top-left pixel at
(0.5, 0.5), OpenCV and mlxgeom at (0, 0): the conversion shifts the principal point by 0.5
unless ``half_pixel=False``.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, NamedTuple

import mlx.core as mx
import numpy as np

# name -> (model_id, number of params); COLMAP's src/colmap/sensor/models.h
CAMERA_MODELS = {
    "SIMPLE_PINHOLE": (0, 3), "PINHOLE": (1, 4), "SIMPLE_RADIAL": (2, 4), "RADIAL": (3, 5),
    "OPENCV": (4, 8), "OPENCV_FISHEYE": (5, 8), "FULL_OPENCV": (6, 12), "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4), "RADIAL_FISHEYE": (9, 5), "THIN_PRISM_FISHEYE": (10, 12),
}
_MODEL_BY_ID = {mid: name for name, (mid, _) in CAMERA_MODELS.items()}
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV")


class ColmapCamera(NamedTuple):
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # (n,) float64


class ColmapImage(NamedTuple):
    image_id: int
    qvec: np.ndarray  # (4,) wxyz, world-to-camera
    tvec: np.ndarray  # (3,)
    camera_id: int
    name: str
    xys: np.ndarray  # (n, 2) float64 keypoints (COLMAP pixel convention)
    point3D_ids: np.ndarray  # (n,) int64, -1 where none


class ColmapPoint3D(NamedTuple):
    point3D_id: int
    xyz: np.ndarray  # (3,) float64
    rgb: np.ndarray  # (3,) uint8
    error: float
    image_ids: np.ndarray  # (m,) int32
    point2D_idxs: np.ndarray  # (m,) int32


class ColmapModel(NamedTuple):
    """A sparse model: dicts keyed by id, as COLMAP's own ``read_write_model.py``."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points3D: dict[int, ColmapPoint3D]


def _check_model_name(name: str, n: int | None = None) -> None:
    if name not in CAMERA_MODELS:
        raise ValueError(f"unknown COLMAP camera model {name!r}; expected one of {tuple(CAMERA_MODELS)}")
    if n is not None and n != CAMERA_MODELS[name][1]:
        raise ValueError(f"COLMAP model {name} expects {CAMERA_MODELS[name][1]} params, got {n}")


def _fmt(x: float) -> str:
    return repr(float(x))


def _data_lines(path: str) -> list[str]:
    with open(path) as f:
        return [ln.rstrip("\n") for ln in f if ln.strip() and not ln.startswith("#")]


# ----- cameras -------------------------------------------------------------------------
def read_cameras_text(path: str) -> dict[int, ColmapCamera]:
    cams = {}
    for line in _data_lines(path):
        e = line.split()
        cam = ColmapCamera(int(e[0]), e[1], int(e[2]), int(e[3]), np.array([float(v) for v in e[4:]]))
        _check_model_name(cam.model, len(cam.params))
        cams[cam.camera_id] = cam
    return cams


def write_cameras_text(cameras: dict[int, ColmapCamera], path: str) -> None:
    with open(path, "w") as f:
        f.write("# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n")
        f.write(f"# Number of cameras: {len(cameras)}\n")
        for c in cameras.values():
            _check_model_name(c.model, len(c.params))
            f.write(" ".join([str(c.camera_id), c.model, str(c.width), str(c.height), *map(_fmt, c.params)]) + "\n")


def _read(f: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated COLMAP binary file")
    return struct.unpack("<" + fmt, data)


def read_cameras_binary(path: str) -> dict[int, ColmapCamera]:
    cams = {}
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            cid, mid, w, h = _read(f, "iiQQ")
            if mid not in _MODEL_BY_ID:
                raise ValueError(f"unknown COLMAP camera model id {mid}")
            name = _MODEL_BY_ID[mid]
            params = np.array(_read(f, "d" * CAMERA_MODELS[name][1]))
            cams[cid] = ColmapCamera(cid, name, w, h, params)
    return cams


def write_cameras_binary(cameras: dict[int, ColmapCamera], path: str) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(cameras)))
        for c in cameras.values():
            _check_model_name(c.model, len(c.params))
            f.write(struct.pack("<iiQQ", c.camera_id, CAMERA_MODELS[c.model][0], c.width, c.height))
            f.write(struct.pack("<" + "d" * len(c.params), *c.params))


# ----- images -------------------------------------------------------------------------
def read_images_text(path: str) -> dict[int, ColmapImage]:
    images = {}
    with open(path) as f:
        lines = [ln.rstrip("\n") for ln in f if not ln.startswith("#")]
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        e = lines[i].split()
        pts = lines[i + 1].split() if i + 1 < len(lines) else []
        xys = np.array([[float(pts[j]), float(pts[j + 1])] for j in range(0, len(pts), 3)]).reshape(-1, 2)
        ids = np.array([int(pts[j + 2]) for j in range(0, len(pts), 3)], dtype=np.int64)
        img = ColmapImage(int(e[0]), np.array([float(v) for v in e[1:5]]), np.array([float(v) for v in e[5:8]]),
                          int(e[8]), " ".join(e[9:]), xys, ids)
        images[img.image_id] = img
        i += 2
    return images


def write_images_text(images: dict[int, ColmapImage], path: str) -> None:
    with open(path, "w") as f:
        f.write("# Image list with two lines of data per image:\n")
        f.write("#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n#   POINTS2D[] as (X, Y, POINT3D_ID)\n")
        f.write(f"# Number of images: {len(images)}\n")
        for im in images.values():
            f.write(" ".join([str(im.image_id), *map(_fmt, im.qvec), *map(_fmt, im.tvec), str(im.camera_id), im.name]))
            f.write("\n")
            f.write(" ".join(f"{_fmt(x)} {_fmt(y)} {int(p)}" for (x, y), p in zip(im.xys, im.point3D_ids)) + "\n")


def read_images_binary(path: str) -> dict[int, ColmapImage]:
    images = {}
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            props = _read(f, "idddddddi")
            name = b""
            while (ch := f.read(1)) not in (b"\x00", b""):
                name += ch
            (m,) = _read(f, "Q")
            flat = _read(f, "ddq" * m)
            xys = np.array([flat[3 * j: 3 * j + 2] for j in range(m)], dtype=np.float64).reshape(-1, 2)
            ids = np.array(flat[2::3], dtype=np.int64)
            images[props[0]] = ColmapImage(props[0], np.array(props[1:5]), np.array(props[5:8]), props[8],
                                           name.decode("utf-8"), xys, ids)
    return images


def write_images_binary(images: dict[int, ColmapImage], path: str) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(images)))
        for im in images.values():
            f.write(struct.pack("<idddddddi", im.image_id, *map(float, im.qvec), *map(float, im.tvec), im.camera_id))
            f.write(im.name.encode("utf-8") + b"\x00")
            f.write(struct.pack("<Q", len(im.point3D_ids)))
            for (x, y), p in zip(im.xys, im.point3D_ids):
                f.write(struct.pack("<ddq", float(x), float(y), int(p)))


# ----- points -------------------------------------------------------------------------
def read_points3D_text(path: str) -> dict[int, ColmapPoint3D]:
    points = {}
    for line in _data_lines(path):
        e = line.split()
        track = np.array([int(v) for v in e[8:]], dtype=np.int32).reshape(-1, 2)
        p = ColmapPoint3D(int(e[0]), np.array([float(v) for v in e[1:4]]), np.array([int(v) for v in e[4:7]], np.uint8),
                          float(e[7]), track[:, 0].copy(), track[:, 1].copy())
        points[p.point3D_id] = p
    return points


def write_points3D_text(points: dict[int, ColmapPoint3D], path: str) -> None:
    with open(path, "w") as f:
        f.write("# 3D point list with one line of data per point:\n")
        f.write("#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n")
        f.write(f"# Number of points: {len(points)}\n")
        for p in points.values():
            track = " ".join(f"{int(i)} {int(j)}" for i, j in zip(p.image_ids, p.point2D_idxs))
            f.write(" ".join([str(p.point3D_id), *map(_fmt, p.xyz), *(str(int(c)) for c in p.rgb), _fmt(p.error), track]))
            f.write("\n")


def read_points3D_binary(path: str) -> dict[int, ColmapPoint3D]:
    points = {}
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            pid, x, y, z, r, g, b, err = _read(f, "QdddBBBd")
            (m,) = _read(f, "Q")
            track = np.array(_read(f, "ii" * m), dtype=np.int32).reshape(-1, 2)
            points[pid] = ColmapPoint3D(pid, np.array([x, y, z]), np.array([r, g, b], np.uint8), err,
                                        track[:, 0].copy(), track[:, 1].copy())
    return points


def write_points3D_binary(points: dict[int, ColmapPoint3D], path: str) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(points)))
        for p in points.values():
            f.write(struct.pack("<QdddBBBd", p.point3D_id, *map(float, p.xyz), *map(int, p.rgb), float(p.error)))
            f.write(struct.pack("<Q", len(p.image_ids)))
            for i, j in zip(p.image_ids, p.point2D_idxs):
                f.write(struct.pack("<ii", int(i), int(j)))


# ----- whole models -------------------------------------------------------------------
_READERS = {".txt": (read_cameras_text, read_images_text, read_points3D_text),
            ".bin": (read_cameras_binary, read_images_binary, read_points3D_binary)}
_WRITERS = {".txt": (write_cameras_text, write_images_text, write_points3D_text),
            ".bin": (write_cameras_binary, write_images_binary, write_points3D_binary)}


def read_model(path: str, ext: str | None = None) -> ColmapModel:
    """Read ``cameras``, ``images``, ``points3D`` from a folder (ext ".bin" or ".txt"; None:
    whichever exists, binary first)."""
    if ext is None:
        ext = ".bin" if os.path.exists(os.path.join(path, "cameras.bin")) else ".txt"
    if ext not in _READERS:
        raise ValueError(f"ext: expected '.bin' or '.txt', got {ext!r}")
    rc, ri, rp = _READERS[ext]
    return ColmapModel(rc(os.path.join(path, "cameras" + ext)), ri(os.path.join(path, "images" + ext)),
                       rp(os.path.join(path, "points3D" + ext)))


def write_model(model: ColmapModel, path: str, ext: str = ".bin") -> None:
    """Write a :class:`ColmapModel` to a folder (created if missing)."""
    if ext not in _WRITERS:
        raise ValueError(f"ext: expected '.bin' or '.txt', got {ext!r}")
    os.makedirs(path, exist_ok=True)
    wc, wi, wp = _WRITERS[ext]
    wc(model.cameras, os.path.join(path, "cameras" + ext))
    wi(model.images, os.path.join(path, "images" + ext))
    wp(model.points3D, os.path.join(path, "points3D" + ext))


# ----- conversion to and from Camera ---------------------------------------------------
def colmap_params_to_opencv(model: str, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(fx, fy, cx, cy), OpenCV distortion coefficients and mlxgeom lens model of a COLMAP camera."""
    _check_model_name(model, len(params))
    if model not in SUPPORTED_MODELS:
        raise ValueError(f"COLMAP model {model} has no OpenCV equivalent; supported: {SUPPORTED_MODELS}")
    p = np.asarray(params, dtype=np.float64)
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        intr = np.array([p[0], p[0], p[1], p[2]])
        radial = np.zeros(0) if model == "SIMPLE_PINHOLE" else np.r_[p[3:], np.zeros(7 - len(p))]
        return intr, radial, "opencv"
    return p[:4].copy(), p[4:].copy(), "fisheye" if model == "OPENCV_FISHEYE" else "opencv"


def opencv_to_colmap_params(model: str, intr: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Inverse of :func:`colmap_params_to_opencv` for a chosen COLMAP model (dist zero-padded)."""
    _check_model_name(model)
    fx, fy, cx, cy = (float(v) for v in intr)
    d = np.zeros(8)
    d[: min(len(dist), 8)] = np.asarray(dist, dtype=np.float64)[:8]
    table = {
        "SIMPLE_PINHOLE": [fx, cx, cy], "PINHOLE": [fx, fy, cx, cy], "SIMPLE_RADIAL": [fx, cx, cy, d[0]],
        "RADIAL": [fx, cx, cy, d[0], d[1]], "OPENCV": [fx, fy, cx, cy, *d[:4]],
        "OPENCV_FISHEYE": [fx, fy, cx, cy, *d[:4]], "FULL_OPENCV": [fx, fy, cx, cy, d[0], d[1], d[2], d[3], *d[4:8]],
    }
    if model not in table:
        raise ValueError(f"COLMAP model {model} has no OpenCV equivalent; supported: {SUPPORTED_MODELS}")
    return np.array(table[model], dtype=np.float64)


def model_to_cameras(model: ColmapModel, image_ids: list[int] | None = None, half_pixel: bool = True,
                     dtype: mx.Dtype = mx.float32):
    """Batched cameras of the registered images: ``(Camera (I,), image_ids (I,) np.int64)``.

    Distortion coefficients are zero-padded to the longest model (an exact equivalent);
    OPENCV_FISHEYE cameras cannot share a batch with the others (ValueError). Poses come
    from the images' (q, t) via ``lie.quaternion_to_matrix``.
    """
    from .. import lie
    from .camera import Camera

    ids = sorted(model.images) if image_ids is None else list(image_ids)
    rows = []
    for i in ids:
        im = model.images[i]
        cam = model.cameras[im.camera_id]
        intr, dist, lens = colmap_params_to_opencv(cam.model, cam.params)
        rows.append((im, cam, intr, dist, lens))
    lenses = {r[4] for r in rows}
    if len(lenses) > 1:
        raise ValueError("model_to_cameras: fisheye and OpenCV cameras cannot share a batch; pass image_ids per lens")
    k = max((len(r[3]) for r in rows), default=0)
    shift = 0.5 if half_pixel else 0.0
    fx, fy, cx, cy = (np.array([r[2][j] for r in rows]) for j in range(4))
    dist = np.zeros((len(rows), k))
    for n, r in enumerate(rows):
        dist[n, : len(r[3])] = r[3]
    size = np.array([[r[1].width, r[1].height] for r in rows], dtype=np.float64).reshape(-1, 2)
    q = mx.array(np.array([r[0].qvec for r in rows]).reshape(-1, 4), dtype=dtype)
    t = mx.array(np.array([r[0].tvec for r in rows]).reshape(-1, 3), dtype=dtype)
    pose = lie.se3_from_rt(lie.quaternion_to_matrix(q), t)
    from .intrinsics import intrinsics_matrix

    K = intrinsics_matrix(*(mx.array(v, dtype=dtype) for v in (fx, fy, cx - shift, cy - shift)))
    cams = Camera(K, pose, mx.array(dist, dtype=dtype) if k else None, mx.array(size, dtype=dtype),
                  model=lenses.pop() if lenses else "opencv")
    return cams, np.array(ids, dtype=np.int64)


def model_points(model: ColmapModel, dtype: mx.Dtype = mx.float32):
    """``(point3D_ids (P,) np.int64, xyz (P, 3) mx, rgb (P, 3) mx.uint8, error (P,) mx)``."""
    ids = sorted(model.points3D)
    xyz = np.array([model.points3D[i].xyz for i in ids], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([model.points3D[i].rgb for i in ids], dtype=np.uint8).reshape(-1, 3)
    err = np.array([model.points3D[i].error for i in ids], dtype=np.float64)
    return np.array(ids, dtype=np.int64), mx.array(xyz, dtype=dtype), mx.array(rgb), mx.array(err, dtype=dtype)


def _np(x: mx.array) -> np.ndarray:
    return np.array(x.astype(mx.float32) if x.dtype in (mx.float16, mx.bfloat16) else x).astype(np.float64)


def cameras_to_model(cameras, names: list[str], colmap_model: str | None = None, half_pixel: bool = True,
                     points_xyz=None, points_rgb=None) -> ColmapModel:
    """A :class:`ColmapModel` with one COLMAP camera and one image per entry of a (I,) camera batch.

    ``colmap_model`` defaults to PINHOLE without distortion, OPENCV with up to 4 coefficients,
    FULL_OPENCV with 5 or 8, OPENCV_FISHEYE for fisheye cameras (12/14-coefficient models
    and skew have no COLMAP equivalent: ValueError). Points (P, 3) become points3D with empty
    tracks. Host-side (reads the arrays).
    """
    from .. import lie

    shape = cameras.batch_shape
    if len(shape) != 1 or len(names) != shape[0]:
        raise ValueError(f"cameras_to_model: expected a (I,) batch of cameras and I names, got {shape} and {len(names)}")
    I, k = shape[0], cameras.dist.shape[-1]
    K = np.broadcast_to(_np(cameras.K), (I, 3, 3))
    if np.any(K[:, 0, 1] != 0):
        raise ValueError("cameras_to_model: COLMAP cameras have no skew (K[0, 1] must be 0)")
    dist = np.broadcast_to(_np(cameras.dist), (I, k))
    if colmap_model is None:
        colmap_model = ("OPENCV_FISHEYE" if cameras.model == "fisheye" else
                        "PINHOLE" if k == 0 else "OPENCV" if k == 4 else "FULL_OPENCV" if k in (5, 8) else "")
        if not colmap_model:
            raise ValueError(f"cameras_to_model: {k} OpenCV coefficients have no COLMAP model")
    size = np.broadcast_to(_np(cameras.size), (I, 2))
    pose = mx.broadcast_to(cameras.pose, (I, 4, 4))
    q, t = _np(lie.matrix_to_quaternion(pose[:, :3, :3])), _np(pose[:, :3, 3])
    shift = 0.5 if half_pixel else 0.0
    cams, images = {}, {}
    for n in range(I):
        intr = np.array([K[n, 0, 0], K[n, 1, 1], K[n, 0, 2] + shift, K[n, 1, 2] + shift])
        params = opencv_to_colmap_params(colmap_model, intr, dist[n])
        cams[n + 1] = ColmapCamera(n + 1, colmap_model, int(round(size[n, 0])), int(round(size[n, 1])), params)
        images[n + 1] = ColmapImage(n + 1, q[n], t[n], n + 1, names[n],
                                    np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
    points = {}
    if points_xyz is not None:
        xyz = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        rgb = np.zeros_like(xyz, dtype=np.uint8) if points_rgb is None else np.asarray(points_rgb, np.uint8).reshape(-1, 3)
        for j in range(len(xyz)):
            points[j + 1] = ColmapPoint3D(j + 1, xyz[j], rgb[j], 0.0, np.zeros(0, np.int32), np.zeros(0, np.int32))
    return ColmapModel(cams, images, points)
