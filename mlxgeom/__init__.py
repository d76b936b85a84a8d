"""mlxgeom: batched, differentiable 3D vision geometry for MLX that stays on the GPU.

Subpackages (imports only point down): ``linalg`` (small-matrix det/inv/solve, eigh, svd3,
solve_spd, matrix_exp), ``lie`` (SO(3), SE(3), SL(3)), ``camera`` (Camera, distortion,
projection, OpenCV/COLMAP/OpenGL interop), ``homography`` (DLT, RANSAC, SL(3) refinement,
warping), ``solve`` (Levenberg-Marquardt, normal equations, robust losses, RANSAC),
``optim`` (PnP, triangulation), ``epipolar`` (two-view geometry), ``sfm`` (bundle adjustment) and
``calibration`` (Zhang + LM, many cameras at once). The names used most are re-exported here.
"""

from . import calibration, camera, epipolar, homography, lie, linalg, optim, sfm, solve
from .calibration import calibrate_camera
from .camera import Camera, FisheyeCamera, distort_points, pixel_grid, project_points, undistort_points, unproject_points
from .epipolar import (
    correct_matches,
    decompose_essential_matrix,
    find_essential_matrix,
    find_fundamental_matrix,
    recover_pose,
    sampson_distance,
    stereo_rectify,
)
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
    "Camera", "Cauchy", "FisheyeCamera", "GemanMcClure", "HomographyResult", "Huber", "SE3", "SL3", "SO3",
    "SoftL1", "Tukey", "__version__", "bundle_adjust", "bundle_adjust_model", "calibrate_camera", "calibration",
    "camera", "correct_matches", "decompose_essential_matrix", "decompose_homography", "distort_points",
    "epipolar", "euler_to_matrix", "find_essential_matrix", "find_fundamental_matrix", "find_homography",
    "homography", "levenberg_marquardt", "lie", "linalg", "matrix_to_euler", "matrix_to_quaternion",
    "matrix_to_rotvec", "optim", "perspective_transform", "pixel_grid", "project_points",
    "quaternion_to_matrix", "recover_pose", "rotvec_to_matrix", "sampson_distance", "se3_act", "se3_adjoint",
    "se3_compose", "se3_exp", "se3_inverse", "se3_log", "sfm", "sl3_exp", "sl3_log", "so3_act", "so3_exp",
    "so3_log", "solve", "solve_pnp", "solve_pnp_ransac", "stereo_rectify", "triangulate_points",
    "undistort_points", "unproject_points", "warp_perspective",
]
