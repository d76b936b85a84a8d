"""Cameras: intrinsics, lens distortion, projection, OpenCV / COLMAP / OpenGL interop."""

from .camera import Camera, FisheyeCamera
from .distortion import tilt_matrix
from .intrinsics import crop_intrinsics, intrinsics_inverse, intrinsics_matrix, scale_intrinsics
from .projection import (
    Projection,
    ProjectionJacobian,
    Rays,
    Unprojection,
    distort_points,
    pixel_grid,
    pixel_rays,
    project_points,
    project_points_jacobian,
    undistort_points,
    unproject_points,
)

__all__ = [
    "Camera",
    "FisheyeCamera",
    "Projection",
    "ProjectionJacobian",
    "Rays",
    "Unprojection",
    "crop_intrinsics",
    "distort_points",
    "intrinsics_inverse",
    "intrinsics_matrix",
    "pixel_grid",
    "pixel_rays",
    "project_points",
    "project_points_jacobian",
    "scale_intrinsics",
    "tilt_matrix",
    "undistort_points",
    "unproject_points",
]
