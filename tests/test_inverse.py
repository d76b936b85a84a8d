"""det / inv / inv_ex / solve for 2x2, 3x3 and 4x4 against float64 numpy."""

import mlx.core as mx
import numpy as np
import pytest
from helpers import FLOAT_DTYPES, assert_device_safe, to_np
from hypothesis import given
from hypothesis import strategies as st

from mlxgeom import linalg

SIZES = [2, 3, 4]
EPS = {mx.float32: 1.1920929e-07, mx.float64: 2.220446049250313e-16}


def random_matrices(shape, n, seed, cond=None):
    """Random (shape, n, n) matrices; with ``cond``, singular values spread to that condition number."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((*shape, n, n))
    if cond is not None:
        u, _, vt = np.linalg.svd(a)
        s = np.geomspace(1.0, 1.0 / cond, n)
        a = u @ (s[:, None] * vt)
    return a


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_inverse_error_is_bounded_by_condition_number(n, dtype):
    a_np = random_matrices((200,), n, seed=n, cond=1e3)
    x = linalg.inv(mx.array(a_np, dtype=dtype))
    ref = np.linalg.inv(a_np)
    cond = np.linalg.cond(a_np)
    rel = np.linalg.norm(to_np(x) - ref, axis=(-2, -1)) / np.linalg.norm(ref, axis=(-2, -1))
    assert x.dtype == dtype
    assert np.all(rel <= 20 * n * EPS[dtype] * cond)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_det_matches_numpy(n, dtype):
    a_np = random_matrices((7, 5), n, seed=10 + n)
    d = linalg.det(mx.array(a_np, dtype=dtype))
    ref = np.linalg.det(a_np)
    scale = np.prod(np.linalg.norm(a_np, axis=-1), axis=-1)
    assert d.shape == (7, 5)
    assert np.all(np.abs(to_np(d) - ref) <= 10 * n * EPS[dtype] * scale)


@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from(SIZES))
def test_inverse_times_matrix_is_identity_for_well_conditioned(seed, n):
    a_np = random_matrices((16,), n, seed, cond=10.0)
    a = mx.array(a_np, dtype=mx.float32)
    prod = to_np(linalg.matmul(a, linalg.inv(a)))
    np.testing.assert_allclose(prod, np.broadcast_to(np.eye(n), prod.shape), atol=2e-5)


@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from(SIZES))
def test_det_is_multiplicative(seed, n):
    a_np, b_np = random_matrices((2, 16), n, seed)
    a, b = mx.array(a_np), mx.array(b_np)
    lhs = to_np(linalg.det(linalg.matmul(a, b)))
    rhs = to_np(linalg.det(a)) * to_np(linalg.det(b))
    scale = np.prod(np.linalg.norm(a_np, axis=-1), -1) * np.prod(np.linalg.norm(b_np, axis=-1), -1)
    assert np.all(np.abs(lhs - rhs) <= 1e-5 * scale)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.float64
def test_inverse_vjp_is_minus_inverse_transposed_sandwich(n):
    a_np = random_matrices((3,), n, seed=20 + n, cond=5.0)
    g_np = np.random.default_rng(1).standard_normal((3, n, n))
    a, g = mx.array(a_np, dtype=mx.float64), mx.array(g_np, dtype=mx.float64)
    (grad,) = mx.vjp(linalg.inv, [a], [g])[1]
    ainv_t = np.swapaxes(np.linalg.inv(a_np), -1, -2)
    np.testing.assert_allclose(np.array(grad), -ainv_t @ g_np @ ainv_t, rtol=1e-10, atol=1e-12)


@pytest.mark.float64
@pytest.mark.parametrize("fn", ["det", "inv", "solve"])
@pytest.mark.parametrize("n", SIZES)
def test_gradients_match_central_differences_in_float64(fn, n):
    rng = np.random.default_rng(30 + n)
    a_np = random_matrices((2,), n, seed=40 + n, cond=4.0)
    b_np = rng.standard_normal((2, n))
    w_np = rng.standard_normal((2, n, n) if fn == "inv" else (2, n) if fn == "solve" else (2,))
    b, w = mx.array(b_np, dtype=mx.float64), mx.array(w_np, dtype=mx.float64)
    f = {
        "det": lambda a: mx.sum(w * linalg.det(a)),
        "inv": lambda a: mx.sum(w * linalg.inv(a)),
        "solve": lambda a: mx.sum(w * linalg.solve(a, b)),
    }[fn]
    grad = np.array(mx.grad(f)(mx.array(a_np, dtype=mx.float64)))
    h = 1e-6
    num = np.zeros_like(a_np)
    for idx in np.ndindex(*a_np.shape):
        e = np.zeros_like(a_np)
        e[idx] = h
        num[idx] = (f(mx.array(a_np + e, dtype=mx.float64)).item() - f(mx.array(a_np - e, dtype=mx.float64)).item()) / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7)


@pytest.mark.float64
def test_inverse_jvp_matches_vjp_transpose():
    a = mx.array(random_matrices((2,), 3, seed=5, cond=3.0), dtype=mx.float64)
    t = mx.array(np.random.default_rng(2).standard_normal((2, 3, 3)), dtype=mx.float64)
    c = mx.array(np.random.default_rng(3).standard_normal((2, 3, 3)), dtype=mx.float64)
    (jt,) = mx.jvp(linalg.inv, [a], [t])[1]
    (vc,) = mx.vjp(linalg.inv, [a], [c])[1]
    assert abs(mx.sum(jt * c).item() - mx.sum(vc * t).item()) < 1e-10


@pytest.mark.parametrize("n", SIZES)
def test_solve_matches_numpy_for_vectors_and_matrices(n):
    a_np = random_matrices((4, 1), n, seed=50 + n, cond=20.0)
    rng = np.random.default_rng(n)
    b_vec = rng.standard_normal((4, 6, n))
    b_mat = rng.standard_normal((6, n, 5))
    x_vec = to_np(linalg.solve(mx.array(a_np), mx.array(b_vec)))
    x_mat = to_np(linalg.solve(mx.array(a_np), mx.array(b_mat)))
    a64 = np.broadcast_to(a_np, (4, 6, n, n))
    np.testing.assert_allclose(x_vec, np.linalg.solve(a64, b_vec[..., None])[..., 0], atol=2e-4)
    np.testing.assert_allclose(x_mat, np.linalg.solve(a64, np.broadcast_to(b_mat, (4, 6, n, 5))), atol=2e-4)


def test_inv_ex_flags_singular_and_nonfinite_entries_only():
    nearly_dependent = [[1, 0, 0], [0, 1, 0], [1, 1, 1e-9]]
    row_scaled = np.diag([1.0, 1.0, 1e-9])  # exactly invertible: rows are orthogonal
    a = np.stack([np.eye(3), [[1, 2, 3], [2, 4, 6], [0, 0, 1]], np.eye(3) * 1e-10, np.full((3, 3), np.nan), nearly_dependent, row_scaled])
    x, ok = linalg.inv_ex(mx.array(a, dtype=mx.float32))
    np.testing.assert_array_equal(np.array(ok), [True, False, True, False, False, True])
    np.testing.assert_allclose(np.array(x[0]), np.eye(3))
    assert not np.all(np.isfinite(np.array(x[1])))


@pytest.mark.float64
def test_inv_ex_threshold_is_scale_invariant():
    a = random_matrices((8,), 4, seed=3, cond=1e2)
    for scale in (1e-12, 1.0, 1e12):
        _, ok = linalg.inv_ex(mx.array(a * scale, dtype=mx.float64))
        assert np.all(np.array(ok))


def test_singular_entry_does_not_touch_neighbours():
    a = np.stack([np.eye(4) * 2, np.zeros((4, 4)), np.eye(4) * 4])
    x = np.array(linalg.inv(mx.array(a)))
    np.testing.assert_allclose(x[0], np.eye(4) / 2)
    np.testing.assert_allclose(x[2], np.eye(4) / 4)
    assert not np.any(np.isfinite(x[1]))


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_low_precision_inputs_are_computed_in_float32_and_returned_in_their_dtype(dtype):
    a = mx.array(random_matrices((5,), 3, seed=1, cond=3.0)).astype(dtype)
    x = linalg.inv(a)
    assert x.dtype == dtype
    ref = np.linalg.inv(to_np(a))
    np.testing.assert_allclose(to_np(x), ref, rtol=2e-2, atol=2e-2)


def test_integer_and_list_inputs_are_promoted_to_float32():
    x = linalg.inv([[2, 0], [0, 4]])
    assert x.dtype == mx.float32
    np.testing.assert_allclose(np.array(x), [[0.5, 0], [0, 0.25]])
    assert linalg.det(mx.array([[1, 2], [3, 4]])).item() == -2.0


def test_empty_batch_gives_empty_output():
    assert linalg.inv(mx.zeros((0, 3, 3))).shape == (0, 3, 3)
    assert linalg.det(mx.zeros((0, 4, 4))).shape == (0,)
    assert linalg.solve(mx.zeros((0, 2, 2)), mx.zeros((0, 2))).shape == (0, 2)


@pytest.mark.parametrize("shape", [(3,), (5, 3, 4), (2, 5, 5), (1, 1)])
def test_wrong_shapes_raise_value_error_naming_the_shape(shape):
    with pytest.raises(ValueError, match=r"\(\*, n, n\)"):
        linalg.inv(mx.zeros(shape))


@pytest.mark.parametrize("fn", [linalg.inv, linalg.det, lambda a: linalg.solve(a, mx.ones(6))])
def test_large_n_error_points_to_the_device_solvers_before_the_cpu_stream(fn):
    with pytest.raises(ValueError) as err:
        fn(mx.zeros((6, 6)))
    message = str(err.value)
    assert "(6, 6)" in message
    offers = [message.find(name) for name in ("solve_spd", "eigh", "stream=mx.cpu")]
    assert -1 not in offers and offers == sorted(offers), message


def test_complex_input_raises_type_error():
    with pytest.raises(TypeError):
        linalg.det(np.eye(3, dtype=np.complex64))
    with pytest.raises(TypeError):
        linalg.inv(mx.zeros((3, 3), dtype=mx.complex64))


def test_solve_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(\*, 3\)"):
        linalg.solve(mx.zeros((3, 3)), mx.zeros((5, 4)))
    with pytest.raises(ValueError, match="broadcast"):
        linalg.solve(mx.zeros((2, 3, 3)), mx.zeros((4, 3)))


@pytest.mark.parametrize("n", SIZES)
def test_public_ops_are_device_safe_and_compile_at_two_batch_sizes(n):
    def mats(batch):
        return mx.array(random_matrices((batch,), n, seed=batch, cond=3.0), dtype=mx.float32)

    assert_device_safe(linalg.det, lambda b: (mats(b),))
    assert_device_safe(linalg.inv, lambda b: (mats(b),))
    assert_device_safe(linalg.inv_ex, lambda b: (mats(b),))
    assert_device_safe(linalg.solve, lambda b: (mats(b), mx.ones((b, n))))
    assert_device_safe(linalg.matmul, lambda b: (mats(b), mats(b).swapaxes(-1, -2)))


SCALES = [1e-20, 1e-10, 1e10, 1e20]


def _scaled_inputs(n: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Well-conditioned float32 matrices times ``scale`` and the same values in float64."""
    a = (random_matrices((6,), n, seed=n, cond=4.0) * scale).astype(np.float32)
    return a, a.astype(np.float64)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("n", SIZES)
def test_inverse_and_solve_of_scaled_matrices_match_numpy(n, scale):
    a32, a64 = _scaled_inputs(n, scale)
    x, ok = linalg.inv_ex(mx.array(a32))
    ref = np.linalg.inv(a64)
    norm = np.abs(ref).max(axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(np.array(x) / norm, ref / norm, atol=2e-5)
    np.testing.assert_allclose(np.array(linalg.inv(mx.array(a32))), np.array(x))
    assert np.array(ok).all()
    b = np.random.default_rng(n).normal(size=(6, n))
    xs, xs_ref = np.array(linalg.solve(mx.array(a32), mx.array(b.astype(np.float32)))), np.linalg.solve(a64, b[..., None])[..., 0]
    np.testing.assert_allclose(xs / np.abs(xs_ref).max(), xs_ref / np.abs(xs_ref).max(), atol=2e-5)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("n", SIZES)
def test_det_of_scaled_matrices_is_numpys_rounded_to_float32(n, scale):
    a32, a64 = _scaled_inputs(n, scale)
    got = np.array(linalg.det(mx.array(a32)))
    ref = np.linalg.det(a64)
    with np.errstate(over="ignore", under="ignore"):
        ref32 = ref.astype(np.float32)
    tiny = np.abs(ref) < np.finfo(np.float32).tiny  # below the normal range: rounds to (nearly) zero
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref32))
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(np.sign(got[np.isinf(got)]), np.sign(ref[np.isinf(got)]))
    finite = np.isfinite(ref32) & ~tiny
    np.testing.assert_allclose(got[finite], ref[finite], rtol=2e-5)
    np.testing.assert_allclose(got[tiny], 0.0, atol=np.finfo(np.float32).tiny)


def test_det_that_overflows_is_signed_inf_and_singular_stays_zero():
    a = np.stack([np.eye(4), np.diag([-1.0, 1.0, 1.0, 1.0]), np.zeros((4, 4)), np.ones((4, 4))]) * 1e20
    got = np.array(linalg.det(mx.array(a, dtype=mx.float32)))
    np.testing.assert_array_equal(got, [np.inf, -np.inf, 0.0, 0.0])


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1.0, 1e20, 1e30])
@pytest.mark.parametrize("n", SIZES)
def test_inv_ex_mask_does_not_depend_on_scale(n, scale):
    singular = random_matrices((), n, seed=1)
    singular[-1] = singular[0] - 2 * singular[1 % (n - 1)]  # rank-deficient
    a = np.stack([random_matrices((), n, seed=2, cond=3.0), singular, np.zeros((n, n))]) * scale
    _, ok = linalg.inv_ex(mx.array(a, dtype=mx.float32))
    np.testing.assert_array_equal(np.array(ok), [True, False, False])


@pytest.mark.parametrize("scale", [1e-10, 1e10])
@pytest.mark.parametrize("n", SIZES)
def test_gradients_of_scaled_matrices_match_the_float64_formulas(n, scale):
    a32, a64 = _scaled_inputs(n, scale)
    a32, a64 = a32[:2], a64[:2]
    ainv = np.linalg.inv(a64)
    g_det = np.array(mx.grad(lambda x: mx.sum(linalg.det(x)))(mx.array(a32)))
    ref_det = np.linalg.det(a64)[:, None, None] * np.swapaxes(ainv, -1, -2)  # Jacobi: adj(A)^T
    np.testing.assert_allclose(g_det, ref_det, rtol=1e-4, atol=1e-5 * np.abs(ref_det).max())
    w = np.arange(n * n, dtype=np.float64).reshape(n, n)
    g_inv = np.array(mx.grad(lambda x: mx.sum(linalg.inv(x) * mx.array(w, dtype=mx.float32)))(mx.array(a32)))
    ref_inv = -np.swapaxes(ainv, -1, -2) @ w @ np.swapaxes(ainv, -1, -2)
    np.testing.assert_allclose(g_inv, ref_inv, rtol=1e-4, atol=1e-4 * np.abs(ref_inv).max())


@pytest.mark.float64
@pytest.mark.parametrize("n", SIZES)
def test_det_jvp_and_second_derivative_match_finite_differences(n):
    a = mx.array(random_matrices((), n, seed=5, cond=3.0), dtype=mx.float64)
    t = mx.array(random_matrices((), n, seed=6), dtype=mx.float64)
    h = 1e-6
    fd = (linalg.det(a + h * t) - linalg.det(a - h * t)) / (2 * h)
    np.testing.assert_allclose(np.array(mx.jvp(linalg.det, [a], [t])[1][0]), np.array(fd), rtol=1e-7)
    grad = mx.grad(lambda x: linalg.det(x))
    hess_t = mx.jvp(grad, [a], [t])[1][0]
    fd2 = (grad(a + h * t) - grad(a - h * t)) / (2 * h)
    np.testing.assert_allclose(np.array(hess_t), np.array(fd2), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n", SIZES)
def test_blocked_inverse_on_cpu_equals_one_pass(n, monkeypatch):
    # Large CPU batches are inverted in blocks (inverse._BLOCKED_ABOVE); shrink the limits so a small
    # batch of every scale takes that path, with a last block shorter than the others.
    from mlxgeom.linalg import inverse

    a = np.concatenate([_scaled_inputs(n, s)[0] for s in (1.0, *SCALES)]).reshape(5, 6, n, n)
    with mx.stream(mx.cpu):
        one_pass = np.array(linalg.inv(mx.array(a)))
        monkeypatch.setattr(inverse, "_BLOCKED_ABOVE", 0)
        monkeypatch.setattr(inverse, "_BLOCK_ROWS", 7)
        # (3, 10, n, n): a shape not traced before, so the compiled core is traced with the patched limits.
        blocked = linalg.inv(mx.array(a.reshape(3, 10, n, n)))
    np.testing.assert_array_equal(np.array(blocked).reshape(a.shape), one_pass)
