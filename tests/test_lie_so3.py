"""SO(3) functional core against scipy Rotation and cv2.Rodrigues, at identity, tiny angles and near pi."""

import cv2
import mlx.core as mx
import numpy as np
import pytest
from helpers import FLOAT_DTYPES, to_np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation
from test_lie_samplers import SAMPLERS, rotvecs

from mlxgeom import lie

# Measured float32 / float64 errors are ~4e-7 / ~2e-15; bounds keep a ~3-5x margin.
ATOL = {mx.float32: 2e-6, mx.float64: 1e-14}


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_exp_matches_scipy_from_rotvec(kind, dtype):
    v = rotvecs(kind, 64, _rng())
    r = lie.so3_exp(mx.array(v, dtype=dtype))
    assert r.dtype == dtype
    np.testing.assert_allclose(to_np(r), Rotation.from_rotvec(v).as_matrix(), atol=ATOL[dtype], rtol=0)


@pytest.mark.parametrize("kind", SAMPLERS)
def test_exp_and_log_match_cv2_rodrigues(kind):
    v = rotvecs(kind, 16, _rng(3))
    for x in v:
        ref, _ = cv2.Rodrigues(x)
        np.testing.assert_allclose(to_np(lie.so3_exp(mx.array(x))), ref, atol=2e-6)
        back, _ = cv2.Rodrigues(ref)
        got = to_np(lie.so3_log(mx.array(ref, dtype=mx.float64)))
        # cv2 loses precision near pi and at tiny angles (acos-based); compare loosely there.
        np.testing.assert_allclose(got, back[:, 0], atol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_log_matches_scipy_as_rotvec(kind, dtype):
    v = rotvecs(kind, 64, _rng(1))
    m = Rotation.from_rotvec(v).as_matrix()
    got = to_np(lie.so3_log(mx.array(m, dtype=dtype)))
    np.testing.assert_allclose(got, Rotation.from_matrix(m).as_rotvec(), atol=ATOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_log_is_relatively_exact_near_identity(dtype):
    v = rotvecs("tiny", 64, _rng(2))
    got = to_np(lie.so3_log(lie.so3_exp(mx.array(v, dtype=dtype))))
    rel = np.linalg.norm(got - v, axis=-1) / np.linalg.norm(v, axis=-1)
    assert rel.max() < (3e-7 if dtype == mx.float32 else 1e-15)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_log_at_exactly_pi_gives_angle_pi_and_the_axis_up_to_sign(dtype):
    axes = np.eye(3)[[0, 1, 2]] + 0.3 * np.eye(3)[[1, 2, 0]]
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    m = Rotation.from_rotvec(np.pi * axes).as_matrix()
    got = to_np(lie.so3_log(mx.array(m, dtype=dtype)))
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), np.pi, atol=ATOL[dtype] * 4)
    np.testing.assert_allclose(np.abs(np.sum(got / np.pi * axes, axis=-1)), 1.0, atol=ATOL[dtype])


@settings(max_examples=8)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(SAMPLERS))
def test_exp_log_round_trips_in_both_directions(seed, kind):
    v = rotvecs(kind, 32, _rng(seed))
    x = mx.array(v, dtype=mx.float64)
    np.testing.assert_allclose(to_np(lie.so3_log(lie.so3_exp(x))), v, atol=1e-14)
    r = Rotation.from_rotvec(v).as_matrix()
    again = lie.so3_exp(lie.so3_log(mx.array(r, dtype=mx.float64)))
    np.testing.assert_allclose(to_np(again), r, atol=1e-14)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("angle", [0.0, 1e-7, 0.5, 1.0, 2.0, np.pi - 1e-4])
def test_gradients_of_exp_and_log_are_finite_and_exact(angle, dtype):
    axis = np.array([0.48, -0.6, 0.64])
    phi = mx.array(axis * angle, dtype=dtype)
    w = mx.array([0.3, -1.2, 0.7], dtype=dtype)
    # log(exp(phi)) = phi, so its VJP is the identity.
    g = mx.grad(lambda p: mx.sum(w * lie.so3_log(lie.so3_exp(p))))(phi)
    tol = 1e-12 if dtype == mx.float64 else (3e-3 if angle > 3 else 2e-5)
    np.testing.assert_allclose(to_np(g), to_np(w), atol=tol)
    # d exp(phi)[d] = hat(J_l d) exp(phi): compare the VJP against the closed-form Jacobian.
    c = mx.array(np.arange(9.0).reshape(3, 3) / 9, dtype=dtype)
    gexp = mx.grad(lambda p: mx.sum(c * lie.so3_exp(p)))(phi)
    r, jl = to_np(lie.so3_exp(phi)), to_np(lie.so3_left_jacobian(phi))
    hats = [to_np(lie.so3_hat(mx.array(np.eye(3)[k]))) for k in range(3)]
    ref = np.array([np.sum(to_np(c) * (sum(jl[i, k] * hats[i] for i in range(3)) @ r)) for k in range(3)])
    assert np.all(np.isfinite(to_np(g))) and np.all(np.isfinite(to_np(gexp)))
    np.testing.assert_allclose(to_np(gexp), ref, atol=10 * ATOL[dtype])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_jacobians_match_jvp_of_exp(kind, dtype):
    v = mx.array(rotvecs(kind, 16, _rng(4)), dtype=dtype)
    d = mx.array(_rng(5).standard_normal((16, 3)), dtype=dtype)
    r = lie.so3_exp(v)
    _, (dr,) = mx.jvp(lie.so3_exp, [v], [d])
    left = lie.so3_vee(lie.so3_compose(dr, lie.so3_inverse(r)))
    right = lie.so3_vee(lie.so3_compose(lie.so3_inverse(r), dr))
    tol = 10 * ATOL[dtype]
    np.testing.assert_allclose(to_np(left), to_np(lie.so3_act(lie.so3_left_jacobian(v), d)), atol=tol)
    np.testing.assert_allclose(to_np(right), to_np(lie.so3_act(lie.so3_right_jacobian(v), d)), atol=tol)


@pytest.mark.parametrize("kind", SAMPLERS)
def test_jacobians_match_central_differences(kind):
    v = rotvecs(kind, 8, _rng(6))
    h = 1e-6
    jr = to_np(lie.so3_right_jacobian(mx.array(v, dtype=mx.float64)))
    r0 = Rotation.from_rotvec(v).as_matrix()
    for k in range(3):
        e = np.eye(3)[k] * h
        rp = to_np(lie.so3_exp(mx.array(v + e, dtype=mx.float64)))
        rm = to_np(lie.so3_exp(mx.array(v - e, dtype=mx.float64)))
        # log(R0^T R(v + e)) ~= J_r e
        col = (Rotation.from_matrix(np.swapaxes(r0, -1, -2) @ rp).as_rotvec()
               - Rotation.from_matrix(np.swapaxes(r0, -1, -2) @ rm).as_rotvec()) / (2 * h)
        np.testing.assert_allclose(col, jr[:, :, k], atol=1e-8)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_inverse_jacobians_invert_the_jacobians(kind, dtype):
    v = mx.array(rotvecs(kind, 16, _rng(7)), dtype=dtype)
    eye = np.eye(3)
    for j, ji in [(lie.so3_left_jacobian, lie.so3_left_jacobian_inv), (lie.so3_right_jacobian, lie.so3_right_jacobian_inv)]:
        prod = to_np(lie.so3_compose(ji(v), j(v)))
        # J^-1 grows like 1/(2 pi - t): near pi its entries are ~pi/2, so allow a few ulp of that.
        np.testing.assert_allclose(prod, np.broadcast_to(eye, prod.shape), atol=20 * ATOL[dtype])


def test_right_jacobian_is_left_jacobian_rotated():
    v = mx.array(rotvecs("haar", 16, _rng(8)), dtype=mx.float64)
    # J_l = R J_r (Sola et al. eq. 145)
    np.testing.assert_allclose(
        to_np(lie.so3_left_jacobian(v)), to_np(lie.so3_compose(lie.so3_exp(v), lie.so3_right_jacobian(v))), atol=1e-14
    )


def test_hat_is_cross_product_and_vee_inverts_it():
    a, b = _rng(9).standard_normal((2, 10, 3))
    ha = lie.so3_hat(mx.array(a))
    np.testing.assert_allclose(to_np(lie.so3_act(ha, mx.array(b))), np.cross(a, b), atol=1e-5)
    np.testing.assert_allclose(to_np(lie.so3_vee(ha)), a, atol=0)


def test_act_broadcasts_one_rotation_over_a_point_cloud():
    v = rotvecs("haar", 4, _rng(10))
    p = _rng(11).standard_normal((4, 7, 3))
    r = lie.so3_exp(mx.array(v, dtype=mx.float64))
    got = to_np(lie.so3_act(r[:, None], mx.array(p, dtype=mx.float64)))
    ref = np.einsum("bij,bnj->bni", Rotation.from_rotvec(v).as_matrix(), p)
    np.testing.assert_allclose(got, ref, atol=1e-14)


def test_float16_input_is_computed_in_float32_and_returned_in_float16():
    r = lie.so3_exp(mx.array([0.1, 0.2, 0.3], dtype=mx.float16))
    assert r.dtype == mx.float16
    np.testing.assert_allclose(to_np(r), Rotation.from_rotvec([0.1, 0.2, 0.3]).as_matrix(), atol=2e-3)


@pytest.mark.parametrize(
    "fn, arg",
    [(lie.so3_exp, (4, 4)), (lie.so3_hat, (2,)), (lie.so3_log, (3, 4)), (lie.so3_vee, (4, 4)),
     (lie.so3_left_jacobian, (5, 2)), (lie.so3_right_jacobian_inv, (6,)), (lie.so3_inverse, (2, 2))],
)
def test_bad_shapes_raise_value_error_naming_the_shape(fn, arg):
    with pytest.raises(ValueError, match=r"\(\*, 3"):
        fn(mx.zeros(arg))
    with pytest.raises(ValueError):
        lie.so3_act(mx.eye(3), mx.zeros((4, 2)))
    with pytest.raises(ValueError):
        lie.so3_act(mx.zeros((2, 3, 3)), mx.zeros((3, 3)))
