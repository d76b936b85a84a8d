"""Quaternion / Euler / 6D conversions against scipy Rotation (both quaternion orders, 12 sequences)."""

import mlx.core as mx
import numpy as np
import pytest
from helpers import FLOAT_DTYPES, to_np
from scipy.spatial.transform import Rotation
from test_lie_samplers import SAMPLERS, rotvecs

from mlxgeom import lie

ATOL = {mx.float32: 2e-6, mx.float64: 1e-14}
SEQS = ["xyz", "zyx", "xzy", "yxz", "XYZ", "ZYX", "YZX", "zxz", "xyx", "ZXZ", "YXY", "XZX"]


def _canonical(q_xyzw):
    return q_xyzw * np.where(q_xyzw[..., 3:] < 0, -1.0, 1.0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize("order", ["wxyz", "xyzw"])
def test_matrix_to_quaternion_matches_scipy_in_both_orders(order, kind, dtype):
    rot = Rotation.from_rotvec(rotvecs(kind, 64, np.random.default_rng(0)))
    ref = _canonical(rot.as_quat())
    if order == "wxyz":
        ref = ref[:, [3, 0, 1, 2]]
    got = to_np(lie.matrix_to_quaternion(mx.array(rot.as_matrix(), dtype=dtype), order=order))
    np.testing.assert_allclose(got, ref, atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("order", ["wxyz", "xyzw"])
def test_quaternion_to_matrix_matches_scipy_and_normalises(order, dtype):
    q = np.random.default_rng(1).standard_normal((64, 4)) * 3
    ref = Rotation.from_quat(q if order == "xyzw" else q[:, [1, 2, 3, 0]]).as_matrix()
    got = to_np(lie.quaternion_to_matrix(mx.array(q, dtype=dtype), order=order))
    np.testing.assert_allclose(got, ref, atol=ATOL[dtype])


def test_zero_quaternion_maps_to_identity():
    np.testing.assert_allclose(to_np(lie.quaternion_to_matrix(mx.zeros(4))), np.eye(3))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("seq", SEQS)
def test_euler_round_trip_matches_scipy(seq, dtype):
    rot = Rotation.random(64, random_state=np.random.default_rng(2))
    ang = rot.as_euler(seq)
    got_m = to_np(lie.euler_to_matrix(mx.array(ang, dtype=dtype), seq))
    np.testing.assert_allclose(got_m, rot.as_matrix(), atol=ATOL[dtype])
    got = to_np(lie.matrix_to_euler(mx.array(rot.as_matrix(), dtype=dtype), seq))
    # Angles are ill-conditioned near gimbal lock (middle angle near its limits): loosen there.
    np.testing.assert_allclose(got, ang, atol=ATOL[dtype] * (30 if dtype == mx.float32 else 10))


@pytest.mark.parametrize("seq", ["xyz", "ZYX", "zxz", "XZX"])
def test_euler_in_gimbal_lock_reconstructs_the_rotation_like_scipy(seq):
    proper = seq[0].lower() == seq[2].lower()
    mids = [0.0, np.pi] if proper else [np.pi / 2, -np.pi / 2]
    ang = np.array([[0.7, m, -0.4] for m in mids])
    rot = Rotation.from_euler(seq, ang)
    got = to_np(lie.matrix_to_euler(mx.array(rot.as_matrix(), dtype=mx.float64), seq))
    with pytest.warns(UserWarning):
        ref = rot.as_euler(seq)
    np.testing.assert_allclose(got, ref, atol=1e-7)
    np.testing.assert_allclose(Rotation.from_euler(seq, got).as_matrix(), rot.as_matrix(), atol=1e-12)


def test_euler_gradient_is_finite_in_gimbal_lock():
    r = mx.array(Rotation.from_euler("xyz", [0.3, np.pi / 2, 0.2]).as_matrix(), dtype=mx.float64)
    g = mx.grad(lambda m: mx.sum(lie.matrix_to_euler(m, "xyz")))(r)
    assert np.all(np.isfinite(to_np(g)))


@pytest.mark.parametrize("seq", ["xyzx", "xxy", "XyZ", "abc"])
def test_bad_sequences_raise_value_error(seq):
    with pytest.raises(ValueError, match="seq"):
        lie.euler_to_matrix(mx.zeros(3), seq)


def test_bad_quaternion_order_and_shape_raise_value_error():
    with pytest.raises(ValueError, match="order"):
        lie.quaternion_to_matrix(mx.zeros(4), order="wzyx")
    with pytest.raises(ValueError, match=r"\(\*, 4\)"):
        lie.quaternion_to_matrix(mx.zeros(3))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_sixd_is_gram_schmidt_on_columns_and_inverts_matrix_to_sixd(dtype):
    x = np.random.default_rng(3).standard_normal((32, 6))
    got = to_np(lie.sixd_to_matrix(mx.array(x, dtype=dtype)))
    q, rr = np.linalg.qr(np.stack([x[:, :3], x[:, 3:]], axis=-1))
    q = q * np.sign(np.diagonal(rr, axis1=-2, axis2=-1))[:, None, :]
    np.testing.assert_allclose(got[..., :2], q, atol=ATOL[dtype] * 5)
    np.testing.assert_allclose(np.linalg.det(got), 1.0, atol=ATOL[dtype] * 5)
    rot = Rotation.random(8, random_state=np.random.default_rng(4)).as_matrix()
    back = lie.sixd_to_matrix(lie.matrix_to_sixd(mx.array(rot, dtype=dtype)))
    np.testing.assert_allclose(to_np(back), rot, atol=ATOL[dtype])


def test_rotvec_aliases_are_exp_and_log():
    v = mx.array([0.1, -0.4, 0.2])
    np.testing.assert_array_equal(to_np(lie.rotvec_to_matrix(v)), to_np(lie.so3_exp(v)))
    np.testing.assert_array_equal(to_np(lie.matrix_to_rotvec(lie.so3_exp(v))), to_np(lie.so3_log(lie.so3_exp(v))))


@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e30, 1e-30])
def test_quaternion_to_matrix_is_scale_free_in_float32(scale):
    # |q|^2 of 1e20 q overflows float32 and of 1e-20 q underflows: the rotation must not care.
    q = np.random.default_rng(21).normal(size=(16, 4))
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    got = np.array(lie.quaternion_to_matrix(mx.array(q * scale, dtype=mx.float32)))
    np.testing.assert_allclose(got, ref, atol=5e-7)
    got = np.array(lie.quaternion_to_matrix(mx.array(q[:, [1, 2, 3, 0]] * scale, dtype=mx.float32), "xyzw"))
    np.testing.assert_allclose(got, ref, atol=5e-7)
