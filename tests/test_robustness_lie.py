"""Robustness campaign for mlxgeom.lie (tests/ROBUSTNESS.md; machinery in test_robustness_harness.py)."""

from __future__ import annotations

import numpy as np

from mlxgeom import lie
from test_robustness_harness import Arg, Spec, const, define_tests, normal, poses, rotations

RNG = np.random.default_rng(11)
AXIS = np.array([0.48, -0.6, 0.64])  # unit
# Rotations with drift: ||R^T R - I|| ~ 1e-3.
DRIFT_R = rotations(RNG, ()) + 1e-3 * RNG.normal(size=(3, 3))
PI_X = np.diag([1.0, -1.0, -1.0])  # angle exactly pi
NEAR_PI = np.array([[1.0, 0, 0], [0, -1.0, -1e-7], [0, 1e-7, -1.0]])


def _pose(r: np.ndarray, t=(0.3, -0.2, 1.0)) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, t
    return m


def tangent_cases(dim: int, rot: slice, singular_2pi: bool = False) -> dict[str, tuple[list, str]]:
    """Rotation tangents at 0, tiny, pi, -pi, 2 pi and huge norms, placed in the ``rot`` part of a ``dim`` vector."""
    cases = {}
    for name, angle in [("zero", 0.0), ("tiny_1e-12", 1e-12), ("pi", np.pi), ("minus_pi", -np.pi),
                        ("two_pi", 2 * np.pi), ("huge_1e6", 1e6)]:
        v = np.zeros(dim)
        v[rot] = angle * AXIS[: rot.stop - rot.start]
        expect = "any" if (singular_2pi and name in ("two_pi", "huge_1e6")) else "valid"
        cases[name] = ([v], expect)
    return cases


def rotation_cases() -> dict[str, tuple[list, str]]:
    return {"identity": ([np.eye(3)], "valid"), "angle_pi": ([PI_X], "valid"), "near_pi": ([NEAR_PI], "valid"),
            "drift_1e-3": ([DRIFT_R], "valid")}


def pose_cases() -> dict[str, tuple[list, str]]:
    return {"identity": ([np.eye(4)], "valid"), "angle_pi": ([_pose(PI_X)], "valid"),
            "near_pi": ([_pose(NEAR_PI)], "valid"), "drift_1e-3": ([_pose(DRIFT_R)], "valid"),
            "translation_1e6": ([_pose(np.eye(3), (1e6, -1e6, 1e6))], "valid")}


def sl3_matrices(rng, b):
    m = np.eye(3) + 0.1 * rng.normal(size=b + (3, 3))
    return m / np.cbrt(np.linalg.det(m))[..., None, None]


def _so3_specs() -> list[Spec]:
    vec3, rot = Arg((3,), normal(3)), Arg((3, 3), rotations)
    tan = tangent_cases(3, slice(0, 3))
    tan_inv = tangent_cases(3, slice(0, 3), singular_2pi=True)
    pts = Arg((3,), normal(3))
    return [
        Spec("so3_exp", lie.so3_exp, [vec3], specials=tan),
        Spec("rotvec_to_matrix", lie.rotvec_to_matrix, [vec3], specials=tan),
        Spec("so3_log", lie.so3_log, [rot], specials=rotation_cases()),
        Spec("matrix_to_rotvec", lie.matrix_to_rotvec, [rot], specials=rotation_cases()),
        Spec("so3_hat", lie.so3_hat, [vec3]),
        Spec("so3_vee", lie.so3_vee, [Arg((3, 3), normal(3, 3))]),
        Spec("so3_inverse", lie.so3_inverse, [rot], specials=rotation_cases()),
        Spec("so3_compose", lie.so3_compose, [rot, rot]),
        Spec("so3_act", lie.so3_act, [rot, pts],
             specials={"point_1e6": ([None, np.full(3, 1e6)], "valid"), "drift": ([DRIFT_R, None], "valid")}),
        Spec("so3_left_jacobian", lie.so3_left_jacobian, [vec3], specials=tan),
        Spec("so3_right_jacobian", lie.so3_right_jacobian, [vec3], specials=tan),
        Spec("so3_left_jacobian_inv", lie.so3_left_jacobian_inv, [vec3], specials=tan_inv),
        Spec("so3_right_jacobian_inv", lie.so3_right_jacobian_inv, [vec3], specials=tan_inv),
    ]


def _rotation_specs() -> list[Spec]:
    rot = Arg((3, 3), rotations)
    quat_cases = {"zero_quaternion": ([np.zeros(4)], "valid"), "unnormalised": ([np.array([2.0, 0, 0, 0])], "valid"),
                  "tiny_1e-20": ([np.array([1e-20, 1e-20, 0, 0])], "any"), "w_negative": ([np.array([-1.0, 0, 0, 0])], "valid")}
    sixd_cases = {"collinear_columns": ([np.array([1.0, 0, 0, 2.0, 0, 0])], "any"),
                  "zero": ([np.zeros(6)], "any"), "scale_1e6": ([np.array([1e6, 0, 0, 0, 1e6, 0])], "valid")}
    euler_cases = {"gimbal_lock": ([np.array([0.3, np.pi / 2, 0.2])], "valid"), "zero": ([np.zeros(3)], "valid"),
                   "pi": ([np.array([np.pi, np.pi, -np.pi])], "valid"), "huge_1e6": ([np.full(3, 1e6)], "valid")}
    mat_cases = rotation_cases() | {"gimbal_lock": ([np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])], "valid")}
    return [
        Spec("quaternion_to_matrix", lie.quaternion_to_matrix, [Arg((4,), normal(4))], specials=quat_cases),
        Spec("quaternion_to_matrix_xyzw", lambda q: lie.quaternion_to_matrix(q, "xyzw"), [Arg((4,), normal(4))]),
        Spec("matrix_to_quaternion", lie.matrix_to_quaternion, [rot], specials=mat_cases),
        Spec("matrix_to_quaternion_xyzw", lambda r: lie.matrix_to_quaternion(r, "xyzw"), [rot]),
        Spec("euler_to_matrix_XYZ", lambda a: lie.euler_to_matrix(a, "XYZ"), [Arg((3,), normal(3))], specials=euler_cases),
        Spec("euler_to_matrix_zxz", lambda a: lie.euler_to_matrix(a, "zxz"), [Arg((3,), normal(3))], specials=euler_cases),
        Spec("matrix_to_euler_XYZ", lambda r: lie.matrix_to_euler(r, "XYZ"), [rot], specials=mat_cases),
        Spec("matrix_to_euler_zxz", lambda r: lie.matrix_to_euler(r, "zxz"), [rot],
             specials=mat_cases | {"identity_gimbal": ([np.eye(3)], "valid")}),
        Spec("matrix_to_sixd", lie.matrix_to_sixd, [rot]),
        Spec("sixd_to_matrix", lie.sixd_to_matrix, [Arg((6,), normal(6))], specials=sixd_cases),
    ]


def _se3_specs() -> list[Spec]:
    vec6, pose = Arg((6,), normal(6)), Arg((4, 4), poses)
    tan = tangent_cases(6, slice(3, 6))
    tan = tan | {"rho_1e6": ([np.array([1e6, -1e6, 1e6, 0.1, 0.2, 0.3])], "valid")}
    tan_inv = tangent_cases(6, slice(3, 6), singular_2pi=True)
    return [
        Spec("se3_exp", lie.se3_exp, [vec6], specials=tan),
        Spec("se3_exp_matrix_exp", lambda x: lie.se3_exp(x, method="matrix_exp"), [vec6],
             specials={k: v for k, v in tan.items() if k not in ("huge_1e6", "rho_1e6")}),
        Spec("se3_log", lie.se3_log, [pose], specials=pose_cases()),
        Spec("se3_hat", lie.se3_hat, [vec6]),
        Spec("se3_vee", lie.se3_vee, [Arg((4, 4), normal(4, 4))]),
        Spec("se3_inverse", lie.se3_inverse, [pose], specials=pose_cases()),
        Spec("se3_compose", lie.se3_compose, [pose, pose]),
        Spec("se3_act", lie.se3_act, [pose, Arg((3,), normal(3))],
             specials={"point_1e6": ([None, np.full(3, 1e6)], "valid")}),
        Spec("se3_adjoint", lie.se3_adjoint, [pose], specials=pose_cases()),
        Spec("se3_from_rt", lie.se3_from_rt, [Arg((3, 3), rotations), Arg((3,), normal(3))]),
        Spec("se3_left_jacobian", lie.se3_left_jacobian, [vec6], specials=tan),
        Spec("se3_right_jacobian", lie.se3_right_jacobian, [vec6], specials=tan),
        Spec("se3_left_jacobian_inv", lie.se3_left_jacobian_inv, [vec6], specials=tan_inv),
        Spec("se3_right_jacobian_inv", lie.se3_right_jacobian_inv, [vec6], specials=tan_inv),
    ]


def _sl3_specs() -> list[Spec]:
    vec8 = Arg((8,), normal(8, scale=0.3))
    h = Arg((3, 3), sl3_matrices)
    tan = {"zero": ([np.zeros(8)], "valid"), "tiny_1e-12": ([np.full(8, 1e-12)], "valid"),
           "beyond_max_norm_1e6": ([np.full(8, 1e6)], "flagged")}
    hcases = {"identity": ([np.eye(3)], "valid"), "singular": ([np.diag([1.0, 1.0, 0.0])], "flagged"),
              "negative_det": ([-np.eye(3) * 2.0], "valid"), "scale_1e6": ([np.diag([1e6, 1e6, 1e6])], "valid"),
              "zero": ([np.zeros((3, 3))], "flagged"), "rotation_pi": ([PI_X], "flagged")}
    return [
        Spec("sl3_exp", lie.sl3_exp, [vec8], specials=tan),
        Spec("sl3_log_ex", lie.sl3_log_ex, [h], mask=lambda r: r[1], specials=hcases),
        Spec("sl3_log", lie.sl3_log, [h], specials={"identity": ([np.eye(3)], "valid")}),
        Spec("sl3_hat", lie.sl3_hat, [vec8]),
        Spec("sl3_vee", lie.sl3_vee, [Arg((3, 3), normal(3, 3))]),
        Spec("sl3_inverse", lie.sl3_inverse, [h], specials={"singular": ([np.diag([1.0, 1.0, 0.0])], "flagged")}),
        Spec("sl3_compose", lie.sl3_compose, [h, h]),
        Spec("sl3_act", lie.sl3_act, [h, Arg((3,), normal(3))]),
        Spec("sl3_adjoint", lie.sl3_adjoint, [h], specials={"singular": ([np.diag([1.0, 1.0, 0.0])], "flagged")}),
        Spec("sl3_left_jacobian", lie.sl3_left_jacobian, [vec8], specials=tan),
        Spec("sl3_right_jacobian", lie.sl3_right_jacobian, [vec8], specials=tan),
    ]


def _class_specs() -> list[Spec]:
    rot, pose, h = Arg((3, 3), rotations), Arg((4, 4), poses), Arg((3, 3), sl3_matrices)
    specs = []
    for cls, dim, arg in [(lie.SO3, 3, rot), (lie.SE3, 6, pose), (lie.SL3, 8, h)]:
        n = cls.__name__
        tan = Arg((dim,), normal(dim, scale=0.3))
        specs += [
            Spec(f"{n}.exp", lambda x, c=cls: c.exp(x).matrix, [tan]),
            Spec(f"{n}.log", lambda m, c=cls: c(m).log(), [arg]),
            Spec(f"{n}.inverse", lambda m, c=cls: c(m).inverse().matrix, [arg]),
            Spec(f"{n}.compose", lambda a, b, c=cls: (c(a) @ c(b)).matrix, [arg, arg]),
            Spec(f"{n}.adjoint", lambda m, c=cls: c(m).adjoint(), [arg]),
            Spec(f"{n}.rplus", lambda m, d, c=cls: c(m).rplus(d).matrix, [arg, tan]),
            Spec(f"{n}.rminus", lambda a, b, c=cls: c(a).rminus(c(b)), [arg, arg]),
            Spec(f"{n}.from_matrix_project", lambda m, c=cls: c.from_matrix(m, project=True).matrix,
                 [Arg(arg.trailing, normal(*arg.trailing, shift=0.0) if n == "SL3" else arg.gen)],
                 specials={"drift": ([_pose(DRIFT_R) if n == "SE3" else DRIFT_R], "valid")} if n != "SL3" else {}),
            Spec(f"{n}.interpolate", lambda a, b, t, c=cls: c.interpolate(c(a), c(b), t).matrix, [arg, arg, Arg((), const(0.3))]),
        ]
    specs += [
        Spec("SO3.as_quaternion", lambda m: lie.SO3(m).as_quaternion(), [rot]),
        Spec("SO3.from_6d", lambda x: lie.SO3.from_6d(x).matrix, [Arg((6,), normal(6))]),
        Spec("SE3.from_rt", lambda r, t: lie.SE3.from_rt(r, t).matrix, [rot, Arg((3,), normal(3))]),
        Spec("SE3.act", lambda m, p: lie.SE3(m) @ p, [pose, Arg((3,), normal(3))]),
        Spec("SE3.left_jacobian_inv", lie.SE3.left_jacobian_inv, [Arg((6,), normal(6))]),
    ]
    return specs


SPECS = _so3_specs() + _rotation_specs() + _se3_specs() + _sl3_specs() + _class_specs()
globals().update(define_tests(SPECS, hypothesis_examples=4))
