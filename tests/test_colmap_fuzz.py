"""Fuzzing the COLMAP readers: truncated, miscounted, mangled and random files.

The contract (docs/conventions.md, "COLMAP models: what the readers accept"): a reader either returns
a model or raises ValueError (OSError for I/O) whose message names the file; nothing else escapes,
and no count is trusted before the bytes it promises are there (memory stays bounded by the file).
"""

from __future__ import annotations

import struct
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_camera_colmap import random_model

from mlxgeom.camera import colmap

READERS = {"cameras.bin": colmap.read_cameras_binary, "images.bin": colmap.read_images_binary,
           "points3D.bin": colmap.read_points3D_binary, "cameras.txt": colmap.read_cameras_text,
           "images.txt": colmap.read_images_text, "points3D.txt": colmap.read_points3D_text}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, bytes]:
    """A small valid model (every camera model, keypoints, tracks, a non-UTF-8 name) as bytes."""
    model = random_model(21)
    model.images[11] = model.images[11]._replace(name=b"caf\xe9.jpg".decode("utf-8", "surrogateescape"))
    folder = tmp_path_factory.mktemp("model")
    colmap.write_model(model, str(folder), ".bin")
    colmap.write_model(model, str(folder), ".txt")
    return {name: (folder / name).read_bytes() for name in READERS}


def read_quietly(read, path: Path) -> str:
    """``read(path)``: "ok", or "error" for a ValueError naming the file; any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", colmap.ColmapHeaderWarning)
        try:
            read(str(path))
        except ValueError as e:
            assert str(path) in str(e), e
            return "error"
    return "ok"


def outcome(path: Path, data: bytes) -> str:
    """Write ``data`` as the file ``path`` and read it with the reader its name calls for."""
    path.write_bytes(data)
    return read_quietly(READERS[path.name], path)


def binary_count_offsets(name: str, data: bytes) -> list[int]:
    """Byte offsets of every uint64 count in a binary file (header, keypoints per image, track lengths)."""
    offsets, pos = [0], 8
    for _ in range(struct.unpack_from("<Q", data)[0]):
        if name == "cameras.bin":
            model_id = struct.unpack_from("<i", data, pos + 4)[0]
            pos += 24 + 8 * next(n for mid, n in colmap.CAMERA_MODELS.values() if mid == model_id)
        elif name == "images.bin":
            pos = data.index(b"\0", pos + 64) + 1
            offsets.append(pos)
            pos += 8 + 24 * struct.unpack_from("<Q", data, pos)[0]
        else:
            pos += 43
            offsets.append(pos)
            pos += 8 + 8 * struct.unpack_from("<Q", data, pos)[0]
    assert pos == len(data)
    return offsets


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_truncation_at_every_byte_is_a_value_error(tmp_path, files, name):
    data = files[name]
    assert outcome(tmp_path / name, data) == "ok"
    assert all(outcome(tmp_path / name, data[:n]) == "error" for n in range(len(data)))


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_wrong_counts_are_value_errors_that_allocate_nothing(tmp_path, files, name):
    data = files[name]
    for at in binary_count_offsets(name, data):
        n = struct.unpack_from("<Q", data, at)[0]
        for wrong in (n + 1, n - 1, 2**31, 2**63, 2**64 - 1):
            if not 0 <= wrong < 2**64:
                continue
            bad = bytearray(data)
            struct.pack_into("<Q", bad, at, wrong)
            tracemalloc.start()
            result = outcome(tmp_path / name, bytes(bad))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert result == "error", (at, n, wrong)
            assert peak < 1_000_000 + 20 * len(data), (at, wrong, peak)  # bounded by the file, not the count


@pytest.mark.parametrize("name", list(READERS))
def test_random_bytes_and_byte_flips_give_value_errors_only(tmp_path, files, name):
    rng = np.random.default_rng(sum(map(ord, name)))
    data = files[name]
    results = []
    for _ in range(100):  # random files, some with a plausible small header count
        junk = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        if name.endswith(".bin") and rng.random() < 0.5:
            junk = struct.pack("<Q", int(rng.integers(0, 4))) + junk
        results.append(outcome(tmp_path / name, junk))
    for _ in range(150):  # a valid file with 1 to 4 bytes changed
        bad = bytearray(data)
        for at in rng.integers(0, len(bad), int(rng.integers(1, 5))):
            bad[at] = int(rng.integers(0, 256))
        results.append(outcome(tmp_path / name, bytes(bad)))
    assert "error" in results


BAD_TOKENS = ["nan", "inf", "-inf", "1e999", "-1", "-2", "300", "x", "1.5", "99999999999999999999999", "", "\xff"]


@pytest.mark.parametrize("name", ["cameras.txt", "images.txt", "points3D.txt"])
def test_mangled_text_lines_give_value_errors_only(tmp_path, files, name):
    rng = np.random.default_rng(sum(map(ord, name)))
    lines = files[name].split(b"\n")
    data_rows = [k for k, line in enumerate(lines) if line and not line.startswith(b"#")]
    results = []
    for _ in range(250):
        bad = list(lines)
        k = int(rng.choice(data_rows))
        tokens = bad[k].split(b" ")
        action = rng.integers(0, 5)
        j = int(rng.integers(0, len(tokens)))
        if action == 0:  # one field replaced by something COLMAP cannot mean
            tokens[j] = BAD_TOKENS[int(rng.integers(0, len(BAD_TOKENS)))].encode("latin-1")
        elif action == 1:  # a field lost
            del tokens[j]
        elif action == 2:  # the line cut short
            tokens = tokens[:j]
        elif action == 3:  # a line lost (an image line without its keypoints, ...)
            tokens = None
        else:  # a line repeated (duplicate ids)
            bad.insert(k, bad[k])
        if action < 3:
            bad[k] = b" ".join(tokens)
        elif action == 3:
            del bad[k]
        results.append(outcome(tmp_path / name, b"\n".join(bad)))
    assert results.count("error") > 120


@pytest.mark.parametrize("name", ["cameras.txt", "images.txt", "points3D.txt"])
def test_text_truncated_anywhere_gives_a_model_or_a_value_error(tmp_path, files, name):
    data = files[name]
    cuts = {n for k in range(len(data)) if data[k:k + 1] == b"\n" for n in (k - 1, k, k + 1, k + 2)}
    cuts |= set(range(0, len(data), 7))  # every line end and a byte either side, plus a stride through the lines
    results = [outcome(tmp_path / name, data[:n]) for n in sorted(cuts) if 0 <= n < len(data)]
    assert "error" in results and "ok" in results


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_random_non_utf8_names_survive_write_and_read(tmp_path, ext):
    rng = np.random.default_rng(3)
    model = random_model(22)
    for iid in model.images:
        raw = bytes(rng.integers(1, 256, int(rng.integers(1, 24)), dtype=np.uint8)).replace(b"\n", b"_")
        raw = raw.replace(b"\r", b"_").strip() or b"x"
        model.images[iid] = model.images[iid]._replace(name=raw.decode("utf-8", "surrogateescape"))
    colmap.write_model(model, str(tmp_path), ext)
    back = colmap.read_model(str(tmp_path), ext)
    assert [im.name for im in back.images.values()] == [im.name for im in model.images.values()]


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_read_model_of_mangled_folders_gives_value_errors_only(tmp_path, files, ext):
    """Byte flips anywhere in the three files, read together: cross-file references are checked too."""
    rng = np.random.default_rng(7)
    names = [n for n in files if n.endswith(ext)]
    errors = 0
    for name in names:
        (tmp_path / name).write_bytes(files[name])
    for _ in range(100):
        name = names[int(rng.integers(0, 3))]
        bad = bytearray(files[name])
        for at in rng.integers(0, len(bad), int(rng.integers(1, 3))):
            bad[at] = int(rng.integers(0, 256))
        (tmp_path / name).write_bytes(bytes(bad))
        errors += read_quietly(lambda folder: colmap.read_model(folder, ext), tmp_path) == "error"
        (tmp_path / name).write_bytes(files[name])
    assert errors > 20
