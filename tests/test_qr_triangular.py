"""linalg.qr (Gram-Schmidt twice) and linalg.solve_triangular against float64 numpy / scipy."""

import mlx.core as mx
import numpy as np
import pytest
import scipy.linalg
from helpers import FLOAT_DTYPES, assert_device_safe, on_cpu, to_np

from mlxgeom import linalg

EPS = {mx.float32: 1.1920929e-07, mx.float64: 2.220446049250313e-16}


def _tall(shape, m, n, seed, cond=1e3):
    """(*shape, m, n) with singular values spread geometrically from 1 to 1/cond."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((*shape, m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((*shape, n, n)))
    return u @ (np.geomspace(1.0, 1.0 / cond, n)[:, None] * v)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("m,n", [(3, 3), (40, 13), (108, 25), (2160, 19)])
def test_qr_reconstructs_with_orthonormal_q_and_numpys_r(m, n, dtype):
    a = _tall((4,), m, n, seed=m + n)
    with on_cpu(dtype):
        q, r = (to_np(v) for v in linalg.qr(mx.array(a, dtype=dtype)))
    eps, cond = EPS[dtype], 1e3
    assert np.abs(q @ r - a).max() <= 50 * eps
    assert np.abs(np.swapaxes(q, -1, -2) @ q - np.eye(n)).max() <= 50 * eps
    assert np.all(np.tril(r, -1) == 0) and np.all(np.diagonal(r, axis1=-2, axis2=-1) >= 0)
    r_ref = np.linalg.qr(a)[1]
    r_ref *= np.sign(np.diagonal(r_ref, axis1=-2, axis2=-1))[..., :, None]
    assert np.abs(r - r_ref).max() <= 50 * n * eps * cond


def test_qr_of_a_zero_column_has_a_zero_pivot_and_q_column():
    a = _tall((), 30, 5, seed=0)
    a[:, 2] = 0.0
    q, r = (np.array(v) for v in linalg.qr(mx.array(a, dtype=mx.float32)))
    assert r[2, 2] == 0.0 and np.all(q[:, 2] == 0.0) and np.all(np.isfinite(r))
    np.testing.assert_allclose(q @ r, a, atol=1e-6)


def test_qr_gradient_matches_finite_differences():
    a0 = _tall((), 6, 3, seed=1)
    w = np.random.default_rng(2).standard_normal((3, 3))

    def f(a):
        return mx.sum(linalg.qr(a)[1] * mx.array(w))

    def f64(x):
        return mx.array(x, dtype=mx.float64)

    with mx.stream(mx.cpu):
        g = np.array(mx.grad(f)(f64(a0)))
        h, fd = 1e-6, np.zeros_like(a0)
        for idx in np.ndindex(a0.shape):
            d = np.zeros_like(a0)
            d[idx] = h
            fd[idx] = (f(f64(a0 + d)).item() - f(f64(a0 - d)).item()) / (2 * h)
    np.testing.assert_allclose(g, fd, atol=1e-6)


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_solve_triangular_matches_scipy(upper, dtype):
    rng = np.random.default_rng(int(upper))
    a = np.tril(rng.standard_normal((5, 7, 7))) + 4 * np.eye(7)
    a = np.swapaxes(a, -1, -2) if upper else a
    b = rng.standard_normal((5, 7, 3))
    with on_cpu(dtype):
        x = to_np(linalg.solve_triangular(mx.array(a, dtype=dtype), mx.array(b, dtype=dtype), upper=upper))
        xv = to_np(linalg.solve_triangular(mx.array(a, dtype=dtype), mx.array(b[..., 0], dtype=dtype), upper=upper))
    ref = np.stack([scipy.linalg.solve_triangular(a[i], b[i], lower=not upper) for i in range(5)])
    np.testing.assert_allclose(x, ref, atol=100 * EPS[dtype])
    np.testing.assert_allclose(xv, ref[..., 0], atol=100 * EPS[dtype])


def test_solve_triangular_reads_only_its_triangle():
    a = np.tril(np.random.default_rng(3).standard_normal((4, 4))) + 3 * np.eye(4)
    noisy = a + np.triu(np.full((4, 4), 7.0), 1)
    b = np.arange(4.0)
    np.testing.assert_allclose(np.array(linalg.solve_triangular(mx.array(noisy), mx.array(b))),
                               np.linalg.solve(a, b), atol=1e-5)


def test_qr_and_solve_triangular_are_device_safe():
    assert_device_safe(linalg.qr, lambda b: [mx.array(_tall((b,), 9, 4, seed=b), dtype=mx.float32)])
    tri = np.tril(np.random.default_rng(4).standard_normal((4, 4))) + 3 * np.eye(4)
    assert_device_safe(linalg.solve_triangular,
                       lambda b: [mx.array(np.broadcast_to(tri, (b, 4, 4)), dtype=mx.float32), mx.ones((b, 4))])


@pytest.mark.parametrize("m", [4, 8, 12])
def test_null_vector_keeps_the_accuracy_the_normal_matrix_loses(m):
    # rows of rank n - 1 with sigma_{n-1} / sigma_1 = 1e-4: A^T A's gap (1e-8) is below float32's
    # resolution, R's (1e-4) is not
    from mlxgeom.linalg.null_vector import null_vector

    rng = np.random.default_rng(m)
    n = 5 if m == 4 else 9
    u = np.linalg.qr(rng.normal(size=(40, m, m)))[0]
    v = np.linalg.qr(rng.normal(size=(40, n, n)))[0]
    s = np.zeros((40, m, n))
    sv = np.geomspace(1.0, 1e-4, min(m, n - 1))
    s[:, np.arange(len(sv)), np.arange(len(sv))] = sv
    a = u @ s @ v.swapaxes(-1, -2)
    got, sigma, ok = null_vector(mx.array(a, dtype=mx.float32))
    assert np.all(np.array(ok))
    ref = v[:, :, -1]
    cos = np.abs(np.sum(np.array(got, dtype=np.float64) * ref, axis=-1))
    assert np.all(1 - cos < 1e-4)
    np.testing.assert_allclose(np.array(sigma), sv[-1] / np.linalg.norm(sv), rtol=0.05)


def test_null_vector_of_a_two_dimensional_null_space_has_a_rounding_size_sigma():
    from mlxgeom.linalg.null_vector import null_vector

    a = np.random.default_rng(1).normal(size=(7, 9))
    a[:, 7:] = 0.0
    _, sigma, ok = null_vector(mx.array(a, dtype=mx.float32))
    assert ok.item() and sigma.item() < 1e-5
