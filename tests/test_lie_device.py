"""Every public function of mlxgeom.lie: no CPU-only primitive, compiles, same result at two batch sizes."""

import mlx.core as mx
import numpy as np
import pytest
from helpers import assert_device_safe

from mlxgeom import lie
from mlxgeom.lie import SE3, SL3, SO3


def _a(*shape, scale=1.0, seed=0):
    return mx.array(np.random.default_rng(seed).standard_normal(shape) * scale, dtype=mx.float32)


def _rot(b):
    return lie.so3_exp(_a(b, 3))


def _pose(b):
    return lie.se3_exp(_a(b, 6))


def _hom(b):
    return lie.sl3_exp(_a(b, 8, scale=0.3))


CASES = {
    "so3_hat": (lie.so3_hat, lambda b: [_a(b, 3)]),
    "so3_vee": (lie.so3_vee, lambda b: [_a(b, 3, 3)]),
    "so3_exp": (lie.so3_exp, lambda b: [_a(b, 3)]),
    "so3_log": (lie.so3_log, lambda b: [_rot(b)]),
    "so3_inverse": (lie.so3_inverse, lambda b: [_rot(b)]),
    "so3_compose": (lie.so3_compose, lambda b: [_rot(b), _rot(b)]),
    "so3_act": (lie.so3_act, lambda b: [_rot(b)[:, None], _a(b, 4, 3)]),
    "so3_left_jacobian": (lie.so3_left_jacobian, lambda b: [_a(b, 3)]),
    "so3_right_jacobian": (lie.so3_right_jacobian, lambda b: [_a(b, 3)]),
    "so3_left_jacobian_inv": (lie.so3_left_jacobian_inv, lambda b: [_a(b, 3)]),
    "so3_right_jacobian_inv": (lie.so3_right_jacobian_inv, lambda b: [_a(b, 3)]),
    "se3_hat": (lie.se3_hat, lambda b: [_a(b, 6)]),
    "se3_vee": (lie.se3_vee, lambda b: [_a(b, 4, 4)]),
    "se3_exp": (lie.se3_exp, lambda b: [_a(b, 6)]),
    "se3_exp_matrix_exp": (lambda x: lie.se3_exp(x, method="matrix_exp"), lambda b: [_a(b, 6)]),
    "se3_log": (lie.se3_log, lambda b: [_pose(b)]),
    "se3_inverse": (lie.se3_inverse, lambda b: [_pose(b)]),
    "se3_compose": (lie.se3_compose, lambda b: [_pose(b), _pose(b)]),
    "se3_act": (lie.se3_act, lambda b: [_pose(b), _a(b, 3)]),
    "se3_adjoint": (lie.se3_adjoint, lambda b: [_pose(b)]),
    "se3_from_rt": (lie.se3_from_rt, lambda b: [_rot(b), _a(b, 3)]),
    "se3_left_jacobian": (lie.se3_left_jacobian, lambda b: [_a(b, 6)]),
    "se3_right_jacobian": (lie.se3_right_jacobian, lambda b: [_a(b, 6)]),
    "se3_left_jacobian_inv": (lie.se3_left_jacobian_inv, lambda b: [_a(b, 6)]),
    "se3_right_jacobian_inv": (lie.se3_right_jacobian_inv, lambda b: [_a(b, 6)]),
    "sl3_hat": (lie.sl3_hat, lambda b: [_a(b, 8)]),
    "sl3_vee": (lie.sl3_vee, lambda b: [_a(b, 3, 3)]),
    "sl3_exp": (lie.sl3_exp, lambda b: [_a(b, 8, scale=0.3)]),
    "sl3_log_ex": (lie.sl3_log_ex, lambda b: [_hom(b)]),
    "sl3_inverse": (lie.sl3_inverse, lambda b: [_hom(b)]),
    "sl3_compose": (lie.sl3_compose, lambda b: [_hom(b), _hom(b)]),
    "sl3_act": (lie.sl3_act, lambda b: [_hom(b), _a(b, 3)]),
    "sl3_adjoint": (lie.sl3_adjoint, lambda b: [_hom(b)]),
    "sl3_left_jacobian": (lie.sl3_left_jacobian, lambda b: [_a(b, 8, scale=0.3)]),
    "quaternion_to_matrix": (lie.quaternion_to_matrix, lambda b: [_a(b, 4)]),
    "matrix_to_quaternion": (lambda r: lie.matrix_to_quaternion(r, order="xyzw"), lambda b: [_rot(b)]),
    "euler_to_matrix": (lambda a: lie.euler_to_matrix(a, "ZYX"), lambda b: [_a(b, 3)]),
    "matrix_to_euler": (lambda r: lie.matrix_to_euler(r, "zxz"), lambda b: [_rot(b)]),
    "sixd_to_matrix": (lie.sixd_to_matrix, lambda b: [_a(b, 6)]),
    "matrix_to_sixd": (lie.matrix_to_sixd, lambda b: [_rot(b)]),
    "SO3_methods": (lambda r, p: (SO3(r).rplus(p), SO3(r).rminus(SO3(r).inverse()), SO3(r) @ p,
                                  SO3.interpolate(SO3(r), SO3(r).inverse(), 0.3)), lambda b: [_rot(b), _a(b, 3)]),
    "SO3_mean": (lambda r: SO3(r).mean(method="karcher", iterations=2), lambda b: [_rot(b)]),
    "SE3_methods": (lambda t, d: (SE3(t).rplus(d), SE3(t).rminus(SE3(t).inverse()), SE3(t).adjoint()),
                    lambda b: [_pose(b), _a(b, 6)]),
    "SL3_methods": (lambda h, d: (SL3(h).rplus(d), SL3(h).rminus(SL3(h).inverse())), lambda b: [_hom(b), _a(b, 8, scale=0.1)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_public_function_is_device_safe_and_compiles_at_two_batch_sizes(name):
    fn, make = CASES[name]
    assert_device_safe(fn, make)


@pytest.mark.parametrize("name", ["so3_exp", "so3_log", "se3_exp", "se3_log", "matrix_to_euler", "sl3_log_ex"])
def test_nan_in_one_entry_does_not_leak_into_the_others(name):
    fn, make = CASES[name]
    args = make(3)
    poisoned = [mx.concatenate([mx.full(a[:1].shape, float("nan")), a[1:]]) for a in args[:1]] + args[1:]
    out = fn(*poisoned)
    out = out[0] if isinstance(out, tuple) else out
    assert np.all(np.isfinite(np.array(out[1:])))
