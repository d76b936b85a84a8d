"""The library's compiled cores (mlxgeom/_compiled.py) against the same cores run eagerly
(``MLXGEOM_COMPILE=0``), and under the user's own mx.compile (two batch sizes), mx.grad and mx.vmap."""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import camera, lie, linalg
from mlxgeom._compiled import compiled, eager
from mlxgeom.solve.ransac import _msac


def _spd(b: int, n: int) -> mx.array:
    m = mx.random.normal((b, n, n), key=mx.random.key(n))
    return m @ m.swapaxes(-1, -2) + n * mx.eye(n)


def _general(b: int, n: int) -> mx.array:
    return mx.random.normal((b, n, n), key=mx.random.key(10 + n)) + 3 * mx.eye(n)


def _vec(b: int, n: int, seed: int = 0, scale: float = 1.0) -> mx.array:
    return scale * mx.random.normal((b, n), key=mx.random.key(100 + seed))


_K = mx.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
_LENS = mx.array([-0.28, 0.07, 1e-4, -2e-4, 0.01])

# name -> (public function, batch size -> its arguments)
CASES: dict[str, tuple[Callable[..., Any], Callable[[int], tuple[mx.array, ...]]]] = {
    "det2": (linalg.det, lambda b: (_general(b, 2),)),
    "det3": (linalg.det, lambda b: (_general(b, 3),)),
    "det4": (linalg.det, lambda b: (_general(b, 4),)),
    "inv3": (linalg.inv, lambda b: (_general(b, 3),)),
    "inv4": (linalg.inv, lambda b: (_general(b, 4),)),
    "inv_ex4": (lambda a: linalg.inv_ex(a)[0] * linalg.inv_ex(a)[1][..., None, None], lambda b: (_general(b, 4),)),
    "solve3": (linalg.solve, lambda b: (_general(b, 3), _vec(b, 3))),
    "matrix_exp3": (linalg.matrix_exp, lambda b: (0.5 * _general(b, 3),)),
    "matrix_exp4_squarings": (lambda a: linalg.matrix_exp(a, max_squarings=4), lambda b: (_general(b, 4),)),
    "solve_spd5": (linalg.solve_spd, lambda b: (_spd(b, 5), _vec(b, 5))),
    "matmul": (linalg.matmul, lambda b: (_general(b, 3), _general(b, 4)[..., :3, :2])),
    "so3_exp": (lie.so3_exp, lambda b: (_vec(b, 3),)),
    "so3_log": (lie.so3_log, lambda b: (lie.so3_exp(_vec(b, 3)),)),
    "so3_act": (lie.so3_act, lambda b: (lie.so3_exp(_vec(b, 3)), _vec(b, 3, seed=1))),
    "so3_compose": (lie.so3_compose, lambda b: (lie.so3_exp(_vec(b, 3)), lie.so3_exp(_vec(b, 3, seed=1)))),
    "se3_exp": (lie.se3_exp, lambda b: (_vec(b, 6),)),
    "se3_log": (lie.se3_log, lambda b: (lie.se3_exp(_vec(b, 6)),)),
    "se3_act": (lie.se3_act, lambda b: (lie.se3_exp(_vec(b, 6)), _vec(b, 3, seed=1))),
    "se3_compose": (lie.se3_compose, lambda b: (lie.se3_exp(_vec(b, 6)), lie.se3_exp(_vec(b, 6, seed=1)))),
    "sl3_exp": (lie.sl3_exp, lambda b: (_vec(b, 8, scale=0.3),)),
    "sl3_log": (lie.sl3_log, lambda b: (lie.sl3_exp(_vec(b, 8, scale=0.3)),)),
    "sl3_act": (lie.sl3_act, lambda b: (lie.sl3_exp(_vec(b, 8, scale=0.3)), _vec(b, 3, seed=1))),
    "sl3_compose": (lie.sl3_compose, lambda b: (lie.sl3_exp(_vec(b, 8, scale=0.3)), lie.sl3_exp(_vec(b, 8, seed=1)))),
    # 5-coefficient OpenCV lens (the undistortion runs eagerly, by the first-call policy of _compiled.py).
    "undistort_points": (lambda p: camera.undistort_points(p, _K, _LENS)[0],
                         lambda b: (mx.array([[320.0, 240.0]]) + 200.0 * _vec(b, 2),)),
    "project_points": (lambda x, pose: camera.project_points(x, _K, pose, _LENS).pixels,
                       lambda b: ((_vec(b, 3) + mx.array([0.0, 0.0, 6.0]))[:, None],
                                  lie.se3_exp(0.1 * _vec(b, 6, seed=2)))),
    "unproject_points": (lambda p, z: camera.unproject_points(p, z, _K, None, _LENS),
                         lambda b: (mx.array([[320.0, 240.0]]) + 200.0 * _vec(b, 2), 2.0 + mx.abs(_vec(b, 1))[..., 0])),
}
# Public functions whose cores run eagerly (mlxgeom/_compiled.py's first-call policy): checked
# under the user's compile, autodiff and vmap, but not against themselves.
EAGER = {"matrix_exp3", "matrix_exp4_squarings", "undistort_points"}


def _eager(monkeypatch, fn, *args):
    monkeypatch.setenv("MLXGEOM_COMPILE", "0")
    try:
        return fn(*args)
    finally:
        monkeypatch.delenv("MLXGEOM_COMPILE")


def _close(x: mx.array, y: mx.array, dtype=mx.float32) -> None:
    # Within a few roundings of the compute dtype (g++ may contract a*b+c into one FMA).
    tol = 64 * float(np.finfo(np.float64 if dtype == mx.float64 else np.float32).eps)
    np.testing.assert_allclose(np.array(x), np.array(y), rtol=tol, atol=tol)


def _scalar_loss(fn):
    return lambda *args: mx.sum(mx.sin(fn(*args)))


@pytest.mark.parametrize("name", [n for n in CASES if n not in EAGER])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float64])
def test_compiled_core_matches_eager(name, dtype, monkeypatch):
    fn, make = CASES[name]
    with mx.stream(mx.cpu):
        args = tuple(a.astype(dtype) for a in make(7))
        _close(fn(*args), _eager(monkeypatch, fn, *args), dtype)


@pytest.mark.parametrize("name", CASES)
def test_compiled_core_under_user_compile_two_batch_sizes(name):
    fn, make = CASES[name]
    user = mx.compile(fn)
    for b in (3, 11):
        args = make(b)
        _close(user(*args), fn(*args))


@pytest.mark.parametrize("name", CASES)
def test_compiled_core_gradient_matches_eager(name, monkeypatch):
    fn, make = CASES[name]
    args = make(5)
    grad = mx.grad(_scalar_loss(fn), argnums=tuple(range(len(args))))
    ours, eager = grad(*args), _eager(monkeypatch, grad, *args)
    for g, h in zip(ours, eager):
        assert bool(mx.all(mx.isfinite(g)))
        np.testing.assert_allclose(np.array(g), np.array(h), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_compiled_core_under_vmap(name):
    fn, make = CASES[name]
    args = make(4)
    # Mapping the batch axis away and back gives the batched call's result.
    _close(mx.vmap(fn)(*args), fn(*args))


def test_msac_scoring_compiled_matches_eager_and_user_compile(monkeypatch):
    # ransac._msac takes (B, H, M) errors, (B, M) masks and (B,) thresholds: no vmap form, so checked apart.
    def make(b):
        e2 = mx.abs(_vec(b * 5 * 40, 1)).reshape(b, 5, 40)
        return e2, _vec(b * 40, 1).reshape(b, 40) > -0.5, mx.full((b,), 0.8)
    args = make(3)
    _close(_msac(*args), _eager(monkeypatch, _msac, *args))
    user = mx.compile(_msac)
    for b in (2, 6):
        _close(user(*make(b)), _msac(*make(b)))


def test_eager_block_runs_the_plain_function():
    traces = []

    @compiled
    def plus_one(x):
        traces.append(x.shape)
        return x + 1

    x = mx.arange(3.0)
    for _ in range(2):
        _close(plus_one(x), x + 1)
    compiled_traces = len(traces)
    with eager():
        for _ in range(2):
            _close(plus_one(x), x + 1)
    # The compiled function traced its Python body once; inside eager() the body runs at every call.
    assert compiled_traces == 1 and len(traces) == 3
    _close(plus_one(x), x + 1)
    assert len(traces) == 3
