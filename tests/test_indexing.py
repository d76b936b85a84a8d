"""mlxgeom/_indexing.py: take_rows against mx.take_along_axis, and the solvers' gathers all of one kind
(each distinct gather specialisation is a module of NVRTC work on a CUDA first call)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import mlxgeom as mg
from mlxgeom._indexing import take, take_index_values, take_rows

K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])


@pytest.mark.parametrize("a_shape,axis,idx_shape", [
    ((4, 7, 3), 1, (4, 5)), ((1, 7, 3), 1, (4, 5)), ((4, 7), -1, (4, 5)), ((2, 3, 7, 2, 2), 2, (2, 3, 4)),
    ((3, 1, 7), -1, (3, 5, 2)), ((7, 2), 0, (3,)), ((2, 7, 3), -2, (1, 2, 6)),
])
@pytest.mark.parametrize("dtype", [mx.float32, mx.int32, mx.uint32, mx.bool_])
def test_take_rows_equals_take_along_axis(a_shape, axis, idx_shape, dtype):
    rng = np.random.default_rng(len(a_shape))
    a = mx.array(rng.standard_normal(a_shape) * 10).astype(dtype)
    idx = mx.array(rng.integers(0, a_shape[axis], idx_shape).astype(np.uint32))
    got = take_rows(a, idx, axis)
    pos = axis % len(a_shape)
    rest = a_shape[pos + 1:]
    pad = (1,) * (len(idx_shape) - 1 - pos)  # take_along_axis wants a's batch of idx's length
    ref = mx.take_along_axis(a.reshape(*pad, *a_shape), idx.reshape(*idx.shape, *([1] * len(rest))), axis=len(pad) + pos)
    assert got.dtype == a.dtype and mx.array_equal(got, mx.broadcast_to(ref, got.shape)).item()


def test_take_rows_gradient_is_the_take_along_axis_one():
    a = mx.array(np.random.default_rng(0).standard_normal((3, 5, 2)), dtype=mx.float32)
    idx = mx.array([[0, 0, 4], [1, 2, 3], [4, 4, 4]])
    w = mx.arange(18, dtype=mx.float32).reshape(3, 3, 2)
    got = mx.grad(lambda x: mx.sum(take_rows(x, idx, 1) * w))(a)
    ref = mx.grad(lambda x: mx.sum(mx.take_along_axis(x, idx[..., None], axis=1) * w))(a)
    assert mx.array_equal(got, ref).item()


def test_take_keeps_the_value_dtype():
    assert take(mx.array([True, False]), mx.array([1, 0], dtype=mx.int64), 0).tolist() == [False, True]
    got = take(mx.array([7, 0xFFFFFFFE], dtype=mx.uint32), mx.array([1], dtype=mx.uint32), 0)
    assert got.dtype == mx.uint32 and got.tolist() == [0xFFFFFFFE]
    big = mx.array([1, (1 << 40) + 3], dtype=mx.int64)
    assert take(big, mx.array([1]), 0).tolist() == [(1 << 40) + 3]


def test_take_index_values_is_exact_below_its_bound():
    values = mx.array([0, (1 << 24) - 1, 12345677], dtype=mx.int32)
    got = take_index_values(values, mx.array([1, 2, 0]), 0, bound=1 << 24)
    assert got.dtype == mx.int32 and got.tolist() == [(1 << 24) - 1, 12345677, 0]
    big = mx.array([(1 << 30) + 1], dtype=mx.int32)
    assert take_index_values(big, mx.array([0]), 0, bound=1 << 31).tolist() == [(1 << 30) + 1]


def _pairs(b, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform([-1, -1, 4], [1, 1, 6], (b, n, 3))
    x2 = x + np.array([0.3, 0.0, 0.1])
    c1, c2 = ((x / x[..., 2:]) @ K.T)[..., :2], ((x2 / x2[..., 2:]) @ K.T)[..., :2]
    return x, mx.array(c1, mx.float32), mx.array(c2, mx.float32)


def _solver_calls():
    x, c1, c2 = _pairs(2, 40, 0)
    k, key = mx.array(K, mx.float32), mx.random.key(0)
    views = mg.calibration.synthetic.synthetic_views(num_views=4)
    ba = mg.sfm.synthetic_problem(4, 40, 3.0, noise=0.5, seed=0)
    return {
        "find_homography": lambda: mg.find_homography(c1, c2, method="ransac", key=key),
        "solve_pnp_ransac": lambda: mg.solve_pnp_ransac(mx.array(x, mx.float32), c1, k, key=key),
        "find_essential_matrix": lambda: mg.find_essential_matrix(c1, c2, k, max_trials=64, key=key),
        "find_fundamental_matrix": lambda: mg.find_fundamental_matrix(c1, c2, method="ransac", max_trials=64, key=key),
        "bundle_adjust": lambda: mg.bundle_adjust(ba.cameras, ba.poses, ba.points, ba.observations,
                                                  point_index=ba.point_index, camera_index=ba.camera_index, max_iters=2),
        "calibrate_camera": lambda: mg.calibrate_camera(views[0], views[1], (640, 480)),
    }


@pytest.mark.parametrize("name", list(_solver_calls()))
def test_solvers_gather_only_float32_values_with_int32_indices(name, monkeypatch):
    seen = set()

    def key(values, indices):
        indices = indices if isinstance(indices, tuple) else (indices,)
        arrays = [i for i in indices if isinstance(i, mx.array)]
        if arrays:
            seen.add((values.dtype, *(i.dtype for i in arrays)))

    getitem, mx_take = mx.array.__getitem__, mx.take
    monkeypatch.setattr(mx.array, "__getitem__", lambda self, i: (key(self, i), getitem(self, i))[1])
    monkeypatch.setattr(mx, "take", lambda a, i, *r, **kw: (key(a, i), mx_take(a, i, *r, **kw))[1])
    monkeypatch.setattr(mx, "take_along_axis", lambda *a, **kw: pytest.fail("take_along_axis: its own specialisation"))
    monkeypatch.setenv("MLXGEOM_COMPILE", "0")
    mx.eval(_solver_calls()[name]())
    assert seen == {(mx.float32, mx.int32)}, seen
