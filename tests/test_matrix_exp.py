"""Tests for mlxgeom.linalg.matrix_exp (Bader-Blanes-Casas Taylor, per-matrix scaling).

References: scipy.linalg.expm (float64) and an extended-precision Taylor series
(numpy longdouble, 64-bit mantissa on x86), because scipy's own float64 error reaches
~1e-12 for non-normal matrices of norm 5-10.
"""

from __future__ import annotations

from math import factorial

import mlx.core as mx
import numpy as np
import pytest
import scipy.linalg

from mlxgeom.linalg.matrix_exp import DEFAULT_MAX_SQUARINGS, _expm, coefficient_table, matrix_exp
from tests.helpers import FLOAT_DTYPES, assert_device_safe, to_np

SIZES = (1, 2, 3, 4, 6, 8, 9)
SMALL_NORMS = np.logspace(-8, 1, 10)
F32_BOUND = 2e-5
F64_BOUND = 1e-12
# Measured maxima over the sampled matrices at 1-norms 30..1e3 (this file's seeds and
# a wider offline sweep of n = 2..9), with a 2-3x margin.
# Measured: float32 3.5e-4 (skew) / 1.3e-4 (stable), float64 4.5e-13 / 6.1e-13.
LARGE_BOUND = {"float32": {"skew": 1e-3, "stable": 1e-3}, "float64": {"skew": 2e-12, "stable": 2e-12}}


def _rel(e: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Frobenius relative error per matrix."""
    err = np.linalg.norm((e - ref).astype(np.float64), axis=(-2, -1))
    return err / np.linalg.norm(ref.astype(np.float64), axis=(-2, -1))


def _expm_extended(a: np.ndarray) -> np.ndarray:
    """exp(a) by a 30-term Taylor series in long double after scaling to 1-norm <= 1/16."""
    x = a.astype(np.longdouble)
    norm = float(np.abs(a).sum(-2).max()) if a.size else 0.0
    s = max(0, int(np.ceil(np.log2(max(norm, 1e-300) * 16))))
    x = x / np.longdouble(2.0) ** s
    term = np.broadcast_to(np.eye(a.shape[-1], dtype=np.longdouble), x.shape).copy()
    out = term.copy()
    for k in range(1, 30):
        term = np.matmul(term, x) / k
        out = out + term
    for _ in range(s):
        out = np.matmul(out, out)
    return out.astype(np.float64)


def _samples(rng: np.random.Generator, n: int, norms: np.ndarray, kind: str, per_norm: int = 3) -> np.ndarray:
    """Matrices with the given 1-norms: 'random' Gaussian, 'skew' (rotations), 'stable'
    (Gaussian shifted so its rightmost eigenvalue has real part 0, so exp stays finite)."""
    a = rng.standard_normal((len(norms), per_norm, n, n))
    if kind == "skew":
        a = a - a.swapaxes(-1, -2)
    if n == 1 and kind == "skew":
        a = rng.standard_normal((len(norms), per_norm, 1, 1))
    if kind == "stable":
        a = a - np.linalg.eigvals(a).real.max(-1)[..., None, None] * np.eye(n)
    a = a / np.abs(a).sum(-2).max(-1)[..., None, None] * norms[:, None, None, None]
    return a.reshape(-1, n, n)


def _mx(a: np.ndarray, dtype: mx.Dtype) -> mx.array:
    return mx.array(a, dtype=mx.float64) if dtype == mx.float64 else mx.array(a.astype(np.float32))


def _input_as_used(a: np.ndarray, dtype: mx.Dtype) -> np.ndarray:
    """The float64 values the function actually sees (float32 inputs are rounded first)."""
    return a if dtype == mx.float64 else a.astype(np.float32).astype(np.float64)


# ---------------------------------------------------------------- the polynomials


@pytest.mark.parametrize("index, degree", list(enumerate((1, 2, 4, 8, 12, 18))))
def test_coefficient_table_gives_taylor_polynomial_of_its_degree(index, degree):
    p = np.polynomial.polynomial
    powers = [np.eye(7)[k] for k in (0, 1, 2, 3, 6)]  # I, A, A^2, A^3, A^6 as coefficient vectors
    rows = coefficient_table()[index]
    b = [sum(c * q for c, q in zip(row, powers)) for row in rows]
    z = p.polyadd(p.polymul(b[0], b[4]), b[3])
    t = np.zeros(40)
    full = p.polyadd(b[1], p.polymul(p.polyadd(b[2], z), z))
    t[: len(full)] = full
    taylor = np.array([1.0 / factorial(k) for k in range(degree + 1)])
    assert np.all(t[degree + 1 :] == 0.0)
    np.testing.assert_allclose(t[: degree + 1], taylor, rtol=1e-14, atol=0)


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_matches_scipy_expm_for_norms_up_to_10(dtype, n):
    rng = np.random.default_rng(n)
    a = np.concatenate([_samples(rng, n, SMALL_NORMS, kind) for kind in ("random", "skew")])
    a_used = _input_as_used(a, dtype)
    e = to_np(matrix_exp(_mx(a, dtype)))
    ref_scipy = scipy.linalg.expm(a_used)
    if dtype == mx.float32:
        assert _rel(e, ref_scipy).max() <= F32_BOUND
    else:
        ref = _expm_extended(a_used)
        scipy_err = _rel(ref_scipy, ref)
        assert _rel(e, ref).max() <= F64_BOUND
        # scipy itself is off by up to ~1e-12 here; ours agrees with it within that plus the bound.
        assert np.all(_rel(e, ref_scipy) <= F64_BOUND + scipy_err)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", ["skew", "stable"])
@pytest.mark.parametrize("n", [2, 4, 9])
def test_error_stays_bounded_up_to_norm_1e3(dtype, kind, n):
    rng = np.random.default_rng(10 + n)
    a = _samples(rng, n, np.array([30.0, 100.0, 300.0, 1000.0]), kind, per_norm=4)
    a_used = _input_as_used(a, dtype)
    e = to_np(matrix_exp(_mx(a, dtype)))
    assert np.all(np.isfinite(e))
    assert _rel(e, _expm_extended(a_used)).max() <= LARGE_BOUND[str(dtype).split(".")[-1]][kind]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_large_n_uses_blocked_products_and_matches_scipy(dtype):
    a = _samples(np.random.default_rng(3), 20, np.array([0.1, 5.0]), "random", per_norm=2)
    a_used = _input_as_used(a, dtype)
    err = _rel(to_np(matrix_exp(_mx(a, dtype))), _expm_extended(a_used)).max()
    assert err <= (F32_BOUND if dtype == mx.float32 else F64_BOUND)


def test_low_precision_inputs_are_computed_in_float32_and_cast_back():
    a = _samples(np.random.default_rng(4), 3, np.array([0.5, 4.0]), "random")
    ref = matrix_exp(mx.array(a.astype(np.float32)))
    for dtype in (mx.float16, mx.bfloat16):
        out = matrix_exp(mx.array(a.astype(np.float32)).astype(dtype))
        assert out.dtype == dtype
        expect = to_np(ref.astype(dtype))
        np.testing.assert_allclose(to_np(out), expect, rtol=1e-2, atol=1e-2)


def test_integer_input_is_promoted_to_float32():
    out = matrix_exp(mx.array([[0, 1], [0, 0]]))
    assert out.dtype == mx.float32
    np.testing.assert_array_equal(np.array(out), [[1.0, 1.0], [0.0, 1.0]])


# ---------------------------------------------------------------- per-matrix choices


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_easy_matrix_is_not_overscaled_by_a_hard_neighbour(dtype):
    rng = np.random.default_rng(5)
    # 1-norm below theta_1 (1.2e-7 in float32, 2.2e-16 in float64): exp = I + A.
    tiny = rng.standard_normal((3, 3)) * (1e-9 if dtype == mx.float32 else 1e-18)
    medium = rng.standard_normal((3, 3)) * 0.3
    hard = _samples(rng, 3, np.array([900.0]), "skew", per_norm=1)[0]
    batch = _mx(np.stack([tiny, hard, medium]), dtype)
    together = to_np(matrix_exp(batch))
    alone = np.stack([to_np(matrix_exp(batch[i])) for i in range(3)])
    np.testing.assert_array_equal(together, alone)
    # Degree 1 for the tiny one, and no squarings for the medium one (a batch-wide
    # scaling by 2^-9 followed by 9 squarings would change their bits).
    np.testing.assert_array_equal(together[0], to_np(mx.eye(3, dtype=dtype) + batch[0]))


def test_beyond_the_squaring_budget_only_that_matrix_is_nan():
    a = np.stack([np.eye(3) * 0.1, np.diag([0.0, 1.0, -1.0]) * 60.0])
    out = np.array(matrix_exp(mx.array(a.astype(np.float32)), max_squarings=3))
    # 3.01 * 2**3 ~ 24 < 60: the second matrix is out of range and flagged by NaN.
    assert np.all(np.isnan(out[1]))
    np.testing.assert_allclose(out[0], scipy.linalg.expm(a[0]), rtol=1e-6)
    fine = np.array(matrix_exp(mx.array(a.astype(np.float32)), max_squarings=5))
    assert _rel(fine[1], scipy.linalg.expm(a[1])) <= F32_BOUND


def test_zero_squarings_still_covers_norms_up_to_theta18():
    a = _samples(np.random.default_rng(6), 4, np.array([1e-3, 0.5, 2.9]), "random")
    out = to_np(matrix_exp(mx.array(a.astype(np.float32)), max_squarings=0))
    assert _rel(out, scipy.linalg.expm(a.astype(np.float32).astype(np.float64))).max() <= F32_BOUND


# ---------------------------------------------------------------- identities


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", [2, 4, 6])
def test_exp_of_a_times_exp_of_minus_a_is_identity(dtype, n):
    a = _samples(np.random.default_rng(7), n, np.array([1e-4, 0.3, 2.0, 6.0]), "random")
    x = _mx(a, dtype)
    prod = to_np(matrix_exp(x)) @ to_np(matrix_exp(-x))
    tol = 1e-4 if dtype == mx.float32 else 1e-11
    np.testing.assert_allclose(prod, np.broadcast_to(np.eye(n), prod.shape), atol=tol)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_exp_of_transpose_is_transpose_of_exp(dtype):
    x = _mx(_samples(np.random.default_rng(8), 4, np.array([0.01, 1.0, 8.0]), "random"), dtype)
    lhs = to_np(matrix_exp(x.swapaxes(-1, -2)))
    rhs = to_np(matrix_exp(x)).swapaxes(-1, -2)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5 if dtype == mx.float32 else 1e-13, atol=1e-12)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_block_diagonal_exp_is_block_diagonal_of_exps(dtype):
    rng = np.random.default_rng(9)
    p, q = rng.standard_normal((2, 2)), rng.standard_normal((3, 3)) * 2.0
    a = np.zeros((5, 5))
    a[:2, :2], a[2:, 2:] = p, q
    out = to_np(matrix_exp(_mx(a, dtype)))
    used = _input_as_used(a, dtype)
    expect = scipy.linalg.block_diag(scipy.linalg.expm(used[:2, :2]), scipy.linalg.expm(used[2:, 2:]))
    np.testing.assert_allclose(out, expect, rtol=1e-5 if dtype == mx.float32 else 1e-13, atol=1e-12)
    assert np.all(out[:2, 2:] == 0) and np.all(out[2:, :2] == 0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_exp_of_diagonal_is_diagonal_of_exps(dtype):
    d = np.array([[-3.0, 0.5, 2.0, 0.0], [1e-6, -1e-6, 7.0, -20.0]])
    out = to_np(matrix_exp(_mx(np.eye(4) * d[:, None, :], dtype)))
    expect = np.eye(4) * np.exp(_input_as_used(d, dtype))[:, None, :]
    # Relative to each matrix's largest entry: a Taylor sum of -20 loses digits of e^-20.
    err = np.abs(out - expect).max(axis=(-2, -1)) / np.abs(expect).max(axis=(-2, -1))
    assert err.max() <= (5e-6 if dtype == mx.float32 else 1e-14)
    assert np.all(out[:, ~np.eye(4, dtype=bool)] == 0.0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_zero_matrix_gives_identity_exactly(dtype, n):
    out = to_np(matrix_exp(mx.zeros((2, n, n), dtype=dtype)))
    np.testing.assert_array_equal(out, np.broadcast_to(np.eye(n), (2, n, n)))


def test_leading_batch_dims_are_kept():
    a = mx.array(_samples(np.random.default_rng(10), 3, np.array([0.5, 5.0]), "random").astype(np.float32))
    a = a.reshape(2, 3, 3, 3)
    out = matrix_exp(a)
    assert out.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(np.array(out), np.array(matrix_exp(a.reshape(6, 3, 3))).reshape(2, 3, 3, 3))


# ---------------------------------------------------------------- gradients


def _central_difference(f, a: np.ndarray, direction: np.ndarray, h: float = 1e-6) -> np.ndarray:
    plus = np.array(f(mx.array(a + h * direction, dtype=mx.float64)))
    minus = np.array(f(mx.array(a - h * direction, dtype=mx.float64)))
    return (plus - minus) / (2 * h)


@pytest.mark.skipif(mx.float64 not in FLOAT_DTYPES, reason="float64 needs the CPU")
@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_vjp_matches_central_differences(n):
    rng = np.random.default_rng(20 + n)
    a = _samples(rng, n, np.array([0.2, 2.0, 12.0]), "random", per_norm=1)
    g = rng.standard_normal(a.shape)
    direction = rng.standard_normal(a.shape)
    _, (vjp,) = mx.vjp(matrix_exp, [mx.array(a, dtype=mx.float64)], [mx.array(g, dtype=mx.float64)])
    # <G, dexp(A)[D]> = <vjp, D>, per matrix.
    assert vjp.shape == a.shape
    fd = np.sum(g * _central_difference(matrix_exp, a, direction), axis=(-2, -1))
    ad = np.sum(np.array(vjp) * direction, axis=(-2, -1))
    np.testing.assert_allclose(ad, fd, rtol=1e-7)


@pytest.mark.skipif(mx.float64 not in FLOAT_DTYPES, reason="float64 needs the CPU")
@pytest.mark.parametrize("n", [2, 4])
def test_jvp_matches_central_differences(n):
    rng = np.random.default_rng(30 + n)
    a = _samples(rng, n, np.array([0.2, 2.0, 12.0]), "random", per_norm=1)
    direction = rng.standard_normal(a.shape)
    _, (jvp,) = mx.jvp(matrix_exp, [mx.array(a, dtype=mx.float64)], [mx.array(direction, dtype=mx.float64)])
    fd = _central_difference(matrix_exp, a, direction)
    assert jvp.shape == fd.shape
    np.testing.assert_allclose(np.array(jvp), fd, rtol=1e-7, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_custom_vjp_matches_autodiff_of_the_plain_evaluation(dtype, n):
    rng = np.random.default_rng(40 + n)
    a = _mx(_samples(rng, n, np.array([1e-5, 0.1, 1.0, 3.0, 40.0]), "random", per_norm=2), dtype)
    g = _mx(rng.standard_normal(a.shape), dtype)
    _, (custom,) = mx.vjp(matrix_exp, [a], [g])
    _, (plain,) = mx.vjp(lambda x: _expm(x, DEFAULT_MAX_SQUARINGS), [a], [g])
    custom, plain = to_np(custom), to_np(plain)
    tol = 2e-4 if dtype == mx.float32 else 1e-11
    assert _rel(custom, plain).max() <= tol


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_gradient_at_zero_is_the_cotangent(dtype):
    # d exp at 0 is the identity map, so the VJP returns G itself.
    g = mx.array(np.random.default_rng(50).standard_normal((2, 4, 4)).astype(np.float32)).astype(dtype)
    _, (vjp,) = mx.vjp(matrix_exp, [mx.zeros((2, 4, 4), dtype=dtype)], [g])
    np.testing.assert_allclose(to_np(vjp), to_np(g), rtol=1e-6 if dtype == mx.float32 else 1e-14, atol=0)
    grad = mx.grad(lambda x: matrix_exp(x).sum())(mx.zeros((3, 3), dtype=dtype))
    np.testing.assert_allclose(to_np(grad), np.ones((3, 3)), rtol=1e-6)


def test_gradient_of_a_huge_cotangent_is_finite_and_linear():
    a = mx.array(_samples(np.random.default_rng(51), 3, np.array([0.5]), "random", per_norm=1).astype(np.float32))
    g = mx.array(np.random.default_rng(52).standard_normal((1, 3, 3)).astype(np.float32))
    _, (small,) = mx.vjp(matrix_exp, [a], [g])
    _, (huge,) = mx.vjp(matrix_exp, [a], [g * 1e30])
    assert np.all(np.isfinite(np.array(huge)))
    np.testing.assert_allclose(np.array(huge) / 1e30, np.array(small), rtol=1e-5)


# ---------------------------------------------------------------- device rules


@pytest.mark.parametrize("n", [3, 4])
def test_device_safe_under_compile_at_two_batch_sizes(n):
    rng = np.random.default_rng(60 + n)

    def make_args(batch: int):
        norms = np.logspace(-6, 2.5, batch)
        return (mx.array(_samples(rng, n, norms, "random", per_norm=1).astype(np.float32)),)

    assert_device_safe(matrix_exp, make_args)
    assert_device_safe(lambda x: mx.grad(lambda y: (matrix_exp(y) ** 2).sum())(x), make_args)


# ---------------------------------------------------------------- bad input


def test_non_square_input_raises_value_error_naming_the_shape():
    with pytest.raises(ValueError, match=r"\(\*, n, n\)"):
        matrix_exp(mx.zeros((4, 3, 2)))


def test_vector_input_raises_value_error():
    with pytest.raises(ValueError, match=r"\(\*, n, n\)"):
        matrix_exp(mx.zeros((3,)))


def test_complex_input_raises_type_error():
    with pytest.raises(TypeError):
        matrix_exp(mx.zeros((2, 2), dtype=mx.complex64))
    with pytest.raises(TypeError):
        matrix_exp(np.zeros((2, 2), dtype=np.complex128))


def test_negative_squaring_budget_raises_value_error():
    with pytest.raises(ValueError, match="max_squarings"):
        matrix_exp(mx.zeros((2, 2)), max_squarings=-1)


@pytest.mark.parametrize("n", [1, 3])
def test_empty_batch_gives_empty_output(n):
    out = matrix_exp(mx.zeros((0, n, n)))
    assert out.shape == (0, n, n) and out.dtype == mx.float32


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nan_entries_affect_only_their_own_matrix(dtype):
    rng = np.random.default_rng(70)
    a = _samples(rng, 3, np.array([0.5, 50.0]), "random", per_norm=2)
    bad = a.copy()
    bad[1, 0, 2] = np.nan
    bad[2, 1, 1] = np.inf
    clean_out = to_np(matrix_exp(_mx(a, dtype)))
    out = to_np(matrix_exp(_mx(bad, dtype)))
    assert not np.all(np.isfinite(out[1])) and not np.all(np.isfinite(out[2]))
    np.testing.assert_array_equal(out[[0, 3]], clean_out[[0, 3]])
    g = mx.grad(lambda x: matrix_exp(x)[..., 0, 0].sum())(_mx(bad, dtype))
    clean_g = mx.grad(lambda x: matrix_exp(x)[..., 0, 0].sum())(_mx(a, dtype))
    np.testing.assert_array_equal(to_np(g)[[0, 3]], to_np(clean_g)[[0, 3]])
