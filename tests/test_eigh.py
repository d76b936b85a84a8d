"""eigh / eigh3 (fixed-sweep Jacobi) against float64 numpy.linalg.eigh.

Bounds (measured maxima in brackets, n <= 12): eigenvalues and reconstruction within
2e-5 ||A||_F in float32 [~5e-6] and 1e-13 ||A||_F in float64 [~5e-14]; V^T V = I within
1e-5 [~3e-6] / 1e-13; eigenvectors of eigenvalues separated by > 0.1 ||A|| satisfy
|v . v_ref| > 1 - 1e-4 in float32.
"""

import mlx.core as mx
import numpy as np
import pytest
from helpers import FLOAT_DTYPES, assert_device_safe, to_np
from hypothesis import given
from hypothesis import strategies as st

from mlxgeom import linalg

SIZES = [1, 2, 3, 4, 5, 6, 8, 9, 12]
TOL = {mx.float32: 2e-5, mx.float64: 1e-13}


def symmetric(shape, n, seed, spectrum="gauss"):
    rng = np.random.default_rng(seed)
    if spectrum == "gauss":
        x = rng.standard_normal((*shape, n, n))
        return x + np.swapaxes(x, -1, -2)
    q, _ = np.linalg.qr(rng.standard_normal((*shape, n, n)))
    if spectrum == "graded":
        w = 10.0 ** rng.uniform(-6, 0, (*shape, n))
    else:  # clustered: integer eigenvalues split by 1e-5
        w = np.round(rng.uniform(-2, 2, (*shape, n))) + 1e-5 * rng.standard_normal((*shape, n))
    return q @ (w[..., :, None] * np.swapaxes(q, -1, -2))


def fnorm(a):
    return np.linalg.norm(a, axis=(-2, -1))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("spectrum", ["gauss", "graded", "clustered"])
def test_eigenvalues_and_reconstruction_match_numpy(n, dtype, spectrum):
    a_np = symmetric((3, 20), n, seed=n, spectrum=spectrum)
    a = mx.array(a_np, dtype=dtype)
    a_np = to_np(a)  # the reference decomposes the same rounded input
    w, v = linalg.eigh(a)
    assert w.shape == (3, 20, n) and v.shape == (3, 20, n, n) and w.dtype == dtype
    w, v = to_np(w), to_np(v)
    scale = fnorm(a_np)[..., None]
    assert np.all(np.abs(w - np.linalg.eigvalsh(a_np)) <= TOL[dtype] * scale)
    assert np.all(np.diff(w, axis=-1) >= 0)
    rec = v @ (w[..., :, None] * np.swapaxes(v, -1, -2))
    assert np.all(fnorm(rec - a_np) <= TOL[dtype] * scale[..., 0])
    gram = np.swapaxes(v, -1, -2) @ v
    assert np.abs(gram - np.eye(n)).max() <= TOL[dtype] / 2


@pytest.mark.parametrize("n", [3, 4, 9, 12])
def test_eigenvectors_of_separated_eigenvalues_match_numpy_up_to_sign(n):
    rng = np.random.default_rng(100 + n)
    q, _ = np.linalg.qr(rng.standard_normal((50, n, n)))
    w_true = np.arange(n, dtype=np.float64) * (1.0 / n) + rng.uniform(-0.01, 0.01, (50, n))
    a_np = q @ (w_true[..., :, None] * np.swapaxes(q, -1, -2))
    _, v = linalg.eigh(mx.array(a_np, dtype=mx.float32))
    _, v_ref = np.linalg.eigh(a_np)
    overlap = np.abs(np.sum(to_np(v) * v_ref, axis=-2))
    assert np.all(overlap > 1 - 1e-4)


def test_eigh3_equals_eigh_and_checks_shape():
    a_np = symmetric((10,), 3, seed=3)
    w3, v3 = linalg.eigh3(mx.array(a_np))
    w, v = linalg.eigh(mx.array(a_np))
    np.testing.assert_array_equal(to_np(w3), to_np(w))
    np.testing.assert_array_equal(to_np(v3), to_np(v))
    with pytest.raises(ValueError, match=r"\(\*, n, n\) with n in \(3,\)"):
        linalg.eigh3(mx.zeros((2, 4, 4)))


@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([2, 3, 5, 12]))
def test_eigenpairs_satisfy_av_equals_wv(seed, n):
    a_np = symmetric((4,), n, seed)
    w, v = linalg.eigh(mx.array(a_np, dtype=mx.float32))
    w, v = to_np(w), to_np(v)
    resid = a_np @ v - v * w[..., None, :]
    assert np.all(np.linalg.norm(resid, axis=-2) <= 2e-5 * fnorm(a_np)[..., None])


def test_only_the_symmetric_part_is_used():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5, 5))
    w, _ = linalg.eigh(mx.array(x))
    ref = np.linalg.eigvalsh(0.5 * (x + np.swapaxes(x, -1, -2)))
    np.testing.assert_allclose(to_np(w), ref, atol=2e-5 * fnorm(x).max())


def test_extreme_scales_and_special_matrices():
    base = symmetric((4,), 4, seed=7)
    for scale in (1e-30, 1e30):
        a = mx.array(base * scale, dtype=mx.float32)
        w, v = linalg.eigh(a)
        assert np.all(np.isfinite(to_np(v)))
        ref = np.linalg.eigvalsh(to_np(a))
        assert np.all(np.abs(to_np(w) - ref) <= 2e-5 * fnorm(to_np(a))[..., None])
    for n in (3, 4, 7):
        w, v = linalg.eigh(mx.zeros((2, n, n)))
        np.testing.assert_array_equal(to_np(w), 0.0)
        gram = np.swapaxes(to_np(v), -1, -2) @ to_np(v)
        np.testing.assert_allclose(gram, np.broadcast_to(np.eye(n), (2, n, n)), atol=1e-6)
        w, v = linalg.eigh(mx.broadcast_to(2.0 * mx.eye(n), (2, n, n)))
        np.testing.assert_allclose(to_np(w), 2.0, atol=1e-6)


def test_nan_entry_affects_only_its_own_matrix():
    for n in (3, 6, 9):
        a_np = symmetric((4,), n, seed=n)
        a_np[1, 0, n - 1] = a_np[1, n - 1, 0] = np.nan
        w, v = linalg.eigh(mx.array(a_np))
        w, v = to_np(w), to_np(v)
        assert np.isnan(w[1]).any()
        keep = [0, 2, 3]
        assert np.all(np.isfinite(w[keep])) and np.all(np.isfinite(v[keep]))
        np.testing.assert_allclose(w[keep], np.linalg.eigvalsh(a_np[keep]), atol=2e-5 * fnorm(a_np[keep]).max())


def test_empty_batch_and_bad_shapes():
    w, v = linalg.eigh(mx.zeros((0, 5, 5)))
    assert w.shape == (0, 5) and v.shape == (0, 5, 5)
    with pytest.raises(ValueError, match=r"\(\*, n, n\)"):
        linalg.eigh(mx.zeros((3, 4)))
    with pytest.raises(ValueError, match="sweeps"):
        linalg.eigh(mx.eye(3), sweeps=-1)
    with pytest.raises(TypeError):
        linalg.eigh(np.eye(3) * 1j)


def test_low_precision_inputs_are_computed_in_float32():
    a_np = symmetric((3,), 4, seed=11)
    w, v = linalg.eigh(mx.array(a_np).astype(mx.float16))
    assert w.dtype == mx.float16 and v.dtype == mx.float16
    np.testing.assert_allclose(to_np(w), np.linalg.eigvalsh(to_np(mx.array(a_np).astype(mx.float16))), atol=0.02)


def _central_difference(f, a_np, direction, h):
    plus = to_np(f(mx.array(a_np + h * direction, dtype=mx.float64)))
    minus = to_np(f(mx.array(a_np - h * direction, dtype=mx.float64)))
    return (plus - minus) / (2 * h)


@pytest.mark.float64
@pytest.mark.parametrize("n", [3, 4, 9])
def test_gradient_matches_central_differences(n):
    rng = np.random.default_rng(20 + n)
    q, _ = np.linalg.qr(rng.standard_normal((2, n, n)))
    a_np = q @ (np.linspace(-1, 1, n)[:, None] * np.swapaxes(q, -1, -2))  # distinct eigenvalues
    cw, cv = rng.standard_normal((2, n)), rng.standard_normal((2, n, n))

    def loss(a):
        w, v = linalg.eigh(a)
        # the sign of each eigenvector is arbitrary: use sign-invariant products v v^T
        vv = v[..., :, :, None] * v[..., :, None, :]
        return mx.sum(w * mx.array(cw)) + mx.sum(mx.sum(vv, axis=-3) * mx.array(cv))

    direction = rng.standard_normal((2, n, n))  # not symmetric: the sym part is what counts
    g = to_np(mx.grad(loss)(mx.array(a_np, dtype=mx.float64)))
    fd = _central_difference(loss, a_np, direction, 1e-6)
    np.testing.assert_allclose(np.sum(g * direction), fd, rtol=1e-6, atol=1e-8)
    assert np.allclose(g, np.swapaxes(g, -1, -2))


def test_gradient_is_finite_for_repeated_eigenvalues_and_exact_for_w():
    a = mx.broadcast_to(mx.eye(4), (2, 4, 4)) * mx.array([1.0, 3.0])[:, None, None]
    g = mx.grad(lambda a: mx.sum(linalg.eigh(a)[0] * mx.arange(4)) + mx.sum(linalg.eigh(a)[1]))(a)
    assert np.all(np.isfinite(to_np(g)))
    gw = to_np(mx.grad(lambda a: mx.sum(linalg.eigh(a)[0]))(a))  # d tr(A) = I
    np.testing.assert_allclose(gw, np.broadcast_to(np.eye(4), (2, 4, 4)), atol=1e-6)


@pytest.mark.float64
def test_jvp_matches_vjp():
    a_np = symmetric((2,), 5, seed=31)
    t_np = symmetric((2,), 5, seed=32)
    a, t = mx.array(a_np, dtype=mx.float64), mx.array(t_np, dtype=mx.float64)
    cw, cv = mx.array(np.random.default_rng(1).standard_normal((2, 5))), mx.array(np.ones((2, 5, 5)))
    _, (dw, dv) = mx.jvp(linalg.eigh, [a], [t])
    _, (ga,) = mx.vjp(linalg.eigh, [a], [cw.astype(mx.float64), cv.astype(mx.float64)])
    lhs = np.sum(to_np(dw) * to_np(cw)) + np.sum(to_np(dv) * to_np(cv))
    np.testing.assert_allclose(lhs, np.sum(to_np(ga) * t_np), rtol=1e-10)


@pytest.mark.parametrize("n", [3, 4, 9])
def test_eigh_is_device_safe(n):
    def make(batch):
        return (mx.array(symmetric((batch,), n, seed=batch), dtype=mx.float32),)

    assert_device_safe(linalg.eigh, make)


def test_eigh3_is_device_safe():
    assert_device_safe(linalg.eigh3, lambda b: (mx.array(symmetric((b,), 3, seed=b), dtype=mx.float32),))


@pytest.mark.parametrize("n", [4, 7, 12])
def test_parallel_schedule_used_on_gpus_matches_numpy(n, monkeypatch):
    """The CPU runs the scalar schedule for every n <= 16; force the GPU's parallel one here."""
    import importlib

    eigh_module = importlib.import_module("mlxgeom.linalg.eigh")
    monkeypatch.setitem(eigh_module._SCALAR_MAX_N, "cpu", 3)
    a_np = symmetric((2, 10), n, seed=40 + n)
    w, v = linalg.eigh(mx.array(a_np, dtype=mx.float32))
    w, v = to_np(w), to_np(v)
    scale = fnorm(a_np)[..., None]
    assert np.all(np.abs(w - np.linalg.eigvalsh(a_np)) <= 2e-5 * scale)
    rec = v @ (w[..., :, None] * np.swapaxes(v, -1, -2))
    assert np.all(fnorm(rec - a_np) <= 2e-5 * scale[..., 0])
