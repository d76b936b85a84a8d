"""COLMAP records (cameras, images, points3D) and the rules every record obeys, checked once for
readers and writers alike. Private: the public names are re-exported by :mod:`mlxgeom.camera.colmap`.

points3D, the one file with millions of records, is checked as columns (:class:`_Points`), so reading
and writing it costs numpy passes, not a Python check per point.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

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


class ColmapCamera(NamedTuple):
    """One line of ``cameras.txt`` / record of ``cameras.bin``: intrinsics in COLMAP's pixel convention."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # (n,) float64, n = CAMERA_MODELS[model][1]


class ColmapImage(NamedTuple):
    """One registered image: world-to-camera pose, camera, name and keypoints with their 3D point ids."""

    image_id: int
    qvec: np.ndarray  # (4,) wxyz, world-to-camera
    tvec: np.ndarray  # (3,)
    camera_id: int
    name: str  # bytes that are not UTF-8 appear as surrogate escapes (see the module docstring)
    xys: np.ndarray  # (n, 2) float64 keypoints, COLMAP pixel convention: use model_keypoints for mlxgeom's
    point3D_ids: np.ndarray  # (n,) int64, -1 where none


class ColmapPoint3D(NamedTuple):
    """One 3D point: position, colour, reprojection error and its track of (image_id, keypoint index)."""

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
    if not raw or any(c in raw for c in b"\0\n\r"):
        raise fail("name", f"{name!r} is empty or has a NUL or a line break")
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


def _check_all(records: dict, check: Callable, id_field: str, path: str, kind: str) -> list:
    """Every record of a dict checked (and converted) by ``check``; its id must be its key."""
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


def _add(records: dict, rec: tuple, fail: Fail, field: str) -> None:
    if rec[0] in records:
        raise fail(field, f"duplicate id {rec[0]}")
    records[rec[0]] = rec


class _Points(NamedTuple):
    """points3D as columns: P points, T track elements; point k's track is ``offsets[k]:offsets[k + 1]``."""

    ids: np.ndarray  # (P,) integer
    xyz: np.ndarray  # (P, 3) float64
    rgb: np.ndarray  # (P, 3) integer
    error: np.ndarray  # (P,) float64
    offsets: np.ndarray  # (P + 1,) int64
    image_ids: np.ndarray  # (T,) integer
    point2D_idxs: np.ndarray  # (T,) integer


def _any_per_row(mask: np.ndarray) -> np.ndarray:
    return mask.any(-1) if mask.ndim > 1 else mask


def _check_points(t: _Points, fail_at: Callable[[int], Fail]) -> None:
    """The rules of a points3D record, on every record at once; the first bad point is named."""
    point_of = lambda k: int(np.searchsorted(t.offsets, k, "right")) - 1  # noqa: E731 (track element -> point)
    for field, a, lo, hi, row in (("point3D_id", t.ids, 0, _I64, int), ("rgb", t.rgb, 0, 256, int),
                                  ("image_ids", t.image_ids, 0, _U32, point_of),
                                  ("point2D_idxs", t.point2D_idxs, 0, _U32, point_of)):
        bad = _any_per_row((a < lo) | (a >= hi))
        if bad.any():
            k = int(np.argmax(bad))
            raise fail_at(row(k))(field, f"{a[k].tolist()} outside [{lo}, {hi})")
    for field, a in (("xyz", t.xyz), ("error", t.error)):
        bad = _any_per_row(~np.isfinite(a))
        if bad.any():
            k = int(np.argmax(bad))
            raise fail_at(k)(field, f"non-finite value in {a[k].tolist()} (NaN and inf are rejected)")
    order = np.argsort(t.ids, kind="stable")
    repeat = order[1:][t.ids[order][1:] == t.ids[order][:-1]]
    if len(repeat):
        k = int(repeat.min())
        raise fail_at(k)("point3D_id", f"duplicate id {int(t.ids[k])}")


def _as_integers(a: np.ndarray, field: str) -> np.ndarray:
    if a.size and a.dtype.kind not in "iu":
        raise TypeError(f"{field}: expected integers, got {a.dtype}")
    return a if a.size else a.astype(np.int64)


def _points_table(records: list) -> _Points:
    """Columns of a list of ColmapPoint3D (TypeError / ValueError when a record does not fit)."""
    n = len(records)
    ids = _as_integers(np.array([p.point3D_id for p in records]).reshape(n), "point3D_id")
    xyz = np.array([p.xyz for p in records], dtype=np.float64).reshape(n, 3)
    rgb = _as_integers(np.array([p.rgb for p in records]).reshape(n, 3), "rgb")
    error = np.array([p.error for p in records], dtype=np.float64).reshape(n)
    img = [np.asarray(p.image_ids).reshape(-1) for p in records]
    idx = [np.asarray(p.point2D_idxs).reshape(-1) for p in records]
    lengths = np.array([len(a) for a in img], dtype=np.int64)
    if np.any(lengths != [len(a) for a in idx]):
        raise ValueError("image_ids and point2D_idxs differ in length")

    def flat(arrays: list, field: str) -> np.ndarray:
        arrays = [a for a in arrays if a.size]
        return _as_integers(np.concatenate(arrays) if arrays else np.zeros(0, np.int64), field)

    return _Points(ids, xyz, rgb, error, np.r_[0, np.cumsum(lengths)], flat(img, "image_ids"),
                   flat(idx, "point2D_idxs"))


def _gather_points(points: dict, path: str) -> _Points:
    """A dict of ColmapPoint3D as checked columns (ValueError naming the file, point and field)."""
    keys, records = list(points), list(points.values())
    fail_at = lambda k: _failer(path, f"point {keys[k]!r}")  # noqa: E731
    try:
        t = _points_table(records)
    except (AttributeError, TypeError, ValueError, OverflowError):
        for k, rec in enumerate(records):  # one at a time, to name the record that does not fit
            try:
                _points_table([rec])
            except (AttributeError, TypeError, ValueError, OverflowError) as e:
                raise fail_at(k)("record", f"not a ColmapPoint3D of the documented shapes and dtypes ({e})") from None
        raise
    _check_points(t, fail_at)
    for k, (key, pid) in enumerate(zip(keys, t.ids.tolist())):
        if key != pid:
            raise fail_at(k)("point3D_id", f"{pid} differs from its dict key {key!r}")
    return t


def _points_dict(t: _Points) -> dict[int, ColmapPoint3D]:
    img, idx, off = t.image_ids.astype(np.int64), t.point2D_idxs.astype(np.int64), t.offsets.tolist()
    rgb, err = t.rgb.astype(np.uint8), t.error.tolist()
    return {pid: ColmapPoint3D(pid, t.xyz[k], rgb[k], err[k], img[off[k]:off[k + 1]], idx[off[k]:off[k + 1]])
            for k, pid in enumerate(t.ids.tolist())}
