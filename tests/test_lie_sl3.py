"""SL(3): basis, exp against scipy expm, inverse-scaling-and-squaring log against scipy logm."""

import mlx.core as mx
import numpy as np
import pytest
import scipy.linalg
from helpers import FLOAT_DTYPES, on_cpu, to_np

from mlxgeom import lie


def _h(x):
    with on_cpu():
        hats = to_np(lie.sl3_hat(mx.array(x, dtype=mx.float64)))
    return np.stack([scipy.linalg.expm(m) for m in hats])


def test_hat_uses_the_benhimane_malis_generators():
    basis = to_np(lie.sl3_hat(mx.eye(8)))
    e = lambda i, j: np.eye(3)[:, [i]] @ np.eye(3)[[j], :]  # noqa: E731
    ref = [e(0, 2), e(1, 2), e(0, 1), e(1, 0), np.diag([1.0, -1, 0]), np.diag([0.0, -1, 1]), e(2, 0), e(2, 1)]
    np.testing.assert_array_equal(basis, np.stack(ref))
    np.testing.assert_allclose(to_np(lie.sl3_vee(mx.array(basis + 0.3 * np.eye(3)))), np.eye(8), atol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_exp_matches_scipy_expm_and_has_unit_determinant(dtype):
    x = np.random.default_rng(0).standard_normal((32, 8)) * 0.7
    got = to_np(lie.sl3_exp(mx.array(x, dtype=dtype)))
    ref = _h(x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=(2e-5 if dtype == mx.float32 else 1e-12) * np.abs(ref).max())
    np.testing.assert_allclose(np.linalg.det(got), 1.0, atol=1e-5 if dtype == mx.float32 else 1e-12)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("scale", [1e-7, 0.5, 2.5])
def test_log_matches_scipy_logm_across_scales(scale, dtype):
    x = np.random.default_rng(1).standard_normal((16, 8)) * scale
    h = _h(x) * np.random.default_rng(2).uniform(0.5, 3.0, (16, 1, 1))  # any scale is accepted
    got, ok = lie.sl3_log_ex(mx.array(h, dtype=dtype))
    assert np.all(to_np(ok))
    tol = (2e-5 if dtype == mx.float32 else 1e-11) * max(1.0, scale * 4) ** 2
    ref = np.stack([scipy.linalg.logm(m / np.cbrt(np.linalg.det(m))).real for m in h])
    np.testing.assert_allclose(to_np(lie.sl3_hat(got)), ref, atol=tol, rtol=0)
    # Where x itself is the principal logarithm, log recovers it.
    principal = np.abs(to_np(lie.sl3_hat(mx.array(x, dtype=mx.float64))) - ref).max(axis=(1, 2)) < 1e-8
    assert principal.sum() >= 4
    np.testing.assert_allclose(to_np(got)[principal], x[principal], atol=tol, rtol=0)


def test_log_flags_matrices_without_a_real_logarithm_and_keeps_other_entries():
    good = _h(np.full((1, 8), 0.1))[0]
    bad = np.diag([-2.0, -0.5, 1.0])  # eigenvalues on the negative real axis
    x, ok = lie.sl3_log_ex(mx.array(np.stack([good, bad, good])))
    assert to_np(ok).tolist() == [1.0, 0.0, 1.0]
    np.testing.assert_allclose(to_np(x)[[0, 2]], np.full((2, 8), 0.1), atol=2e-5)


def test_log_gradient_is_finite_at_identity_and_inverts_exp():
    w = mx.array(np.arange(1.0, 9.0), dtype=mx.float64)
    for x0 in (mx.zeros(8, dtype=mx.float64), mx.array(np.linspace(-0.5, 0.5, 8), dtype=mx.float64)):
        g = mx.grad(lambda x: mx.sum(w * lie.sl3_log(lie.sl3_exp(x))))(x0)
        np.testing.assert_allclose(to_np(g), to_np(w), atol=1e-8)


def test_right_jacobian_matches_central_differences():
    x = np.random.default_rng(3).standard_normal((4, 8)) * 0.5
    h = 1e-5
    jr = to_np(lie.sl3_right_jacobian(mx.array(x, dtype=mx.float64)))
    h0_inv = np.linalg.inv(_h(x))
    for k in range(8):
        e = np.eye(8)[k] * h
        lp = to_np(lie.sl3_log(mx.array(h0_inv @ _h(x + e), dtype=mx.float64)))
        lm = to_np(lie.sl3_log(mx.array(h0_inv @ _h(x - e), dtype=mx.float64)))
        np.testing.assert_allclose((lp - lm) / (2 * h), jr[:, :, k], atol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_left_jacobian_matches_vjp_of_exp(dtype):
    # <C, dH> = <C H^T, hat(J_l d)>, so vjp(C) = J_l^T hat^T(C H^T) with hat^T(M)_i = <M, A_i>.
    x = mx.array(np.random.default_rng(4).standard_normal((4, 8)) * 0.5, dtype=dtype)
    c = mx.array(np.random.default_rng(5).standard_normal((4, 3, 3)), dtype=dtype)
    h = lie.sl3_exp(x)
    _, (g,) = mx.vjp(lie.sl3_exp, [x], [c])
    m = to_np(c) @ np.swapaxes(to_np(h), -1, -2)
    hat_t = np.einsum("bij,kij->bk", m, to_np(lie.sl3_hat(mx.eye(8))))
    ref = np.einsum("bki,bk->bi", to_np(lie.sl3_left_jacobian(x)), hat_t)
    np.testing.assert_allclose(to_np(g), ref, atol=5e-5 if dtype == mx.float32 else 1e-11)


@pytest.mark.parametrize("fn, shape", [(lie.sl3_exp, (3, 3)), (lie.sl3_hat, (6,)), (lie.sl3_log, (4, 4)), (lie.sl3_vee, (2, 3)), (lie.sl3_adjoint, (8,))])
def test_bad_shapes_raise_value_error(fn, shape):
    with pytest.raises(ValueError, match=r"\(\*, [38]"):
        fn(mx.zeros(shape))
