"""mlxgeom: batched, differentiable 3D vision geometry for MLX that stays on the GPU.

Subpackages (imports only point down): ``linalg`` (small-matrix det/inv/solve, eigh, svd3,
solve_spd, matrix_exp), ``lie`` (SO(3), SE(3), SL(3)), ``camera`` (Camera, distortion,
projection, OpenCV/COLMAP/OpenGL interop), ``homography`` (DLT, RANSAC, SL(3) refinement,
warping), ``solve`` (Levenberg-Marquardt, normal equations, robust losses, RANSAC),
``optim`` (PnP, triangulation) and ``sfm`` (bundle adjustment). The names used most are re-exported here.
"""

from . import camera, homography, lie, linalg, optim, sfm, solve
from .camera import Camera, FisheyeCamera, distort_points, pixel_grid, project_points, undistort_points, unproject_points
from .homography import HomographyResult, decompose_homography, find_homography, perspective_transform, warp_perspective
from .lie import (
    SE3,
    SL3,
    SO3,
    euler_to_matrix,
    matrix_to_euler,
    matrix_to_quaternion,
    matrix_to_rotvec,
    quaternion_to_matrix,
    rotvec_to_matrix,
    se3_act,
    se3_adjoint,
    se3_compose,
    se3_exp,
    se3_inverse,
    se3_log,
    sl3_exp,
    sl3_log,
    so3_act,
    so3_exp,
    so3_log,
)
from .optim import (
    Cauchy,
    GemanMcClure,
    Huber,
    SoftL1,
    Tukey,
    levenberg_marquardt,
    solve_pnp,
    solve_pnp_ransac,
    triangulate_points,
)
from .sfm import bundle_adjust, bundle_adjust_model

__version__ = "0.1.0"

__all__ = [
    "SE3", "SL3", "SO3", "Camera", "Cauchy", "FisheyeCamera", "GemanMcClure", "HomographyResult", "Huber",
    "SoftL1", "Tukey", "__version__", "camera", "decompose_homography", "distort_points", "euler_to_matrix",
    "find_homography", "homography", "levenberg_marquardt", "lie", "linalg", "matrix_to_euler",
    "matrix_to_quaternion", "matrix_to_rotvec", "optim", "perspective_transform", "pixel_grid", "project_points",
    "quaternion_to_matrix", "rotvec_to_matrix", "se3_act", "se3_adjoint", "se3_compose", "se3_exp", "se3_inverse",
    "se3_log", "sl3_exp", "sl3_log", "so3_act", "so3_exp", "so3_log", "solve", "solve_pnp", "solve_pnp_ransac",
    "triangulate_points", "undistort_points", "unproject_points", "warp_perspective",
    "bundle_adjust", "bundle_adjust_model", "sfm",
]
