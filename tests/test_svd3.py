"""svd3 and project_to_so3 against float64 numpy.linalg.svd and scipy's Rotation.

Bounds (float32, measured maxima in brackets): singular values and reconstruction within
4e-6 ||A||_F [~1.6e-6], U^T U = I and V V^T = I within 3e-6 [~8e-7]; float64: 1e-13.
project_to_so3 is within 2e-6 of the numpy SVD polar factor for rotations plus noise
[~5e-7] and returns a rotation input within 2e-6.
"""

import mlx.core as mx
import numpy as np
import pytest
from helpers import FLOAT_DTYPES, assert_device_safe, to_np
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mlxgeom import linalg

TOL = {mx.float32: 4e-6, mx.float64: 1e-13}


def rotations(count, seed):
    return Rotation.random(count, random_state=seed).as_matrix()


def with_singular_values(s, seed):
    """Matrices U diag(s) V^T with Haar-random rotations, s broadcast to (count, 3)."""
    s = np.asarray(s, dtype=np.float64)
    count = s.shape[0]
    return rotations(count, seed) @ (s[:, :, None] * rotations(count, seed + 1))


def cases(seed=0):
    rng = np.random.default_rng(seed)
    n = 64
    one = np.ones((n, 1))
    return {
        "gauss": rng.standard_normal((n, 3, 3)),
        "rank1": rng.standard_normal((n, 3, 1)) * rng.standard_normal((n, 1, 3)),
        "rank2": with_singular_values(np.hstack([one * 2.0, rng.uniform(0.1, 2, (n, 1)), 0 * one]), seed),
        "repeated": with_singular_values(np.hstack([one * 2.0, one * 2.0, one * 0.5]), seed + 2),
        "rotation": rotations(n, seed + 4),
        "reflection": -rotations(n, seed + 5),
        "nearly_singular": with_singular_values(np.hstack([one, one * 1e-5, one * 1e-6]), seed + 6),
        "tiny_cluster": with_singular_values(np.hstack([one, one * 1e-3, one * (1e-3 + 1e-6)]), seed + 8),
        "zero": np.zeros((2, 3, 3)),
    }


def check_svd(a_np, dtype):
    a = mx.array(a_np, dtype=dtype)
    a_np = to_np(a)
    u, s, vt = linalg.svd3(a)
    assert u.dtype == s.dtype == vt.dtype == dtype
    u, s, vt = to_np(u), to_np(s), to_np(vt)
    scale = np.maximum(np.linalg.norm(a_np, axis=(-2, -1)), 1e-30)
    tol = TOL[dtype]
    assert np.all(np.abs(s - np.linalg.svd(a_np, compute_uv=False)) <= tol * scale[..., None])
    assert np.all(s >= 0) and np.all(np.diff(s, axis=-1) <= 0)
    rec = u @ (s[..., :, None] * vt)
    assert np.all(np.linalg.norm(rec - a_np, axis=(-2, -1)) <= tol * scale)
    eye = np.eye(3)
    assert np.abs(np.swapaxes(u, -1, -2) @ u - eye).max() <= tol
    assert np.abs(vt @ np.swapaxes(vt, -1, -2) - eye).max() <= tol


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", list(cases()))
def test_svd_matches_numpy_on_special_matrices(kind, dtype):
    check_svd(cases()[kind], dtype)


@given(seed=st.integers(0, 2**31 - 1), log_cond=st.floats(0, 7))
def test_svd_reconstructs_graded_matrices(seed, log_cond):
    rng = np.random.default_rng(seed)
    s = np.sort(10.0 ** -rng.uniform(0, log_cond, (8, 3)), axis=-1)[:, ::-1]
    check_svd(with_singular_values(s, seed % 1000), mx.float32)


def test_singular_values_of_rotation_are_one_and_batch_shape_is_kept():
    r = rotations(12, 3).reshape(3, 4, 3, 3)
    u, s, vt = linalg.svd3(mx.array(r))
    assert u.shape == (3, 4, 3, 3) and s.shape == (3, 4, 3) and vt.shape == (3, 4, 3, 3)
    np.testing.assert_allclose(to_np(s), 1.0, atol=2e-6)


def test_nan_entry_affects_only_its_own_matrix():
    a_np = np.random.default_rng(3).standard_normal((4, 3, 3))
    a_np[2, 1, 1] = np.nan
    u, s, vt = (to_np(x) for x in linalg.svd3(mx.array(a_np)))
    r = to_np(linalg.project_to_so3(mx.array(a_np)))
    keep = [0, 1, 3]
    assert np.isnan(s[2]).any() and np.isnan(r[2]).any()
    for x in (u, s, vt, r):
        assert np.all(np.isfinite(x[keep]))
    np.testing.assert_allclose(s[keep], np.linalg.svd(a_np[keep], compute_uv=False), atol=1e-5)


def test_empty_batch_and_bad_shapes():
    u, s, vt = linalg.svd3(mx.zeros((0, 3, 3)))
    assert u.shape == (0, 3, 3) and s.shape == (0, 3)
    assert linalg.project_to_so3(mx.zeros((0, 3, 3))).shape == (0, 3, 3)
    for fn in (linalg.svd3, linalg.project_to_so3):
        with pytest.raises(ValueError, match=r"n in \(3,\)"):
            fn(mx.zeros((2, 4, 4)))
        with pytest.raises(ValueError, match=r"\(\*, n, n\)"):
            fn(mx.zeros((3, 2)))


def polar_reference(m):
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ (np.stack([np.ones_like(d), np.ones_like(d), d], axis=-1)[..., :, None] * vt)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_project_to_so3_matches_svd_polar_factor(dtype):
    rng = np.random.default_rng(7)
    m_np = rotations(200, 7) + 0.2 * rng.standard_normal((200, 3, 3))
    m_np = np.concatenate([m_np, rng.standard_normal((200, 3, 3))])
    m = mx.array(m_np, dtype=dtype)
    r = to_np(linalg.project_to_so3(m))
    ref = polar_reference(to_np(m))
    gap = np.linalg.svd(to_np(m), compute_uv=False)  # error grows like 1 / (s2 + d s3)
    cond = 1.0 / np.maximum(gap[:, 1] - gap[:, 2], 1e-3)
    assert np.all(np.abs(r - ref).max(axis=(-2, -1)) <= 4 * TOL[dtype] * cond)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=10 * TOL[dtype])


def test_project_to_so3_returns_rotations_and_fixes_reflections():
    r_np = rotations(100, 11)
    np.testing.assert_allclose(to_np(linalg.project_to_so3(mx.array(r_np))), r_np, atol=2e-6)
    # scipy's Rotation.from_matrix also orthogonalises: same nearest rotation
    noisy = r_np + 0.05 * np.random.default_rng(2).standard_normal((100, 3, 3))
    ref = Rotation.from_matrix(noisy).as_matrix()
    np.testing.assert_allclose(to_np(linalg.project_to_so3(mx.array(noisy))), ref, atol=1e-5)
    # -R has s = (1, 1, 1) and det -1: no unique nearest rotation, but det must be +1
    np.testing.assert_allclose(np.linalg.det(to_np(linalg.project_to_so3(mx.array(-r_np)))), 1.0, atol=5e-6)
    refl_np = -r_np * np.array([1.0, 0.8, 0.5])  # distinct singular values: unique answer
    refl = to_np(linalg.project_to_so3(mx.array(refl_np)))
    np.testing.assert_allclose(refl, polar_reference(refl_np), atol=2e-5)


def _check_gradient(fn, m_np, seed, rtol):
    rng = np.random.default_rng(seed)
    weights = [mx.array(rng.standard_normal(x.shape), dtype=mx.float64) for x in _as_list(fn(mx.array(m_np, dtype=mx.float64)))]

    def loss(m):
        return sum(mx.sum(x * w) for x, w in zip(_as_list(fn(m)), weights))

    g = to_np(mx.grad(loss)(mx.array(m_np, dtype=mx.float64)))
    direction = rng.standard_normal(m_np.shape)
    h = 1e-6
    fd = (loss(mx.array(m_np + h * direction, dtype=mx.float64)) - loss(mx.array(m_np - h * direction, dtype=mx.float64))).item() / (2 * h)
    np.testing.assert_allclose(np.sum(g * direction), fd, rtol=rtol, atol=1e-8)


def _as_list(x):
    return list(x) if isinstance(x, (tuple, list)) else [x]


@pytest.mark.float64
def test_svd_gradient_matches_central_differences():
    m_np = with_singular_values(np.array([[3.0, 1.5, 0.4], [2.0, 1.0, 0.5]]), 21)

    def sign_invariant(m):
        u, s, vt = linalg.svd3(m)
        # u_i v_i^T is invariant to the arbitrary sign of each singular pair
        return s, mx.sum(u[..., :, :, None] * vt[..., None, :, :], axis=-2)

    _check_gradient(sign_invariant, m_np, 22, rtol=1e-6)


@pytest.mark.float64
@pytest.mark.parametrize("kind", ["noisy_rotation", "reflection", "general"])
def test_project_to_so3_gradient_matches_central_differences(kind):
    rng = np.random.default_rng(31)
    r_np = rotations(3, 31)
    m_np = {"noisy_rotation": r_np + 1e-3 * rng.standard_normal((3, 3, 3)),
            "reflection": -r_np + 0.1 * rng.standard_normal((3, 3, 3)),
            "general": rng.standard_normal((3, 3, 3))}[kind]
    _check_gradient(linalg.project_to_so3, m_np, 32, rtol=1e-6)


def test_project_to_so3_gradient_is_finite_in_float32_at_a_rotation():
    r = mx.array(rotations(4, 41), dtype=mx.float32)
    w = mx.array(np.random.default_rng(4).standard_normal((4, 3, 3)), dtype=mx.float32)
    g = to_np(mx.grad(lambda m: mx.sum(linalg.project_to_so3(m) * w))(r))
    assert np.all(np.isfinite(g))
    # at a rotation the polar factor's derivative is R skew(R^T dM) / 1: gM = R skew(R^T W) / 1
    r64, w64 = to_np(r), to_np(w)
    k = np.swapaxes(r64, -1, -2) @ w64
    np.testing.assert_allclose(g, r64 @ (0.5 * (k - np.swapaxes(k, -1, -2))), atol=1e-5)


def test_svd_gradient_is_finite_for_repeated_singular_values():
    r = mx.array(rotations(3, 51))
    g = mx.grad(lambda m: mx.sum(linalg.svd3(m)[1] * mx.arange(3)) + mx.sum(linalg.svd3(m)[0]))(r)
    assert np.all(np.isfinite(to_np(g)))


def test_svd3_and_project_are_device_safe():
    def make(batch):
        return (mx.array(np.random.default_rng(batch).standard_normal((batch, 3, 3)), dtype=mx.float32),)

    assert_device_safe(linalg.svd3, make)
    assert_device_safe(linalg.project_to_so3, make)
