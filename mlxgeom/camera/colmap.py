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
import re
import struct
import tempfile
import warnings
from typing import Callable, NamedTuple

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
# COLMAP's pixel centres sit at +0.5 against OpenCV's / mlxgeom's: x_mlxgeom = x_colmap - HALF_PIXEL.
HALF_PIXEL = 0.5
_U32, _U64, _I64 = 2**32, 2**64, 2**63


class ColmapHeaderWarning(UserWarning):
    """A text file's ``# Number of ...`` header disagrees with its records (COLMAP ignores it too)."""


class ColmapCamera(NamedTuple):
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # (n,) float64, n = CAMERA_MODELS[model][1]


class ColmapImage(NamedTuple):
    image_id: int
    qvec: np.ndarray  # (4,) wxyz, world-to-camera
    tvec: np.ndarray  # (3,)
    camera_id: int
    name: str  # bytes that are not UTF-8 appear as surrogate escapes (see the module docstring)
    xys: np.ndarray  # (n, 2) float64 keypoints, COLMAP pixel convention: use model_keypoints for mlxgeom's
    point3D_ids: np.ndarray  # (n,) int64, -1 where none


class ColmapPoint3D(NamedTuple):
    point3D_id: int
    xyz: np.ndarray  # (3,) float64
    rgb: np.ndarray  # (3,) uint8
    error: float
    image_ids: np.ndarray  # (m,) int64
    point2D_idxs: np.ndarray  # (m,) int64


class ColmapModel(NamedTuple):
    """A sparse model: dicts keyed by id, as COLMAP's own ``read_write_model.py``."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points3D: dict[int, ColmapPoint3D]


# ----- validation shared by readers and writers ----------------------------------------
Fail = Callable[[str, str], ValueError]  # (field, problem) -> the error to raise


def _failer(path: str, where: str) -> Fail:
    return lambda field, problem: ValueError(f"{path}: {where}: {field}: {problem}")


def _check_model_name(name: str, n: int | None = None) -> None:
    if name not in CAMERA_MODELS:
        raise ValueError(f"unknown COLMAP camera model {name!r}; expected one of {tuple(CAMERA_MODELS)}")
    if n is not None and n != CAMERA_MODELS[name][1]:
        raise ValueError(f"COLMAP model {name} expects {CAMERA_MODELS[name][1]} params, got {n}")


def _int(v: object, lo: int, hi: int, field: str, fail: Fail) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise fail(field, f"expected an integer, got {v!r}")
    if not lo <= int(v) < hi:
        raise fail(field, f"{int(v)} outside [{lo}, {hi})")
    return int(v)


def _floats(v: object, shape: tuple, field: str, fail: Fail) -> np.ndarray:
    """float64 array of ``shape`` (-1: any length), finite; NaN / inf are rejected, never masked."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise fail(field, f"not a float array ({e})") from None
    if a.size == 0 and len(shape) == 2:
        a = a.reshape(0, shape[1])
    if a.ndim != len(shape) or any(s not in (-1, n) for s, n in zip(shape, a.shape)):
        raise fail(field, f"expected shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        k = int(np.flatnonzero(~np.isfinite(a.ravel()))[0])
        raise fail(field, f"non-finite value {a.ravel()[k]} at entry {k} (NaN and inf are rejected)")
    return a


def _ints(v: object, n: int, lo: int, hi: int, field: str, fail: Fail) -> np.ndarray:
    a = np.asarray(v)
    if a.size == 0:
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu" or a.shape != (n,):
        raise fail(field, f"expected an ({n},) integer array, got {a.dtype} {a.shape}")
    if n and (int(a.min()) < lo or int(a.max()) >= hi):
        bad = a[(a < lo) | (a >= hi)][0]
        raise fail(field, f"{int(bad)} outside [{lo}, {hi})")
    return a.astype(np.int64)


def _check_camera(c: ColmapCamera, fail: Fail) -> ColmapCamera:
    cid = _int(c.camera_id, 0, _U32, "camera_id", fail)
    if c.model not in CAMERA_MODELS:
        raise fail("model", f"unknown COLMAP camera model {c.model!r}; expected one of {tuple(CAMERA_MODELS)}")
    params = _floats(c.params, (-1,), "params", fail)
    if len(params) != CAMERA_MODELS[c.model][1]:
        raise fail("params", f"COLMAP model {c.model} expects {CAMERA_MODELS[c.model][1]} params, got {len(params)}")
    return ColmapCamera(cid, c.model, _int(c.width, 0, _U64, "width", fail), _int(c.height, 0, _U64, "height", fail),
                        params)


def _check_name(name: object, fail: Fail) -> bytes:
    if not isinstance(name, str):
        raise fail("name", f"expected a str, got {type(name).__name__}")
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as e:
        raise fail("name", f"{name!r} cannot be stored as bytes ({e.reason})") from None
    if raw != raw.strip() or not raw or any(c in raw for c in b"\0\n\r"):
        raise fail("name", f"{name!r} is empty, has a NUL or line break, or starts or ends with whitespace")
    return raw


def _check_image(im: ColmapImage, fail: Fail) -> ColmapImage:
    iid = _int(im.image_id, 0, _U32, "image_id", fail)
    q = _floats(im.qvec, (4,), "qvec", fail)
    if not np.any(q):
        raise fail("qvec", "the zero quaternion is no rotation")
    t = _floats(im.tvec, (3,), "tvec", fail)
    cid = _int(im.camera_id, 0, _U32, "camera_id", fail)
    _check_name(im.name, fail)
    xys = _floats(im.xys, (-1, 2), "xys", fail)
    pids = _ints(im.point3D_ids, len(xys), -1, _I64, "point3D_ids", fail)
    return ColmapImage(iid, q, t, cid, im.name, xys, pids)


def _check_point(p: ColmapPoint3D, fail: Fail) -> ColmapPoint3D:
    pid = _int(p.point3D_id, 0, _I64, "point3D_id", fail)
    xyz = _floats(p.xyz, (3,), "xyz", fail)
    rgb = _ints(p.rgb, 3, 0, 256, "rgb", fail).astype(np.uint8)
    err = _floats(p.error, (), "error", fail)
    m = len(np.asarray(p.image_ids).reshape(-1))
    img = _ints(p.image_ids, m, 0, _U32, "image_ids", fail)
    idx = _ints(p.point2D_idxs, m, 0, _U32, "point2D_idxs", fail)
    return ColmapPoint3D(pid, xyz, rgb, float(err), img, idx)


def _check_all(records: dict, check: Callable, id_field: str, path: str, kind: str) -> list:
    out = []
    for key, rec in records.items():
        fail = _failer(path, f"{kind} {key!r}")
        try:
            rec = check(rec, fail)
        except AttributeError as e:  # not a Colmap* record
            raise fail(kind, f"not a COLMAP record ({e})") from None
        if getattr(rec, id_field) != key:
            raise fail(id_field, f"{getattr(rec, id_field)} differs from its dict key {key!r}")
        out.append(rec)
    return out


# ----- reading ------------------------------------------------------------------------
def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:  # OSError (missing file, a folder, no permission) names the path itself
        return f.read()


class _Binary:
    """A binary file's bytes and a read position; every read is checked against the bytes left."""

    def __init__(self, path: str):
        self.path, self.data, self.pos, self.where = path, _read_bytes(path), 0, "header"

    def fail(self, field: str, problem: str) -> ValueError:
        return ValueError(f"{self.path}: {self.where}: {field}: {problem}")

    def _take(self, size: int, field: str) -> int:
        left = len(self.data) - self.pos
        if size > left:
            raise self.fail(field, f"truncated: {size} bytes needed at byte {self.pos}, {left} left")
        self.pos += size
        return self.pos - size

    def unpack(self, st: struct.Struct, field: str) -> tuple:
        return st.unpack_from(self.data, self._take(st.size, field))

    def count(self, min_size: int, field: str) -> int:
        """A uint64 count, refused before anything is allocated when its records cannot fit."""
        (n,) = self.unpack(_COUNT, field)
        left = len(self.data) - self.pos
        if n * min_size > left:
            raise self.fail(field, f"{n} records need at least {n * min_size} bytes, {left} left")
        return n

    def array(self, dtype: np.dtype, n: int, field: str) -> np.ndarray:
        return np.frombuffer(self.data, dtype, n, self._take(n * dtype.itemsize, field))

    def cstring(self, field: str) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.fail(field, f"truncated: no NUL terminator after byte {self.pos}")
        raw, self.pos = self.data[self.pos:end], end + 1
        return raw

    def done(self, n: int, kind: str) -> None:
        self.where = "end of file"
        if self.pos != len(self.data):
            raise self.fail(kind, f"{len(self.data) - self.pos} bytes after the {n} records the header counts "
                                  "(header count smaller than the records?)")


_COUNT = struct.Struct("<Q")
_CAMERA = struct.Struct("<IiQQ")
_IMAGE = struct.Struct("<I7dI")
_POINT = struct.Struct("<Q3d3Bd")
_XY_ID = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
_TRACK = np.dtype([("image_id", "<u4"), ("point2D_idx", "<u4")])


def _add(records: dict, rec: tuple, fail: Fail, field: str) -> None:
    if rec[0] in records:
        raise fail(field, f"duplicate id {rec[0]}")
    records[rec[0]] = rec


def read_cameras_binary(path: str) -> dict[int, ColmapCamera]:
    """``cameras.bin`` -> ``{camera_id: ColmapCamera}`` (ValueError naming file, record, field)."""
    f, cams = _Binary(path), {}
    n = f.count(_CAMERA.size + 8 * 3, "num_cameras")
    for i in range(n):
        f.where = f"camera {i} at byte {f.pos}"
        cid, mid, w, h = f.unpack(_CAMERA, "camera_id, model_id, width, height")
        if mid not in _MODEL_BY_ID:
            raise f.fail("model_id", f"unknown COLMAP camera model id {mid}; expected 0..{len(_MODEL_BY_ID) - 1}")
        params = f.array(np.dtype("<f8"), CAMERA_MODELS[_MODEL_BY_ID[mid]][1], "params").astype(np.float64)
        _add(cams, _check_camera(ColmapCamera(cid, _MODEL_BY_ID[mid], w, h, params), f.fail), f.fail, "camera_id")
    f.done(n, "num_cameras")
    return cams


def read_images_binary(path: str) -> dict[int, ColmapImage]:
    """``images.bin`` -> ``{image_id: ColmapImage}`` (ValueError naming file, record, field)."""
    f, images = _Binary(path), {}
    n = f.count(_IMAGE.size + 1 + _COUNT.size, "num_reg_images")
    for i in range(n):
        f.where = f"image {i} at byte {f.pos}"
        iid, *qt, cid = f.unpack(_IMAGE, "image_id, qvec, tvec, camera_id")
        name = f.cstring("name").decode("utf-8", "surrogateescape")
        m = f.count(_XY_ID.itemsize, "num_points2D")
        obs = f.array(_XY_ID, m, "points2D")
        im = ColmapImage(iid, np.array(qt[:4]), np.array(qt[4:]), cid, name, obs["xy"].copy(), obs["id"].copy())
        _add(images, _check_image(im, f.fail), f.fail, "image_id")
    f.done(n, "num_reg_images")
    return images


def read_points3D_binary(path: str) -> dict[int, ColmapPoint3D]:
    """``points3D.bin`` -> ``{point3D_id: ColmapPoint3D}`` (ValueError naming file, record, field)."""
    f, points = _Binary(path), {}
    n = f.count(_POINT.size + _COUNT.size, "num_points3D")
    for i in range(n):
        f.where = f"point {i} at byte {f.pos}"
        pid, x, y, z, r, g, b, err = f.unpack(_POINT, "point3D_id, xyz, rgb, error")
        m = f.count(_TRACK.itemsize, "track_length")
        track = f.array(_TRACK, m, "track")
        p = ColmapPoint3D(pid, np.array([x, y, z]), np.array([r, g, b], np.uint8), err,
                          track["image_id"].astype(np.int64), track["point2D_idx"].astype(np.int64))
        _add(points, _check_point(p, f.fail), f.fail, "point3D_id")
    f.done(n, "num_points3D")
    return points


def _text_lines(path: str) -> list[bytes]:
    """A text file's lines as bytes (COLMAP names are bytes; split on ASCII whitespace only)."""
    lines = _read_bytes(path).split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _numbers(tokens: list[bytes], dtype: type, field: str, fail: Fail) -> np.ndarray:
    try:
        return np.array(tokens, dtype=bytes).astype(dtype) if tokens else np.zeros(0, dtype)
    except (ValueError, OverflowError) as e:
        raise fail(field, f"not a number: {e}") from None


def _header_check(lines: list[bytes], what: str, found: int, path: str) -> None:
    for line in lines:
        m = re.match(rb"#\s*Number of " + what.encode() + rb"\s*:\s*(\d+)", line.strip())
        if m and int(m.group(1)) != found:
            warnings.warn(f"{path}: the header says {int(m.group(1))} {what}, the file holds {found}; "
                          "COLMAP ignores this header, so the records are read", ColmapHeaderWarning, stacklevel=3)
            return


def _data_lines(lines: list[bytes]):
    for k, line in enumerate(lines):
        s = line.strip()
        if s and not s.startswith(b"#"):
            yield k, s


def read_cameras_text(path: str) -> dict[int, ColmapCamera]:
    """``cameras.txt`` -> ``{camera_id: ColmapCamera}`` (ValueError naming file, line, field)."""
    lines, cams = _text_lines(path), {}
    for k, s in _data_lines(lines):
        fail = _failer(path, f"line {k + 1}")
        e = s.split()
        if len(e) < 4:
            raise fail("CAMERA_ID, MODEL, WIDTH, HEIGHT", f"{len(e)} of the 4 fields")
        cid, w, h = _numbers([e[0], e[2], e[3]], int, "CAMERA_ID, WIDTH, HEIGHT", fail).tolist()
        params = _numbers(e[4:], np.float64, "PARAMS", fail)
        cam = ColmapCamera(cid, e[1].decode("ascii", "replace"), w, h, params)
        _add(cams, _check_camera(cam, fail), fail, "CAMERA_ID")
    _header_check(lines, "cameras", len(cams), path)
    return cams


def read_images_text(path: str) -> dict[int, ColmapImage]:
    """``images.txt`` -> ``{image_id: ColmapImage}``; every image line needs its keypoint line."""
    lines, images, k = _text_lines(path), {}, 0
    while k < len(lines):
        s = lines[k].strip()
        if not s or s.startswith(b"#"):
            k += 1
            continue
        fail = _failer(path, f"line {k + 1}")
        e = s.split(None, 9)
        if len(e) < 10:
            raise fail("IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", f"{len(e)} of the 10 fields")
        iid, cid = _numbers([e[0], e[8]], int, "IMAGE_ID, CAMERA_ID", fail).tolist()
        qt = _numbers(e[1:8], np.float64, "QW, QX, QY, QZ, TX, TY, TZ", fail)
        if k + 1 >= len(lines):
            raise fail("POINTS2D", "the image line is the last line: its keypoint line (may be empty) is missing")
        fail = _failer(path, f"line {k + 2}")
        pts = lines[k + 1].split()
        if len(pts) % 3:
            raise fail("POINTS2D", f"{len(pts)} values, not a multiple of 3 (X, Y, POINT3D_ID)")
        xy = _numbers(pts[0::3] + pts[1::3], np.float64, "POINTS2D X, Y", fail).reshape(2, -1).T.copy()
        pids = _numbers(pts[2::3], np.int64, "POINTS2D POINT3D_ID", fail)
        im = ColmapImage(iid, qt[:4], qt[4:], cid, e[9].decode("utf-8", "surrogateescape"), xy, pids)
        _add(images, _check_image(im, _failer(path, f"lines {k + 1}-{k + 2}")), fail, "IMAGE_ID")
        k += 2
    _header_check(lines, "images", len(images), path)
    return images


def read_points3D_text(path: str) -> dict[int, ColmapPoint3D]:
    """``points3D.txt`` -> ``{point3D_id: ColmapPoint3D}`` (ValueError naming file, line, field)."""
    lines, points = _text_lines(path), {}
    for k, s in _data_lines(lines):
        fail = _failer(path, f"line {k + 1}")
        e = s.split()
        if len(e) < 8 or len(e) % 2:
            raise fail("POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]",
                       f"{len(e)} values: expected 8 and then (IMAGE_ID, POINT2D_IDX) pairs")
        xyze = _numbers(e[1:4] + e[7:8], np.float64, "X, Y, Z, ERROR", fail)
        ints = _numbers(e[0:1] + e[4:7] + e[8:], np.int64, "POINT3D_ID, R, G, B, TRACK", fail)
        p = ColmapPoint3D(int(ints[0]), xyze[:3], ints[1:4], xyze[3], ints[4::2], ints[5::2])
        _add(points, _check_point(p, fail), fail, "POINT3D_ID")
    _header_check(lines, "points", len(points), path)
    return points


# ----- writing ------------------------------------------------------------------------
def _g(x: float) -> str:
    return "%.17g" % x  # what COLMAP's stream.precision(17) prints: lossless, and the same bytes


def _encode_cameras_text(cameras: dict, path: str) -> bytes:
    out = ["# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n",
           f"# Number of cameras: {len(cameras)}\n"]
    for c in _check_all(cameras, _check_camera, "camera_id", path, "camera"):
        out.append(" ".join([str(c.camera_id), c.model, str(c.width), str(c.height), *map(_g, c.params)]) + "\n")
    return "".join(out).encode()


def _encode_cameras_binary(cameras: dict, path: str) -> bytes:
    out = [_COUNT.pack(len(cameras))]
    for c in _check_all(cameras, _check_camera, "camera_id", path, "camera"):
        out += [_CAMERA.pack(c.camera_id, CAMERA_MODELS[c.model][0], c.width, c.height), c.params.astype("<f8").tobytes()]
    return b"".join(out)


def _encode_images_text(images: dict, path: str) -> bytes:
    checked = _check_all(images, _check_image, "image_id", path, "image")
    mean = sum(int(np.sum(im.point3D_ids >= 0)) for im in checked) / len(checked) if checked else 0.0
    out = ["# Image list with two lines of data per image:\n",
           "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n#   POINTS2D[] as (X, Y, POINT3D_ID)\n",
           f"# Number of images: {len(checked)}, mean observations per image: {_g(mean)}\n"]
    for im in checked:
        if im.name != im.name.strip(" \t\v\f"):
            raise ValueError(f"{path}: image {im.image_id}: name: {im.name!r} starts or ends with whitespace, "
                             "which a text file cannot keep")
        out.append(" ".join([str(im.image_id), *map(_g, im.qvec), *map(_g, im.tvec), str(im.camera_id), im.name]))
        # COLMAP leaves a space after the last keypoint; the same bytes keep files byte-identical.
        out.append("\n" + "".join(f"{_g(x)} {_g(y)} {p} " for (x, y), p in zip(im.xys.tolist(), im.point3D_ids.tolist())))
        out.append("\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def _encode_images_binary(images: dict, path: str) -> bytes:
    out = [_COUNT.pack(len(images))]
    for im in _check_all(images, _check_image, "image_id", path, "image"):
        obs = np.empty(len(im.xys), _XY_ID)
        obs["xy"], obs["id"] = im.xys, im.point3D_ids
        out += [_IMAGE.pack(im.image_id, *im.qvec, *im.tvec, im.camera_id), im.name.encode("utf-8", "surrogateescape"),
                b"\0", _COUNT.pack(len(obs)), obs.tobytes()]
    return b"".join(out)


def _encode_points3D_text(points: dict, path: str) -> bytes:
    checked = _check_all(points, _check_point, "point3D_id", path, "point")
    mean = sum(len(p.image_ids) for p in checked) / len(checked) if checked else 0.0
    out = ["# 3D point list with one line of data per point:\n",
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n",
           f"# Number of points: {len(checked)}, mean track length: {_g(mean)}\n"]
    for p in checked:
        track = " ".join(f"{i} {j}" for i, j in zip(p.image_ids.tolist(), p.point2D_idxs.tolist()))
        out.append(" ".join([str(p.point3D_id), *map(_g, p.xyz), *map(str, p.rgb.tolist()), _g(p.error)]) + f" {track}\n")
    return "".join(out).encode()


def _encode_points3D_binary(points: dict, path: str) -> bytes:
    out = [_COUNT.pack(len(points))]
    for p in _check_all(points, _check_point, "point3D_id", path, "point"):
        track = np.empty(len(p.image_ids), _TRACK)
        track["image_id"], track["point2D_idx"] = p.image_ids, p.point2D_idxs
        out += [_POINT.pack(p.point3D_id, *p.xyz, *p.rgb.tolist(), p.error), _COUNT.pack(len(track)), track.tobytes()]
    return b"".join(out)


def _replace_all(files: dict[str, bytes]) -> None:
    """Write every file to a temporary sibling, then rename them all: no half-written file, ever."""
    mask = os.umask(0)
    os.umask(mask)
    temps: dict[str, str] = {}
    try:
        for path, data in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                       dir=os.path.dirname(os.path.abspath(path)))
            temps[path] = tmp
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 -> what open() would have given
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_cameras_text(cameras: dict[int, ColmapCamera], path: str) -> None:
    """``{camera_id: ColmapCamera}`` -> ``cameras.txt``, atomically (ValueError for a bad record)."""
    _replace_all({path: _encode_cameras_text(cameras, path)})


def write_cameras_binary(cameras: dict[int, ColmapCamera], path: str) -> None:
    """``{camera_id: ColmapCamera}`` -> ``cameras.bin``, atomically (ValueError for a bad record)."""
    _replace_all({path: _encode_cameras_binary(cameras, path)})


def write_images_text(images: dict[int, ColmapImage], path: str) -> None:
    """``{image_id: ColmapImage}`` -> ``images.txt``, atomically (ValueError for a bad record)."""
    _replace_all({path: _encode_images_text(images, path)})


def write_images_binary(images: dict[int, ColmapImage], path: str) -> None:
    """``{image_id: ColmapImage}`` -> ``images.bin``, atomically (ValueError for a bad record)."""
    _replace_all({path: _encode_images_binary(images, path)})


def write_points3D_text(points: dict[int, ColmapPoint3D], path: str) -> None:
    """``{point3D_id: ColmapPoint3D}`` -> ``points3D.txt``, atomically (ValueError for a bad record)."""
    _replace_all({path: _encode_points3D_text(points, path)})


def write_points3D_binary(points: dict[int, ColmapPoint3D], path: str) -> None:
    """``{point3D_id: ColmapPoint3D}`` -> ``points3D.bin``, atomically (ValueError for a bad record)."""
    _replace_all({path: _encode_points3D_binary(points, path)})


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
    num_points2D = {i: len(im.xys) for i, im in model.images.items()}
    for p in model.points3D.values():
        for i, j in zip(p.image_ids.tolist(), p.point2D_idxs.tolist()):
            if j >= num_points2D.get(i, 0):
                raise ValueError(f"{paths[2]}: point {p.point3D_id}: track: (image {i}, point2D_idx {j}) is not "
                                 f"a keypoint in {paths[1]}")


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
        rgb = np.zeros_like(xyz, dtype=np.uint8) if points_rgb is None else np.asarray(points_rgb, np.uint8).reshape(-1, 3)
        for j in range(len(xyz)):
            points[j + 1] = ColmapPoint3D(j + 1, xyz[j], rgb[j], 0.0, np.zeros(0, np.int64), np.zeros(0, np.int64))
    return ColmapModel(cams, images, points)
