"""eigh_smallest (shifted block inverse iteration + Rayleigh-Ritz) against float64 numpy.linalg.eigh.

Bounds (measured maxima in brackets): float32 eigenvalues within 1e-6 tr A [~2e-7]; eigenvectors
of eigenvalues separated from the rest by >= 1e-3 tr A give |v . v_ref| > 1 - 1e-6 [~1e-7]
in float32 and > 1 - 1e-12 in float64.
"""

import mlx.core as mx
import numpy as np
import pytest
from helpers import assert_device_safe, to_np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlxgeom import linalg


def psd(shape, n, seed, small=(0.0,), floor=1e-3):
    """Q diag(w) Q^T with the eigenvalues ``small`` (relative) at the bottom and the rest in [floor, 1]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((*shape, n, n)))
    rest = 10.0 ** rng.uniform(np.log10(floor), 0, (*shape, n - len(small)))
    w = np.concatenate([np.broadcast_to(np.array(small), (*shape, len(small))), rest], -1)
    return q @ (w[..., :, None] * np.swapaxes(q, -1, -2))


def overlaps(v, v_ref):
    return np.abs(np.sum(v * v_ref, axis=-2))


@pytest.mark.parametrize("n, k", [(3, 1), (9, 1), (9, 2), (12, 1), (12, 4)])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float64])
def test_smallest_eigenpairs_match_numpy(n, k, dtype):
    small = tuple(np.linspace(0.0, 1e-5, k))  # near-null space, then a gap to [1e-3, 1]
    a = mx.array(psd((30,), n, seed=n + k, small=small), dtype=dtype)
    a_np = to_np(a)
    w, v, ok = linalg.eigh_smallest(a, k=k)
    assert w.shape == (30, k) and v.shape == (30, n, k) and w.dtype == dtype and bool(mx.all(ok))
    w_ref, v_ref = np.linalg.eigh(a_np)
    tr = np.trace(a_np, axis1=-2, axis2=-1)[:, None]
    assert np.all(np.abs(to_np(w) - w_ref[:, :k]) <= (1e-6 if dtype == mx.float32 else 1e-13) * tr)
    # the near-null vectors are a well-separated cluster: compare the subspace, and v_1 alone
    proj = np.swapaxes(v_ref[..., :k], -1, -2) @ to_np(v)
    sv = np.linalg.svd(proj, compute_uv=False)
    tol = 1e-6 if dtype == mx.float32 else 1e-12
    assert np.all(sv > 1 - tol)
    gram = np.swapaxes(to_np(v), -1, -2) @ to_np(v)
    assert np.abs(gram - np.eye(k)).max() < (1e-5 if dtype == mx.float32 else 1e-12)


def test_separated_eigenvectors_come_in_ascending_order():
    a_np = psd((20,), 8, seed=4, small=(0.0, 1e-2, 2e-2), floor=0.1)
    w, v, _ = linalg.eigh_smallest(mx.array(a_np, dtype=mx.float32), k=3, iterations=3)
    _, v_ref = np.linalg.eigh(a_np)
    assert np.all(np.diff(to_np(w), axis=-1) > 0)
    assert np.all(overlaps(to_np(v), v_ref[..., :3]) > 1 - 1e-5)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([4, 9, 12]), noise=st.sampled_from([0.0, 1e-3, 1e-2]))
def test_noisy_null_space_normal_matrices_give_av_equals_wv(seed, n, noise):
    """Normal matrices of 2n random rows orthogonal to a random vector, plus row noise."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal(n)
    x = rng.standard_normal((3, 2 * n, n))
    x -= (x @ h)[..., None] * h / (h @ h)
    x += noise * rng.standard_normal(x.shape)
    a_np = np.swapaxes(x, -1, -2) @ x
    w, v, ok = linalg.eigh_smallest(mx.array(a_np, dtype=mx.float32), k=1)
    w, v = to_np(w), to_np(v)
    resid = a_np @ v - v * w[..., None, :]
    tr = np.trace(a_np, axis1=-2, axis2=-1)
    assert bool(mx.all(ok))
    assert np.all(np.linalg.norm(resid, axis=-2)[..., 0] <= 1e-5 * tr)
    np.testing.assert_allclose(w[..., 0], np.linalg.eigvalsh(a_np)[..., 0], atol=1e-6 * tr.max())


def test_exact_null_space_of_a_dlt_like_normal_matrix():
    rng = np.random.default_rng(2)
    h = rng.standard_normal(9)
    rows = rng.standard_normal((5, 40, 9))
    rows -= (rows @ h)[..., None] * h / (h @ h)  # every row is orthogonal to h
    a_np = np.swapaxes(rows, -1, -2) @ rows
    _, v, _ = linalg.eigh_smallest(mx.array(a_np, dtype=mx.float32))
    assert np.all(overlaps(to_np(v), (h / np.linalg.norm(h))[:, None]) > 1 - 1e-6)


def test_indefinite_or_nan_matrices_are_flagged_and_isolated():
    a_np = psd((4,), 6, seed=5, small=(0.0, 1e-3), floor=0.1)
    a_np[1] -= 0.5 * np.eye(6)  # indefinite
    a_np[2, 0, 3] = a_np[2, 3, 0] = np.nan
    w, v, ok = linalg.eigh_smallest(mx.array(a_np, dtype=mx.float32), k=2)
    assert to_np(ok).tolist() == [True, False, False, True]
    assert np.all(np.isnan(to_np(w)[[1, 2]])) and np.all(np.isnan(to_np(v)[[1, 2]]))
    keep = [0, 3]
    np.testing.assert_allclose(to_np(w)[keep], np.linalg.eigvalsh(a_np[keep])[:, :2], atol=1e-6)


def test_zero_and_scaled_matrices():
    w, v, ok = linalg.eigh_smallest(mx.zeros((2, 5, 5)), k=2)
    assert bool(mx.all(ok)) and np.all(to_np(w) == 0)
    np.testing.assert_allclose(np.swapaxes(to_np(v), -1, -2) @ to_np(v), np.broadcast_to(np.eye(2), (2, 2, 2)), atol=1e-6)
    base = psd((3,), 6, seed=6, small=(0.0, 2e-3), floor=0.1)
    for scale in (1e-30, 1e30):
        w, v, ok = linalg.eigh_smallest(mx.array(base * scale, dtype=mx.float32), k=2)
        assert bool(mx.all(ok)) and np.all(np.isfinite(to_np(v)))
        np.testing.assert_allclose(to_np(w) / scale, np.linalg.eigvalsh(base)[:, :2], atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"\(\*, n, n\)"):
        linalg.eigh_smallest(mx.zeros((3, 4)))
    with pytest.raises(ValueError, match="k"):
        linalg.eigh_smallest(mx.eye(3), k=4)
    with pytest.raises(ValueError, match="iterations"):
        linalg.eigh_smallest(mx.eye(3), iterations=-1)
    with pytest.raises(ValueError, match="oversample"):
        linalg.eigh_smallest(mx.eye(3), oversample=1.5)
    with pytest.raises(TypeError):
        linalg.eigh_smallest(np.eye(3) * 1j)
    w, v, ok = linalg.eigh_smallest(mx.zeros((0, 4, 4)), k=2)
    assert w.shape == (0, 2) and v.shape == (0, 4, 2) and ok.shape == (0,)


def test_low_precision_inputs_are_computed_in_float32():
    # float16 rounding of the input (~1e-3) would make a singular matrix indefinite: keep lambda_1 > 0
    a = mx.array(psd((2,), 5, seed=8, small=(0.05,), floor=0.2)).astype(mx.float16)
    w, v, ok = linalg.eigh_smallest(a)
    assert w.dtype == mx.float16 and v.dtype == mx.float16 and bool(mx.all(ok))
    np.testing.assert_allclose(to_np(w)[:, 0], np.linalg.eigvalsh(to_np(a))[:, 0], atol=2e-3)


@pytest.mark.float64
def test_gradient_matches_central_differences():
    a_np = psd((2,), 6, seed=9, small=(0.01, 0.02), floor=0.2)  # positive definite: FD stays inside
    rng = np.random.default_rng(9)
    cw, cv = rng.standard_normal((2, 2)), rng.standard_normal((2, 6, 6))

    def loss(a):
        w, v, _ = linalg.eigh_smallest(a, k=2, iterations=8)
        vv = mx.sum(v[..., :, None, :] * v[..., None, :, :], axis=-1)  # sign-invariant v v^T
        return mx.sum(w * mx.array(cw)) + mx.sum(vv * mx.array(cv))

    direction = psd((2,), 6, seed=10)
    f64 = lambda x: mx.array(x, dtype=mx.float64)  # noqa: E731
    g = to_np(mx.grad(loss)(f64(a_np)))
    h = 1e-6
    fd = (to_np(loss(f64(a_np + h * direction))) - to_np(loss(f64(a_np - h * direction)))) / (2 * h)
    np.testing.assert_allclose(np.sum(g * direction), fd, rtol=1e-6, atol=1e-8)
    _, (dw, dv, _) = mx.jvp(lambda a: linalg.eigh_smallest(a, k=2, iterations=8), [f64(a_np)], [f64(direction)])
    vv = to_np(v := linalg.eigh_smallest(f64(a_np), k=2, iterations=8)[1])
    dvv = np.einsum("bik,bjk->bij", to_np(dv), vv) + np.einsum("bik,bjk->bij", vv, to_np(dv))
    np.testing.assert_allclose(np.sum(to_np(dw) * cw) + np.sum(dvv * cv), fd, rtol=1e-6, atol=1e-8)


def test_sweep_inverse_matches_numpy_and_flags_indefinite():
    from mlxgeom.linalg.eigh_smallest import sweep_inverse

    x = np.random.default_rng(11).standard_normal((4, 7, 12))
    b = x @ np.swapaxes(x, -1, -2)
    b[3] -= 20.0 * np.eye(7)
    c, ok = sweep_inverse(mx.array(b, dtype=mx.float64))
    assert to_np(ok).tolist() == [True, True, True, False]
    np.testing.assert_allclose(to_np(c)[:3], np.linalg.inv(b[:3]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 4])
def test_eigh_smallest_is_device_safe(k):
    def make(batch):
        return (mx.array(psd((batch,), 12, seed=batch), dtype=mx.float32),)

    assert_device_safe(lambda a: linalg.eigh_smallest(a, k=k), make)
