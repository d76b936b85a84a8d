"""solve_spd / solve_spd_ex (unrolled Cholesky) against float64 numpy.linalg.solve.

Bound: ||x - x_ref|| <= 20 n eps cond(A) ||x_ref|| (measured: below 2 n eps cond(A)).
"""

import mlx.core as mx
import numpy as np
import pytest
from helpers import FLOAT_DTYPES, assert_device_safe, to_np
from hypothesis import given
from hypothesis import strategies as st

from mlxgeom import linalg

EPS = {mx.float32: 1.1920929e-07, mx.float64: 2.220446049250313e-16}


def spd(shape, n, seed, cond=100.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((*shape, n, n)))
    w = np.geomspace(1.0, 1.0 / cond, n) * rng.uniform(0.5, 2.0, (*shape, 1))
    return q @ (w[..., :, None] * np.swapaxes(q, -1, -2))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", range(1, 13))
def test_solution_matches_numpy(n, dtype):
    a = mx.array(spd((30,), n, seed=n), dtype=dtype)
    a_np = to_np(a)
    b_np = np.random.default_rng(50 + n).standard_normal((30, n))
    x, ok = linalg.solve_spd_ex(a, mx.array(b_np, dtype=dtype))
    assert x.shape == (30, n) and x.dtype == dtype and ok.shape == (30,) and bool(mx.all(ok))
    ref = np.linalg.solve(a_np, b_np[..., None])[..., 0]
    err = np.linalg.norm(to_np(x) - ref, axis=-1)
    bound = 20 * n * EPS[dtype] * np.linalg.cond(a_np) * np.linalg.norm(ref, axis=-1)
    assert np.all(err <= bound)


def test_matrix_right_hand_sides_and_broadcasting():
    a_np = spd((4, 1), 6, seed=3)
    b_np = np.random.default_rng(4).standard_normal((1, 5, 6, 2))
    x = linalg.solve_spd(mx.array(a_np), mx.array(b_np))
    assert x.shape == (4, 5, 6, 2)
    ref = np.linalg.solve(a_np, b_np)
    np.testing.assert_allclose(to_np(x), ref, atol=1e-5 * np.abs(ref).max())
    # one A (1, n, n) against a batch of vectors (b.ndim == a.ndim - 1)
    v_np = np.random.default_rng(5).standard_normal((7, 6))
    xv, ok = linalg.solve_spd_ex(mx.array(a_np[0]), mx.array(v_np))
    assert xv.shape == (7, 6) and ok.shape == (7,)
    ref = np.linalg.solve(a_np[0, 0], v_np.T).T
    np.testing.assert_allclose(to_np(xv), ref, atol=1e-5 * np.abs(ref).max())


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12))
def test_a_times_solution_is_b(seed, n):
    a_np = spd((8,), n, seed, cond=10.0)
    b_np = np.random.default_rng(seed).standard_normal((8, n, 3))
    x = to_np(linalg.solve_spd(mx.array(a_np, dtype=mx.float32), mx.array(b_np, dtype=mx.float32)))
    np.testing.assert_allclose(a_np @ x, b_np, atol=2e-5 * max(1.0, np.abs(b_np).max()) * 10)


def test_failures_are_flagged_nan_and_isolated():
    n = 5
    a_np = spd((5,), n, seed=9)
    a_np[1] = -a_np[1]  # negative definite
    a_np[2] = np.diag([1.0, 2.0, -1e-3, 4.0, 5.0])  # indefinite
    a_np[3, 2, 2] = np.nan
    a_np[4, 0, 4] = a_np[4, 4, 0] = np.inf
    a_np = np.concatenate([a_np, spd((2,), n, seed=10)])
    b_np = np.random.default_rng(11).standard_normal((7, n))
    x, ok = linalg.solve_spd_ex(mx.array(a_np), mx.array(b_np))
    x, ok = to_np(x), np.array(ok)
    assert ok.tolist() == [True, False, False, False, False, True, True]
    assert np.all(np.isnan(x[~ok]))
    np.testing.assert_allclose(x[ok], np.linalg.solve(a_np[ok], b_np[ok][..., None])[..., 0], atol=1e-4)


def test_singular_psd_matrix_is_not_ok():
    v = np.array([1.0, 2.0, 3.0])
    x, ok = linalg.solve_spd_ex(mx.array(np.outer(v, v)), mx.ones(3))
    assert not bool(ok) and np.all(np.isnan(to_np(x)))


def test_empty_batch_and_bad_shapes():
    x, ok = linalg.solve_spd_ex(mx.zeros((0, 4, 4)), mx.zeros((0, 4)))
    assert x.shape == (0, 4) and ok.shape == (0,)
    with pytest.raises(ValueError, match=r"\(\*, n, n\)"):
        linalg.solve_spd(mx.zeros((3, 4)), mx.zeros((3,)))
    with pytest.raises(ValueError, match=r"b: expected shape \(\*, 4\) or \(\*, 4, k\)"):
        linalg.solve_spd(mx.eye(4), mx.zeros((3,)))
    with pytest.raises(ValueError, match="do not broadcast"):
        linalg.solve_spd(mx.zeros((2, 4, 4)), mx.zeros((3, 4)))


def _loss_and_weights(n, k, seed):
    w = mx.array(np.random.default_rng(seed).standard_normal((2, n, k)), dtype=mx.float64)
    return lambda a, b: mx.sum(linalg.solve_spd(a, b) * w)


@pytest.mark.float64
@pytest.mark.parametrize("n", [1, 3, 6, 8])
def test_gradient_matches_central_differences(n):
    rng = np.random.default_rng(60 + n)
    a_np = spd((2,), n, seed=60 + n, cond=20.0)
    b_np = rng.standard_normal((2, n, 2))
    loss = _loss_and_weights(n, 2, 61 + n)
    as64 = lambda x: mx.array(x, dtype=mx.float64)  # noqa: E731
    ga, gb = mx.grad(loss, argnums=(0, 1))(as64(a_np), as64(b_np))
    da, db = rng.standard_normal(a_np.shape), rng.standard_normal(b_np.shape)  # da not symmetric
    h = 1e-6
    fd = (loss(as64(a_np + h * da), as64(b_np + h * db)) - loss(as64(a_np - h * da), as64(b_np - h * db))).item() / (2 * h)
    np.testing.assert_allclose(np.sum(to_np(ga) * da) + np.sum(to_np(gb) * db), fd, rtol=1e-6)
    np.testing.assert_allclose(to_np(ga), np.swapaxes(to_np(ga), -1, -2), atol=1e-12)


def test_gradient_with_broadcast_a_and_masked_failures():
    a_np = spd((), 4, seed=70)
    b_np = np.random.default_rng(71).standard_normal((3, 4))
    ga = mx.grad(lambda a: mx.sum(linalg.solve_spd(a, mx.array(b_np))))(mx.array(a_np[None]))
    assert ga.shape == (1, 4, 4)
    ainv = np.linalg.inv(a_np)
    x = np.linalg.solve(a_np, b_np.T)  # (4, 3)
    gb = ainv @ np.ones((4, 3))
    ref = -0.5 * (gb @ x.T + (gb @ x.T).T)
    np.testing.assert_allclose(to_np(ga)[0], ref, rtol=2e-5, atol=1e-4)
    # a failed entry that the loss masks out gets zero gradient and leaves the others alone
    bad = np.stack([a_np, -a_np])

    def masked(a):
        x, ok = linalg.solve_spd_ex(a, mx.array(b_np[:2]))
        return mx.sum(mx.where(ok[:, None], x, 0.0))

    g = to_np(mx.grad(masked)(mx.array(bad)))
    assert np.all(np.isfinite(g)) and np.all(g[1] == 0)


@pytest.mark.float64
def test_jvp_matches_finite_difference():
    a_np, b_np = spd((2,), 4, seed=80), np.random.default_rng(81).standard_normal((2, 4))
    da_np, db_np = np.random.default_rng(82).standard_normal((2, 2, 4, 4))[0], np.ones((2, 4))
    as64 = lambda x: mx.array(x, dtype=mx.float64)  # noqa: E731
    _, (dx,) = mx.jvp(lambda a, b: linalg.solve_spd(a, b), [as64(a_np), as64(b_np)], [as64(da_np), as64(db_np)])
    h = 1e-6
    fd = (to_np(linalg.solve_spd(as64(a_np + h * da_np), as64(b_np + h * db_np)))
          - to_np(linalg.solve_spd(as64(a_np - h * da_np), as64(b_np - h * db_np)))) / (2 * h)
    np.testing.assert_allclose(to_np(dx), fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n", [3, 8])
def test_solve_spd_is_device_safe(n):
    def make(batch):
        return mx.array(spd((batch,), n, seed=batch), dtype=mx.float32), mx.ones((batch, n))

    assert_device_safe(linalg.solve_spd, make)
    assert_device_safe(linalg.solve_spd_ex, make)
