"""COLMAP sparse models: read and write ``cameras``, ``images``, ``points3D`` (.txt and .bin).

Formats follow COLMAP's ``src/colmap/scene/reconstruction_io_{text,binary}.cc``: text files with one
record per line (images take two lines: the image, then its keypoints), binary files little-endian
with uint64 counts, camera ``(uint32 id, int32 model_id, uint64 width, uint64 height, float64
params[])``, image ``(uint32 id, float64 qw qx qy qz tx ty tz, uint32 camera_id, NUL-terminated
name, uint64 n, n x (float64 x, float64 y, uint64 point3D_id))`` and point ``(uint64 id, float64
xyz, uint8 rgb, float64 error, uint64 n, n x (uint32 image_id, uint32 point2D_idx))``. Images store
world-to-camera poses (``x_cam = R(q) x_world + t``, q = wxyz).

Files are untrusted input. The readers check every count against the bytes left before they
allocate, reject NaN/inf, out-of-range values, wrong param counts, duplicate ids and dangling
references with a ``ValueError`` naming the file, the record or line and the field (``OSError``
for I/O), and warn (:class:`ColmapHeaderWarning`) only where COLMAP itself ignores the data: a text
file's ``# Number of ...`` header. Image names are bytes in COLMAP: a name that is not UTF-8 is
decoded with ``surrogateescape`` (``b"caf\\xe9.jpg"`` -> ``"caf\\udce9.jpg"``) and encoded back
the same way, so it survives read -> write byte for byte. Writers build each file in memory,
write it to a temporary file in the target folder and ``os.replace`` it: a failure leaves the old
files untouched. Floats are written as ``%.17g`` in text (COLMAP's own ``precision(17)``) and
float64 in binary, so files written by COLMAP / pycolmap or by these writers round-trip byte for
byte.

:func:`model_to_cameras` and :func:`cameras_to_model` convert to and from batched
:class:`~mlxgeom.camera.Camera` objects for SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV,
OPENCV_FISHEYE and FULL_OPENCV. COLMAP puts the centre of the top-left pixel at (0.5, 0.5), OpenCV
and mlxgeom at (0, 0): the cameras' principal point moves by 0.5 and so must every COLMAP pixel;
:func:`model_keypoints` returns the model's keypoints already moved (``half_pixel=True`` in both).
File I/O is host-side numpy / struct code, not a batched device path.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from .. import lie
from ._colmap_files import (
    ColmapHeaderWarning,
    _encode_cameras_binary,
    _encode_cameras_text,
    _encode_images_binary,
    _encode_images_text,
    _encode_points3D_binary,
    _encode_points3D_text,
    _replace_all,
    read_cameras_binary,
    read_cameras_text,
    read_images_binary,
    read_images_text,
    read_points3D_binary,
    read_points3D_text,
    write_cameras_binary,
    write_cameras_text,
    write_images_binary,
    write_images_text,
    write_points3D_binary,
    write_points3D_text,
)
from ._colmap_records import (
    CAMERA_MODELS,
    HALF_PIXEL,
    SUPPORTED_MODELS,
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    ColmapPoint3D,
    _check_model_name,
)

__all__ = [
    "CAMERA_MODELS", "HALF_PIXEL", "SUPPORTED_MODELS", "ColmapCamera", "ColmapHeaderWarning", "ColmapImage",
    "ColmapModel", "ColmapPoint3D", "ModelKeypoints", "cameras_to_model", "colmap_params_to_opencv",
    "model_keypoints", "model_points", "model_to_cameras", "opencv_to_colmap_params", "read_cameras_binary",
    "read_cameras_text", "read_images_binary", "read_images_text", "read_model", "read_points3D_binary",
    "read_points3D_text", "write_cameras_binary", "write_cameras_text", "write_images_binary",
    "write_images_text", "write_model", "write_points3D_binary", "write_points3D_text",
]


# ----- whole models -------------------------------------------------------------------
_READERS = {".txt": (read_cameras_text, read_images_text, read_points3D_text),
            ".bin": (read_cameras_binary, read_images_binary, read_points3D_binary)}
_ENCODERS = {".txt": (_encode_cameras_text, _encode_images_text, _encode_points3D_text),
             ".bin": (_encode_cameras_binary, _encode_images_binary, _encode_points3D_binary)}
_FILES = ("cameras", "images", "points3D")


def _check_references(model: ColmapModel, paths: tuple[str, str, str]) -> None:
    """Every id an image or a track names exists (model_to_cameras and BA index by them)."""
    for im in model.images.values():
        if im.camera_id not in model.cameras:
            raise ValueError(f"{paths[1]}: image {im.image_id}: camera_id: {im.camera_id} is not in {paths[0]}")
    pids = np.fromiter(model.points3D, np.int64, len(model.points3D))
    for im in model.images.values():
        ref = im.point3D_ids[im.point3D_ids >= 0]
        missing = ref[~np.isin(ref, pids)]
        if len(missing):
            raise ValueError(f"{paths[1]}: image {im.image_id}: point3D_ids: {int(missing[0])} is not in {paths[2]}")
    points = list(model.points3D.values())
    img = np.concatenate([np.zeros(0, np.int64)] + [p.image_ids for p in points])
    idx = np.concatenate([np.zeros(0, np.int64)] + [p.point2D_idxs for p in points])
    image_ids = np.fromiter(model.images, np.int64, len(model.images))
    num_points2D = np.array([len(im.xys) for im in model.images.values()], np.int64)
    order = np.argsort(image_ids)
    at = order[np.searchsorted(image_ids[order], img).clip(0, len(order) - 1)] if len(order) else img * 0
    ok = (image_ids[at] == img) & (idx < num_points2D[at]) if len(order) else np.zeros(len(img), bool)
    if not np.all(ok):
        k = int(np.argmin(ok))
        owner = np.repeat([p.point3D_id for p in points], [len(p.image_ids) for p in points])[k]
        raise ValueError(f"{paths[2]}: point {owner}: track: (image {int(img[k])}, point2D_idx {int(idx[k])}) "
                         f"is not a keypoint in {paths[1]}")


def read_model(path: str, ext: str | None = None) -> ColmapModel:
    """Read ``cameras``, ``images``, ``points3D`` from a folder (ext ".bin" or ".txt"; None: whichever
    exists, binary first) and check that every id an image or a track names exists.

    >>> model = read_model("data/scene/sparse")
    >>> len(model.cameras), len(model.images), len(model.points3D)
    (1, 8, 3000)
    """
    if ext is None:
        ext = ".bin" if os.path.exists(os.path.join(path, "cameras.bin")) else ".txt"
    if ext not in _READERS:
        raise ValueError(f"ext: expected '.bin' or '.txt', got {ext!r}")
    paths = tuple(os.path.join(path, name + ext) for name in _FILES)
    model = ColmapModel(*(read(p) for read, p in zip(_READERS[ext], paths)))
    _check_references(model, paths)
    return model


def write_model(model: ColmapModel, path: str, ext: str = ".bin") -> None:
    """Write a :class:`ColmapModel` to a folder (created if missing): all three files are built and
    checked first, then renamed into place, so a bad record leaves the folder as it was."""
    if ext not in _ENCODERS:
        raise ValueError(f"ext: expected '.bin' or '.txt', got {ext!r}")
    os.makedirs(path, exist_ok=True)
    paths = [os.path.join(path, name + ext) for name in _FILES]
    _replace_all({p: encode(records, p) for encode, records, p in zip(_ENCODERS[ext], model, paths)})
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
    from the images' (q, t) via ``lie.quaternion_to_matrix``. With ``half_pixel`` (the default)
    the principal point moves by -0.5 into mlxgeom's pixel convention (pixel centres at integers,
    ``x = x_colmap - 0.5``): COLMAP keypoints (``ColmapImage.xys``) must move too before they
    meet these cameras; :func:`model_keypoints` returns them moved.

    >>> model = read_model("data/scene/sparse")
    >>> cams, ids = model_to_cameras(model)
    >>> cams.batch_shape, float(cams.K[0, 0, 2]), float(model.cameras[1].params[2])
    ((8,), 319.5, 320.0)
    """
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
    shift = HALF_PIXEL if half_pixel else 0.0
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


class ModelKeypoints(NamedTuple):
    """A model's keypoints, padded to the longest image, in the pixel convention of
    :func:`model_to_cameras` (``x = x_colmap - 0.5`` when ``half_pixel``).

    ``pixels`` (I, N, 2); ``valid`` (I, N) bool, False on padding; ``point_index`` (I, N) int32,
    the row of the keypoint's 3D point in :func:`model_points`' arrays, -1 where it has none
    (or is padding); ``point3D_ids`` (I, N) np.int64, the COLMAP ids, -1 likewise.
    """

    pixels: mx.array
    valid: mx.array
    point_index: mx.array
    point3D_ids: np.ndarray


def model_keypoints(model: ColmapModel, image_ids: list[int] | None = None, half_pixel: bool = True,
                    dtype: mx.Dtype = mx.float32) -> ModelKeypoints:
    """The keypoints (``xys``) of the images ``image_ids`` (default: all, sorted, the order of
    :func:`model_to_cameras`), moved into the same pixel convention as the cameras that
    :func:`model_to_cameras` builds with the same ``half_pixel``.

    COLMAP's pixel centres sit at +0.5 against mlxgeom's (``x = x_colmap - 0.5``); cameras and
    keypoints must move together, or every ray misses its point by half a pixel. A keypoint
    with a 3D point unprojects onto it: ``cams.unproject(kp.pixels, depth)`` ~ ``xyz[kp.point_index]``.

    >>> model = read_model("data/scene/sparse")
    >>> cams, ids = model_to_cameras(model)
    >>> kp = model_keypoints(model, ids)
    >>> kp.pixels.shape == (8, max(len(im.xys) for im in model.images.values()), 2)
    True
    >>> round(float(kp.pixels[0, 0, 0]) - float(model.images[int(ids[0])].xys[0, 0]), 4)
    -0.5
    """
    ids = sorted(model.images) if image_ids is None else [int(i) for i in image_ids]
    images = [model.images[i] for i in ids]
    n = max((len(im.xys) for im in images), default=0)
    xy = np.zeros((len(ids), n, 2))
    pid = np.full((len(ids), n), -1, np.int64)
    valid = np.zeros((len(ids), n), bool)
    for b, im in enumerate(images):
        xy[b, : len(im.xys)], pid[b, : len(im.xys)], valid[b, : len(im.xys)] = im.xys, im.point3D_ids, True
    rows = np.fromiter(model.points3D, np.int64, len(model.points3D))
    rows.sort()
    index = np.searchsorted(rows, pid).clip(0, max(len(rows) - 1, 0))
    known = (pid >= 0) & (rows[index] == pid) if len(rows) else np.zeros_like(valid)
    if np.any((pid >= 0) & ~known):
        raise ValueError(f"model_keypoints: point3D_ids {np.unique(pid[(pid >= 0) & ~known])[:5].tolist()} "
                         "are not in model.points3D")
    shift = HALF_PIXEL if half_pixel else 0.0
    return ModelKeypoints(mx.array(xy - shift, dtype=dtype), mx.array(valid),
                          mx.array(np.where(known, index, -1).astype(np.int32)), pid)


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
    shift = HALF_PIXEL if half_pixel else 0.0
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
        rgb = np.zeros(xyz.shape, np.int64) if points_rgb is None else np.asarray(points_rgb).reshape(-1, 3)
        if rgb.dtype.kind not in "iu" or np.any((rgb < 0) | (rgb > 255)):
            raise ValueError(f"cameras_to_model: points_rgb must be integers in 0..255, got {rgb.dtype}")
        rgb = rgb.astype(np.uint8)
        for j in range(len(xyz)):
            points[j + 1] = ColmapPoint3D(j + 1, xyz[j], rgb[j], 0.0, np.zeros(0, np.int64), np.zeros(0, np.int64))
    return ColmapModel(cams, images, points)
