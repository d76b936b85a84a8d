"""Camera-axis conventions: OpenCV / COLMAP versus OpenGL / NeRF / Blender.

mlxgeom stores world-to-camera poses with OpenCV axes (x right, y down, z forward, the
camera looks along +z). OpenGL, NeRF's ``transforms.json`` and Blender store
camera-to-world matrices with x right, y up, z backward (the camera looks along -z). The
two camera frames differ by a rotation of pi about x, ``F = diag(1, -1, -1)``:

    c2w_opencv = c2w_opengl @ diag(1, -1, -1, 1)     (negate the y and z columns)
    pose (world-to-camera, OpenCV) = inverse(c2w_opencv)

Both directions are exact sign flips plus a closed-form rigid inverse.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import lie
from .._checks import as_float, cast_out, check_square


def _check_pose(x: Any, name: str) -> tuple[mx.array, mx.Dtype]:
    a, out = as_float(x, name)
    check_square(a, (4,), name)
    return a, out


def _flip_yz_columns(m: mx.array) -> mx.array:
    sign = mx.array([1.0, -1.0, -1.0, 1.0], dtype=m.dtype)
    return m * sign


def opengl_to_opencv_c2w(c2w: Any) -> mx.array:
    """Camera-to-world with OpenGL axes (*, 4, 4) -> camera-to-world with OpenCV axes.

    The map negates columns 1 and 2 and is its own inverse.

    Example:
        >>> opengl_to_opencv_c2w(mx.eye(4))[1, 1].item()
        -1.0
    """
    m, out = _check_pose(c2w, "c2w")
    return cast_out(_flip_yz_columns(m), out)


def opencv_to_opengl_c2w(c2w: Any) -> mx.array:
    """Camera-to-world with OpenCV axes (*, 4, 4) -> OpenGL axes (same sign flip).

    Example:
        >>> opencv_to_opengl_c2w(mx.eye(4))[2, 2].item()
        -1.0
    """
    return opengl_to_opencv_c2w(c2w)


def pose_from_opengl_c2w(c2w: Any) -> mx.array:
    """World-to-camera OpenCV pose (*, 4, 4) from an OpenGL / NeRF camera-to-world (*, 4, 4).

    Example:
        >>> c2w = mx.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]])
        >>> pose_from_opengl_c2w(c2w)[2, 3].item()  # camera at z = 5 looking down -z
        5.0
    """
    m, out = _check_pose(c2w, "c2w")
    return cast_out(lie.se3_inverse(_flip_yz_columns(m)), out)


def pose_to_opengl_c2w(pose: Any) -> mx.array:
    """OpenGL / NeRF camera-to-world (*, 4, 4) from a world-to-camera OpenCV pose.

    Example:
        >>> pose_to_opengl_c2w(mx.eye(4))[1, 1].item()
        -1.0
    """
    m, out = _check_pose(pose, "pose")
    return cast_out(_flip_yz_columns(lie.se3_inverse(m)), out)


def nerf_intrinsics(camera_angle_x: Any, width: int, height: int) -> mx.array:
    """K (*, 3, 3) of NeRF's ``transforms.json`` (horizontal field of view in radians).

    ``f = 0.5 W / tan(0.5 camera_angle_x)``, square pixels; NeRF shoots rays through
    integer pixel indices with the principal point at (W / 2, H / 2), which is the same
    point in OpenCV's integer-centre convention.

    Example:
        >>> round(nerf_intrinsics(1.5707963, 100, 80)[0, 0].item(), 3)
        50.0
    """
    from .intrinsics import intrinsics_matrix

    a, out = as_float(camera_angle_x, "camera_angle_x")
    f = 0.5 * width / mx.tan(0.5 * a)
    return cast_out(intrinsics_matrix(f, f, width / 2.0 * mx.ones_like(f), height / 2.0 * mx.ones_like(f)), out)
