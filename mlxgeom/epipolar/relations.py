"""Essential and fundamental matrices from poses and intrinsics.

Conventions (docs/epipolar.md): a relative pose ``T = [R | t]`` (*, 4, 4) maps camera-1
coordinates to camera-2 coordinates, ``X2 = R X1 + t`` (OpenCV's ``R, T`` of ``stereoRectify``
and ``recoverPose``). Then ``E = [t]x R`` and ``x2^T E x1 = 0`` for normalised image points
(``K^-1 [u, v, 1]``), and ``F = K2^-T E K1^-1`` with ``p2^T F p1 = 0`` for pixels
(Hartley and Zisserman, *Multiple View Geometry*, 2nd ed., eqs. 9.12 and 9.18).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import linalg
from .._checks import as_float, as_floats, broadcast_batch, cast_out, check_trailing
from ..lie import se3_compose, se3_inverse, so3_hat


def _pose(pose: Any, name: str = "pose") -> tuple[mx.array, mx.Dtype]:
    pose, out = as_float(pose, name)
    if pose.ndim < 2 or pose.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"{name}: expected shape (*, 4, 4) or (*, 3, 4), got {tuple(pose.shape)}")
    return pose, out


def _essential(r: mx.array, t: mx.array) -> mx.array:
    return linalg.matmul(so3_hat(t), r)


def essential_from_pose(pose: Any) -> mx.array:
    """Essential matrix ``E = [t]x R`` (*, 3, 3) of a camera-2-from-camera-1 pose.

    Args:
        pose: (*, 4, 4) or (*, 3, 4) ``[R | t]`` with ``X2 = R X1 + t``.

    Returns:
        (*, 3, 3) E with ``x2^T E x1 = 0`` for normalised points; its scale is ``|t|``.

    Example:
        >>> import mlx.core as mx
        >>> pose = mx.array([[1.0, 0, 0, -1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        >>> essential_from_pose(pose).tolist()
        [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]
    """
    pose, out = _pose(pose)
    return cast_out(_essential(pose[..., :3, :3], pose[..., :3, 3]), out)


def fundamental_from_essential(E: Any, K1: Any, K2: Any) -> mx.array:
    """Fundamental matrix ``F = K2^-T E K1^-1`` (*, 3, 3).

    Args:
        E: (*, 3, 3) essential matrices (``x2^T E x1 = 0`` in normalised coordinates).
        K1, K2: (*, 3, 3) intrinsics of camera 1 and camera 2 (batch dims broadcast).

    Returns:
        (*, 3, 3) F with ``p2^T F p1 = 0`` for pixels, not rescaled (E's scale carries over).

    Example:
        >>> import mlx.core as mx
        >>> K = mx.array([[2.0, 0, 0], [0, 2, 0], [0, 0, 1]])
        >>> fundamental_from_essential(mx.eye(3), K, K).tolist()
        [[0.25, 0.0, 0.0], [0.0, 0.25, 0.0], [0.0, 0.0, 1.0]]
    """
    (e, k1, k2), out = as_floats(E, K1, K2, names=("E", "K1", "K2"))
    for x, name in ((e, "E"), (k1, "K1"), (k2, "K2")):
        check_trailing(x, (3, 3), name)
    broadcast_batch(e.shape[:-2], k1.shape[:-2], k2.shape[:-2], names=("E", "K1", "K2"))
    f = linalg.matmul(linalg.matmul(linalg.inv(k2).swapaxes(-1, -2), e), linalg.inv(k1))
    return cast_out(f, out)


def relative_pose(camera1: Any, camera2: Any) -> mx.array:
    """Camera-2-from-camera-1 pose (*, 4, 4) of two cameras with world-to-camera poses.

    ``T = T2 T1^-1``: ``X2 = R X1 + t`` for a point's coordinates in the two camera frames.

    Example:
        >>> import mlx.core as mx
        >>> from mlxgeom.camera import Camera
        >>> c2 = Camera(mx.eye(3), mx.array([[1.0, 0, 0, -1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
        >>> relative_pose(Camera(mx.eye(3)), c2)[:3, 3].tolist()
        [-1.0, 0.0, 0.0]
    """
    for c, name in ((camera1, "camera1"), (camera2, "camera2")):
        if not hasattr(c, "pose"):
            raise TypeError(f"{name}: expected a Camera (with K and a world-to-camera pose), got {type(c).__name__}")
    return se3_compose(camera2.pose, se3_inverse(camera1.pose))


def fundamental_from_cameras(camera1: Any, camera2: Any) -> mx.array:
    """Fundamental matrix (*, 3, 3) of two posed cameras: ``p2^T F p1 = 0``.

    ``F`` maps a pixel of image 1 to its epipolar line ``F p1`` in image 2, from the relative
    pose ``T2 T1^-1`` (:func:`relative_pose`) and the cameras' K. It relates undistorted
    pixels: lens distortion is not part of F (undistort with ``Camera.undistort_points`` first).

    Args:
        camera1, camera2: ``mlxgeom.camera.Camera`` batches (world-to-camera poses), broadcast.

    Returns:
        (*, 3, 3) F, scaled by the baseline (``|t|``), as :func:`fundamental_from_essential`.

    Example:
        >>> import mlx.core as mx
        >>> from mlxgeom.camera import Camera
        >>> K = mx.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]])
        >>> pose2 = mx.array([[1.0, 0, 0, -1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        >>> F = fundamental_from_cameras(Camera(K), Camera(K, pose2))
        >>> p1, p2 = mx.array([70.0, 30.0, 1.0]), mx.array([20.0, 30.0, 1.0])  # X = (0.4, -0.4, 2)
        >>> abs((p2 @ F @ p1).item()) < 1e-6
        True
    """
    rel = relative_pose(camera1, camera2)
    e = _essential(rel[..., :3, :3], rel[..., :3, 3])
    return fundamental_from_essential(e, camera1.K, camera2.K)
