"""Reading and writing COLMAP's cameras / images / points3D files, text and binary. Private: the
public names are re-exported by :mod:`mlxgeom.camera.colmap`, whose docstring states the contract.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
import warnings
from typing import Callable

import numpy as np

from ._colmap_records import (
    _MODEL_BY_ID,
    CAMERA_MODELS,
    ColmapCamera,
    ColmapImage,
    ColmapPoint3D,
    Fail,
    _add,
    _check_all,
    _check_camera,
    _check_image,
    _check_points,
    _failer,
    _gather_points,
    _Points,
    _points_dict,
)


class ColmapHeaderWarning(UserWarning):
    """A text file's ``# Number of ...`` header disagrees with its records (COLMAP ignores it too)."""


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

    def take(self, size: int, field: str) -> int:
        """Start of the next ``size`` bytes, refused when the file has fewer left."""
        left = len(self.data) - self.pos
        if size > left:
            raise self.fail(field, f"truncated: {size} bytes needed at byte {self.pos}, {left} left")
        self.pos += size
        return self.pos - size

    def unpack(self, st: struct.Struct, field: str) -> tuple:
        return st.unpack_from(self.data, self.take(st.size, field))

    def count(self, min_size: int, field: str) -> int:
        """A uint64 count, refused before anything is allocated when its records cannot fit."""
        (n,) = self.unpack(_COUNT, field)
        left = len(self.data) - self.pos
        if n * min_size > left:
            raise self.fail(field, f"{n} records need at least {n * min_size} bytes, {left} left")
        return n

    def array(self, dtype: np.dtype, n: int, field: str) -> np.ndarray:
        return np.frombuffer(self.data, dtype, n, self.take(n * dtype.itemsize, field))

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
# a point's fixed part including its track length (51 bytes, packed as in the file)
_POINT = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"), ("track_length", "<u8")])
_XY_ID = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
_TRACK = np.dtype([("image_id", "<u4"), ("point2D_idx", "<u4")])


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
    f = _Binary(path)
    n = f.count(_POINT.itemsize, "num_points3D")
    starts, lengths = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i in range(n):  # only the walk is per record; the checks below are numpy passes over all
        f.where = f"point {i} at byte {f.pos}"
        starts[i] = f.take(_POINT.itemsize - 8, "point3D_id, xyz, rgb, error")
        lengths[i] = m = f.count(_TRACK.itemsize, "track_length")
        f.take(m * _TRACK.itemsize, "track")
    f.done(n, "num_points3D")
    offsets = np.r_[0, np.cumsum(lengths)]
    head = _gather_bytes(f.data, starts, _POINT)
    track = _gather_bytes(f.data, _element_starts(starts + _POINT.itemsize, offsets, _TRACK.itemsize), _TRACK)
    t = _Points(head["id"], head["xyz"], head["rgb"], head["error"], offsets, track["image_id"], track["point2D_idx"])
    _check_points(t, lambda k: _failer(path, f"point {k} at byte {int(starts[k])}"))
    return _points_dict(t)


def _element_starts(first: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """Byte offsets of every element of variable-length runs: run k starts at ``first[k]``."""
    lengths = np.diff(offsets)
    return np.repeat(first, lengths) + size * (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths))


def _gather_bytes(data: bytes, starts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Records of ``dtype`` at byte offsets ``starts`` (already bounds-checked) as one array."""
    raw = np.frombuffer(data, np.uint8)
    return raw[starts[:, None] + np.arange(dtype.itemsize)].view(dtype).reshape(len(starts))


def _text_lines(path: str) -> list[bytes]:
    """A text file's lines as bytes (COLMAP names are bytes; split on ASCII whitespace only)."""
    lines = _read_bytes(path).split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _numbers(tokens: list[bytes], dtype: type, field: str, fail: Fail) -> np.ndarray:
    try:  # Python's own parsers: several times faster than numpy's bytes-array astype
        return np.fromiter(map(float if dtype == np.float64 else int, tokens), dtype, len(tokens))
    except (ValueError, OverflowError) as e:
        raise fail(field, f"not a number: {e}") from None


def _header_check(lines: list[bytes], what: str, found: int, path: str) -> None:
    for line in lines:
        if not line.startswith(b"#"):  # the header is the comment block on top
            return
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
    lines, heads, tracks, linenos = _text_lines(path), [], [], []
    for k, s in _data_lines(lines):
        e = s.split()
        if len(e) < 8 or len(e) % 2:
            raise _failer(path, f"line {k + 1}")("POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]",
                                                f"{len(e)} values: expected 8 and then (IMAGE_ID, POINT2D_IDX) pairs")
        heads.append(e[:8])
        tracks.append(e[8:])
        linenos.append(k + 1)
    fail_at = lambda r: _failer(path, f"line {linenos[r]}")  # noqa: E731
    floats = _parse_rows([h[1:4] + h[7:8] for h in heads], np.float64, "X, Y, Z, ERROR", fail_at).reshape(-1, 4)
    ints = _parse_rows([h[0:1] + h[4:7] for h in heads], np.int64, "POINT3D_ID, R, G, B", fail_at).reshape(-1, 4)
    track = _parse_rows(tracks, np.int64, "TRACK", fail_at).reshape(-1, 2)
    offsets = np.r_[0, np.cumsum([len(t) // 2 for t in tracks])].astype(np.int64)
    t = _Points(ints[:, 0], floats[:, :3], ints[:, 1:], floats[:, 3], offsets, track[:, 0], track[:, 1])
    _check_points(t, fail_at)
    _header_check(lines, "points", len(heads), path)
    return _points_dict(t)


def _parse_rows(rows: list[list[bytes]], dtype: type, field: str, fail_at: Callable[[int], Fail]) -> np.ndarray:
    """All rows' tokens parsed in one numpy pass; on failure row by row, to name the line."""
    flat = [tok for row in rows for tok in row]
    try:
        return _numbers(flat, dtype, field, _failer("", ""))
    except ValueError:
        for r, row in enumerate(rows):
            _numbers(row, dtype, field, fail_at(r))
        raise


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
        out += [_CAMERA.pack(c.camera_id, CAMERA_MODELS[c.model][0], c.width, c.height),
                c.params.astype("<f8").tobytes()]
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
        keypoints = zip(im.xys.tolist(), im.point3D_ids.tolist())
        out.append("\n" + "".join(f"{_g(x)} {_g(y)} {p} " for (x, y), p in keypoints))
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
    t = _gather_points(points, path)
    mean = len(t.image_ids) / len(t.ids) if len(t.ids) else 0.0
    out = ["# 3D point list with one line of data per point:\n",
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n",
           f"# Number of points: {len(t.ids)}, mean track length: {_g(mean)}\n"]
    pairs = [f"{i} {j}" for i, j in zip(t.image_ids.tolist(), t.point2D_idxs.tolist())]
    off = t.offsets.tolist()
    for k, (pid, (x, y, z), (r, g, b), err) in enumerate(zip(t.ids.tolist(), t.xyz.tolist(), t.rgb.tolist(),
                                                               t.error.tolist())):
        out.append(f"{pid} {_g(x)} {_g(y)} {_g(z)} {r} {g} {b} {_g(err)} {' '.join(pairs[off[k]:off[k + 1]])}\n")
    return "".join(out).encode()


def _encode_points3D_binary(points: dict, path: str) -> bytes:
    t = _gather_points(points, path)
    lengths = np.diff(t.offsets)
    head = np.zeros(len(t.ids), _POINT)
    head["id"], head["xyz"], head["rgb"], head["error"], head["track_length"] = t.ids, t.xyz, t.rgb, t.error, lengths
    track = np.zeros(len(t.image_ids), _TRACK)
    track["image_id"], track["point2D_idx"] = t.image_ids, t.point2D_idxs
    out = np.zeros(_COUNT.size + head.nbytes + track.nbytes, np.uint8)
    out[: _COUNT.size] = np.frombuffer(_COUNT.pack(len(head)), np.uint8)
    starts = _COUNT.size + _POINT.itemsize * np.arange(len(head)) + _TRACK.itemsize * t.offsets[:-1]
    out[starts[:, None] + np.arange(_POINT.itemsize)] = head.view(np.uint8).reshape(-1, _POINT.itemsize)
    elements = _element_starts(starts + _POINT.itemsize, t.offsets, _TRACK.itemsize)
    out[elements[:, None] + np.arange(_TRACK.itemsize)] = track.view(np.uint8).reshape(-1, _TRACK.itemsize)
    return out.tobytes()


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

