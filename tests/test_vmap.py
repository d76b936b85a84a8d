"""mx.vmap over public functions equals the batched call (every function takes leading batch axes),
for in_axes/out_axes 0 and 1, unmapped arguments, under mx.compile and through gradients, in float32."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import epipolar, linalg, optim

B0, B1 = 3, 4  # two leading batch axes; vmap maps one of them
_K = mx.array([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])


def _normal(*shape: int, seed: int = 0) -> mx.array:
    return mx.array(np.random.default_rng(seed).normal(size=(B0, B1, *shape)).astype(np.float32))


def _spd(n: int, seed: int = 0) -> mx.array:
    m = _normal(n, n, seed=seed)
    return m @ m.swapaxes(-1, -2) + 0.5 * mx.eye(n)


def _well_conditioned(n: int, seed: int = 0) -> mx.array:
    return mx.eye(n) + 0.3 * _normal(n, n, seed=seed)


def _pnp_scene() -> tuple[mx.array, mx.array]:
    rng = np.random.default_rng(3)
    pw = rng.uniform(-1, 1, size=(B0, B1, 12, 3)) * [2.0, 1.5, 1.5]
    t = rng.normal(size=(B0, B1, 1, 3)) * 0.3 + [0.0, 0.0, 6.0]
    pc = pw @ np.linalg.qr(rng.normal(size=(B0, B1, 3, 3)))[0] + t
    pc[..., 2] = np.abs(pc[..., 2])
    uv = pc[..., :2] / pc[..., 2:] * [500.0, 480.0] + [320.0, 240.0] + rng.normal(0, 0.5, size=(B0, B1, 12, 2))
    return mx.array(pw.astype(np.float32)), mx.array(uv.astype(np.float32))


def _two_views() -> tuple[mx.array, mx.array]:
    rng = np.random.default_rng(4)
    x = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], size=(B0, B1, 20, 3))
    x2 = x + rng.normal(0, 0.5, size=(B0, B1, 1, 3)) + [0.3, 0.0, 0.0]
    k = np.array(_K)
    p1, p2 = (x / x[..., 2:]) @ k.T, (x2 / x2[..., 2:]) @ k.T
    return (mx.array(p1[..., :2].astype(np.float32)),
            mx.array((p2[..., :2] + rng.normal(0, 0.3, size=p2[..., :2].shape)).astype(np.float32)))


def _outputs(result) -> tuple[mx.array, ...]:
    return (result,) if isinstance(result, mx.array) else tuple(result)


# name: (function of arrays returning an array or a tuple of arrays, its arguments with batch (B0, B1),
#        which arguments are mapped (the others are one problem's, shared by the whole batch))
CASES = {
    "det": (linalg.det, lambda: (_well_conditioned(3),), (True,)),
    "inv": (linalg.inv, lambda: (_well_conditioned(4),), (True,)),
    "inv_ex": (linalg.inv_ex, lambda: (_well_conditioned(3),), (True,)),
    "solve": (linalg.solve, lambda: (_well_conditioned(3), _normal(3, 2, seed=1)), (True, True)),
    "solve_shared_matrix": (linalg.solve, lambda: (_well_conditioned(3)[0, 0], _normal(3, 2, seed=1)), (False, True)),
    "solve_spd": (linalg.solve_spd, lambda: (_spd(5), _normal(5, 1, seed=1)), (True, True)),
    "solve_spd_shared_matrix": (linalg.solve_spd, lambda: (_spd(5)[0, 0], _normal(5, 1, seed=1)), (False, True)),
    "solve_spd_ex": (linalg.solve_spd_ex, lambda: (_spd(4), _normal(4, 2, seed=1)), (True, True)),
    "solve_triangular": (lambda a, b: linalg.solve_triangular(mx.tril(a), b),
                         lambda: (_well_conditioned(4), _normal(4, 1, seed=1)), (True, True)),
    "eigh": (linalg.eigh, lambda: (_spd(3),), (True,)),
    "eigh_n6": (linalg.eigh, lambda: (_spd(6),), (True,)),
    "eigh3": (linalg.eigh3, lambda: (_spd(3),), (True,)),
    "eigh_smallest": (lambda a: linalg.eigh_smallest(a, k=2), lambda: (_spd(6),), (True,)),
    "svd3": (linalg.svd3, lambda: (_normal(3, 3),), (True,)),
    "project_to_so3": (linalg.project_to_so3, lambda: (_normal(3, 3),), (True,)),
    "matrix_exp": (linalg.matrix_exp, lambda: (0.5 * _normal(4, 4),), (True,)),
    "qr": (linalg.qr, lambda: (_normal(6, 3),), (True,)),
    "matmul": (linalg.matmul, lambda: (_normal(3, 4), _normal(4, 2, seed=1)), (True, True)),
    "gauss_newton_system": (lambda j0, j1, r, w: linalg.gauss_newton_system([[j0, j1]], [r], w),
                            lambda: (_normal(7), _normal(7, seed=1), _normal(7, seed=2), mx.abs(_normal(7, seed=3))),
                            (True, True, True, True)),
    "solve_pnp": (lambda pw, uv, k: optim.solve_pnp(pw, uv, k), lambda: (*_pnp_scene(), _K), (True, True, False)),
    "solve_pnp_dlt": (lambda pw, uv, k: optim.solve_pnp(pw, uv, k, method="dlt"), lambda: (*_pnp_scene(), _K),
                      (True, True, False)),
    "find_fundamental_matrix": (epipolar.find_fundamental_matrix, _two_views, (True, True)),
}
# Cores with hand-written derivative rules, differentiated through vmap and vmapped through mx.grad.
DIFFERENTIABLE = ["det", "inv", "solve_spd", "solve_spd_shared_matrix", "eigh", "eigh_n6", "eigh_smallest", "svd3",
                  "project_to_so3", "matrix_exp"]


def _vmapped(name: str, in_axis: int, out_axis: int):
    fn, _, mapped = CASES[name]
    in_axes = tuple(in_axis if m else None for m in mapped)
    return mx.vmap(lambda *a: _outputs(fn(*a)), in_axes=in_axes, out_axes=out_axis)


def _assert_same(got, want, in_axis: int, out_axis: int) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = mx.moveaxis(w, in_axis, out_axis)
        assert g.shape == w.shape and g.dtype == w.dtype
        if w.dtype == mx.bool_ or not mx.issubdtype(w.dtype, mx.floating):
            np.testing.assert_array_equal(np.array(g), np.array(w))
        else:
            scale = max(float(mx.max(mx.abs(w))), 1.0)
            np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-4, atol=1e-5 * scale)


AXES = [(0, 0), (1, 1), (1, 0)]


@pytest.mark.parametrize("in_axis,out_axis", AXES)
@pytest.mark.parametrize("name", CASES)
def test_vmap_equals_the_batched_call(name, in_axis, out_axis):
    fn, make, _ = CASES[name]
    args = make()
    want = _outputs(fn(*args))
    for _ in range(2):  # wrong results from out-of-bounds reads vary from run to run
        _assert_same(_vmapped(name, in_axis, out_axis)(*args), want, in_axis, out_axis)


@pytest.mark.parametrize("name", ["eigh", "svd3", "solve_spd_shared_matrix", "solve_pnp"])
def test_vmap_under_compile_equals_the_batched_call_at_two_batch_sizes(name):
    fn, make, mapped = CASES[name]
    compiled = mx.compile(_vmapped(name, 1, 1))
    for stop in (2, B1):
        args = tuple(a[:, :stop] if m else a for a, m in zip(make(), mapped))
        _assert_same(compiled(*args), _outputs(fn(*args)), 1, 1)


def _loss(fn):
    return lambda *a: sum(mx.sum(mx.sin(o)) for o in _outputs(fn(*a)) if mx.issubdtype(o.dtype, mx.floating))


@pytest.mark.parametrize("in_axis", [0, 1])
@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradient_through_vmap_and_vmap_of_gradient_equal_the_batched_gradient(name, in_axis):
    fn, make, mapped = CASES[name]
    args = make()
    argnums = tuple(range(len(args)))
    want = mx.grad(_loss(fn), argnums=argnums)(*args)
    through = mx.grad(_loss(_vmapped(name, in_axis, 0)), argnums=argnums)(*args)
    in_axes = tuple(in_axis if m else None for m in mapped)
    per_problem = mx.vmap(mx.grad(_loss(fn), argnums=argnums), in_axes=in_axes, out_axes=in_axis)(*args)
    for g, v, w, m in zip(through, per_problem, want, mapped):
        assert bool(mx.all(mx.isfinite(w)))
        np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-4, atol=1e-4)
        # an unmapped argument's per-problem gradients come back stacked along the mapped axis
        v = v if m else mx.sum(v, axis=in_axis)
        np.testing.assert_allclose(np.array(v), np.array(w), rtol=1e-4, atol=1e-4)
