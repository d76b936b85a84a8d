"""SE(3) functional core: exp (both methods) against scipy expm, log near pi, Jacobians, adjoint."""

import mlx.core as mx
import numpy as np
import pytest
import scipy.linalg
from helpers import FLOAT_DTYPES, on_cpu, to_np
from scipy.spatial.transform import Rotation
from test_lie_samplers import SAMPLERS, rotvecs, twists

from mlxgeom import lie

ATOL = {mx.float32: 3e-6, mx.float64: 1e-13}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _hat_np(xi):
    with on_cpu():
        return to_np(lie.se3_hat(mx.array(xi, dtype=mx.float64)))


def _expm_ref(xi):
    return np.stack([scipy.linalg.expm(h) for h in _hat_np(xi)])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_closed_form_exp_matches_scipy_expm(kind, dtype):
    xi = twists(kind, 32, _rng(1))
    got = to_np(lie.se3_exp(mx.array(xi, dtype=dtype)))
    np.testing.assert_allclose(got, _expm_ref(xi), atol=ATOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_closed_form_equals_matrix_exp_path_over_angles_zero_to_pi(dtype):
    rng = _rng(2)
    angles = np.concatenate([[0.0, 1e-7, 1e-3], np.linspace(0.1, np.pi, 30), [np.pi - 1e-4]])
    phi = rotvecs("haar", len(angles), rng)
    phi = phi / np.maximum(np.linalg.norm(phi, axis=-1, keepdims=True), 1e-30) * angles[:, None]
    xi = mx.array(np.concatenate([rng.standard_normal((len(angles), 3)), phi], axis=-1), dtype=dtype)
    closed = to_np(lie.se3_exp(xi))
    via_expm = to_np(lie.se3_exp(xi, method="matrix_exp"))
    np.testing.assert_allclose(closed, via_expm, atol=3 * ATOL[dtype])
    np.testing.assert_allclose(closed, _expm_ref(to_np(xi)), atol=ATOL[dtype])


def test_unknown_exp_method_raises():
    with pytest.raises(ValueError, match="closed_form"):
        lie.se3_exp(mx.zeros(6), method="pade")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_log_inverts_exp_including_near_pi(kind, dtype):
    xi = twists(kind, 32, _rng(3))
    t = _expm_ref(xi)
    got = to_np(lie.se3_log(mx.array(t, dtype=dtype)))
    # Near pi, rho = J_l^-1 t has entries ~ |t| pi / 2: the bound scales with it.
    tol = ATOL[dtype] * (10 if kind == "near_pi" else 1)
    np.testing.assert_allclose(got, xi, atol=tol, rtol=0)
    again = to_np(lie.se3_exp(lie.se3_log(mx.array(t, dtype=dtype))))
    np.testing.assert_allclose(again, t, atol=tol)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("angle", [0.0, 1e-7, 1.0, np.pi - 1e-4])
def test_log_exp_gradient_is_identity_at_special_angles(angle, dtype):
    xi = mx.array(np.r_[0.3, -0.2, 0.5, np.array([0.48, -0.6, 0.64]) * angle], dtype=dtype)
    w = mx.array(np.arange(1.0, 7.0), dtype=dtype)
    g = to_np(mx.grad(lambda x: mx.sum(w * lie.se3_log(lie.se3_exp(x))))(xi))
    assert np.all(np.isfinite(g))
    tol = 1e-11 if dtype == mx.float64 else (5e-3 if angle > 3 else 5e-5)
    np.testing.assert_allclose(g, to_np(w), atol=tol * 6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_jacobians_match_jvp_of_exp(kind, dtype):
    xi = mx.array(twists(kind, 16, _rng(4)), dtype=dtype)
    d = mx.array(_rng(5).standard_normal((16, 6)), dtype=dtype)
    t = lie.se3_exp(xi)
    _, (dt,) = mx.jvp(lie.se3_exp, [xi], [d])
    left = lie.se3_vee(lie.se3_compose(dt, lie.se3_inverse(t)))
    right = lie.se3_vee(lie.se3_compose(lie.se3_inverse(t), dt))
    apply = lambda j, v: mx.sum(j * v[..., None, :], axis=-1)  # noqa: E731
    np.testing.assert_allclose(to_np(left), to_np(apply(lie.se3_left_jacobian(xi), d)), atol=10 * ATOL[dtype])
    np.testing.assert_allclose(to_np(right), to_np(apply(lie.se3_right_jacobian(xi), d)), atol=10 * ATOL[dtype])


@pytest.mark.parametrize("kind", ["haar", "near_pi", "identity"])
def test_right_jacobian_matches_central_differences(kind):
    xi = twists(kind, 6, _rng(6))
    h = 1e-6
    jr = to_np(lie.se3_right_jacobian(mx.array(xi, dtype=mx.float64)))
    t0_inv = to_np(lie.se3_inverse(mx.array(_expm_ref(xi), dtype=mx.float64)))
    for k in range(6):
        e = np.eye(6)[k] * h
        lp = lie.se3_log(mx.array(t0_inv @ _expm_ref(xi + e), dtype=mx.float64))
        lm = lie.se3_log(mx.array(t0_inv @ _expm_ref(xi - e), dtype=mx.float64))
        np.testing.assert_allclose((to_np(lp) - to_np(lm)) / (2 * h), jr[:, :, k], atol=2e-7)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_inverse_jacobians_invert_the_jacobians(kind, dtype):
    xi = mx.array(twists(kind, 16, _rng(7)), dtype=dtype)
    for j, ji in [(lie.se3_left_jacobian, lie.se3_left_jacobian_inv), (lie.se3_right_jacobian, lie.se3_right_jacobian_inv)]:
        prod = to_np(ji(xi)) @ to_np(j(xi))
        np.testing.assert_allclose(prod, np.broadcast_to(np.eye(6), prod.shape), atol=30 * ATOL[dtype])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_exp_of_adjoint_is_conjugation(dtype):
    rng = _rng(8)
    x = mx.array(_expm_ref(twists("haar", 16, rng)), dtype=dtype)
    xi = mx.array(twists("haar", 16, rng) * 0.5, dtype=dtype)
    ad_xi = mx.sum(lie.se3_adjoint(x) * xi[..., None, :], axis=-1)
    lhs = lie.se3_exp(ad_xi)
    rhs = lie.se3_compose(lie.se3_compose(x, lie.se3_exp(xi)), lie.se3_inverse(x))
    np.testing.assert_allclose(to_np(lhs), to_np(rhs), atol=10 * ATOL[dtype])
    # J_l = Ad(exp(xi)) J_r
    jl = to_np(lie.se3_left_jacobian(xi))
    np.testing.assert_allclose(jl, to_np(lie.se3_adjoint(lie.se3_exp(xi))) @ to_np(lie.se3_right_jacobian(xi)), atol=10 * ATOL[dtype])


def test_inverse_compose_act_and_from_rt_agree_with_numpy():
    rng = _rng(9)
    r = Rotation.random(5, random_state=rng).as_matrix()
    t = rng.standard_normal((5, 3))
    p = rng.standard_normal((5, 3))
    tm = lie.se3_from_rt(mx.array(r, dtype=mx.float64), mx.array(t, dtype=mx.float64))
    ref = np.tile(np.eye(4), (5, 1, 1))
    ref[:, :3, :3], ref[:, :3, 3] = r, t
    np.testing.assert_allclose(to_np(tm), ref, atol=0)
    np.testing.assert_allclose(to_np(lie.se3_inverse(tm)), np.linalg.inv(ref), atol=1e-14)
    np.testing.assert_allclose(to_np(lie.se3_compose(tm, tm)), ref @ ref, atol=1e-14)
    np.testing.assert_allclose(to_np(lie.se3_act(tm, mx.array(p, dtype=mx.float64))), np.einsum("bij,bj->bi", r, p) + t, atol=1e-14)


@pytest.mark.parametrize(
    "fn, shape",
    [(lie.se3_exp, (3,)), (lie.se3_hat, (2, 5)), (lie.se3_log, (3, 3)), (lie.se3_vee, (4, 3)), (lie.se3_inverse, (3, 4)),
     (lie.se3_adjoint, (6, 6)), (lie.se3_left_jacobian, (3,)), (lie.se3_right_jacobian_inv, (7,))],
)
def test_bad_shapes_raise_value_error(fn, shape):
    with pytest.raises(ValueError, match=r"\(\*, [46]"):
        fn(mx.zeros(shape))


def test_bad_point_shapes_raise_value_error():
    with pytest.raises(ValueError, match=r"\(\*, 3\)"):
        lie.se3_act(mx.eye(4), mx.zeros((2, 4)))
    with pytest.raises(ValueError):
        lie.se3_compose(mx.eye(4), mx.eye(3))
