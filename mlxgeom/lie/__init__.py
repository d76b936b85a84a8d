"""Lie groups SO(3), SE(3), SL(3): functional core on plain arrays and thin NamedTuple classes.

Conventions: rotation vectors in radians; se(3) tangents [rho (translation), phi (rotation)];
quaternions wxyz by default; RIGHT perturbations ``X <- X exp(d)`` in ``rplus``/``rminus``.
"""

from .groups import SE3, SL3, SO3, MatrixLieGroup
from .rotations import (
    euler_to_matrix,
    matrix_to_euler,
    matrix_to_quaternion,
    matrix_to_rotvec,
    matrix_to_sixd,
    quaternion_to_matrix,
    rotvec_to_matrix,
    sixd_to_matrix,
)
from .se3 import (
    se3_act,
    se3_adjoint,
    se3_compose,
    se3_exp,
    se3_from_rt,
    se3_hat,
    se3_inverse,
    se3_left_jacobian,
    se3_left_jacobian_inv,
    se3_log,
    se3_right_jacobian,
    se3_right_jacobian_inv,
    se3_vee,
)
from .sl3 import (
    sl3_act,
    sl3_adjoint,
    sl3_compose,
    sl3_exp,
    sl3_hat,
    sl3_inverse,
    sl3_left_jacobian,
    sl3_log,
    sl3_log_ex,
    sl3_right_jacobian,
    sl3_vee,
)
from .so3 import (
    so3_act,
    so3_compose,
    so3_exp,
    so3_hat,
    so3_inverse,
    so3_left_jacobian,
    so3_left_jacobian_inv,
    so3_log,
    so3_right_jacobian,
    so3_right_jacobian_inv,
    so3_vee,
)

__all__ = [
    "MatrixLieGroup", "SE3", "SL3", "SO3",
    "euler_to_matrix", "matrix_to_euler", "matrix_to_quaternion", "matrix_to_rotvec", "matrix_to_sixd",
    "quaternion_to_matrix", "rotvec_to_matrix", "sixd_to_matrix",
    "se3_act", "se3_adjoint", "se3_compose", "se3_exp", "se3_from_rt", "se3_hat", "se3_inverse",
    "se3_left_jacobian", "se3_left_jacobian_inv", "se3_log", "se3_right_jacobian", "se3_right_jacobian_inv", "se3_vee",
    "sl3_act", "sl3_adjoint", "sl3_compose", "sl3_exp", "sl3_hat", "sl3_inverse", "sl3_left_jacobian", "sl3_log",
    "sl3_log_ex", "sl3_right_jacobian", "sl3_vee",
    "so3_act", "so3_compose", "so3_exp", "so3_hat", "so3_inverse", "so3_left_jacobian", "so3_left_jacobian_inv",
    "so3_log", "so3_right_jacobian", "so3_right_jacobian_inv", "so3_vee",
]
