"""Cameras: intrinsics, lens distortion, projection, OpenCV / COLMAP / OpenGL interop.

Functional core on plain arrays (``project_points``, ``unproject_points``, ``undistort_points`` ...)
and the :class:`Camera` tuple-of-arrays class on top. Poses are world-to-camera with OpenCV axes.
"""

from . import colmap
from .camera import Camera, FisheyeCamera
from .conventions import (
    nerf_intrinsics, opencv_to_opengl_c2w, opengl_to_opencv_c2w, pose_from_opengl_c2w, pose_to_opengl_c2w,
)
from .distortion import tilt_matrix
from .images import remap, undistort_image, undistort_map
from .intrinsics import crop_intrinsics, intrinsics_inverse, intrinsics_matrix, scale_intrinsics
from .projection import (
    Projection, ProjectionJacobian, Rays, Unprojection, distort_points, pixel_grid, pixel_rays, project_points,
    project_points_jacobian, undistort_points, unproject_points,
)

__all__ = [
    "Camera", "FisheyeCamera", "Projection", "ProjectionJacobian", "Rays", "Unprojection", "colmap",
    "crop_intrinsics", "distort_points", "intrinsics_inverse", "intrinsics_matrix", "nerf_intrinsics",
    "opencv_to_opengl_c2w", "opengl_to_opencv_c2w", "pixel_grid", "pixel_rays", "pose_from_opengl_c2w",
    "pose_to_opengl_c2w", "project_points", "project_points_jacobian", "remap", "scale_intrinsics", "tilt_matrix",
    "undistort_image", "undistort_map", "undistort_points", "unproject_points",
]
