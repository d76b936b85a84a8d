"""Synthetic bundle-adjustment problems (BAL-like sizes) for tests, examples and benchmarks.

Host-side numpy generator: cameras on a ring around a cloud of points, looking at its centre;
each point is observed by a random set of cameras; pixels get Gaussian noise; the start is the
truth with perturbed poses and points.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import numpy as np

from ..camera import Camera


class SyntheticProblem(NamedTuple):
    """A BA problem and its ground truth (poses world-to-camera).

    Attributes:
        cameras: (C,) :class:`~mlxgeom.camera.Camera` intrinsics (one per image).
        poses: (C, 4, 4) perturbed start.
        points: (P, 3) perturbed start.
        observations: (O, 2) noisy pixels.
        camera_index: (O,) int32 numpy.
        point_index: (O,) int32 numpy.
        true_poses: (C, 4, 4).
        true_points: (P, 3).
    """

    cameras: Camera
    poses: mx.array
    points: mx.array
    observations: mx.array
    camera_index: np.ndarray
    point_index: np.ndarray
    true_poses: mx.array
    true_points: mx.array


def _look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera (4, 4) of a camera at ``center`` looking at ``target`` (y down)."""
    z = target - center
    z /= np.sqrt(z @ z)
    x = np.cross(np.array([0.0, -1.0, 0.0]), z)
    x /= np.sqrt(x @ x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ center
    return T


def _rotvec_matrix(v: np.ndarray) -> np.ndarray:
    th = np.sqrt(np.sum(v * v, axis=-1, keepdims=True))[..., None]
    k = np.zeros((*v.shape[:-1], 3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    ths = np.where(th > 1e-12, th, 1.0)
    return np.eye(3) + np.sin(ths) / ths * k + (1 - np.cos(ths)) / ths**2 * (k @ k)


def synthetic_problem(num_cameras: int, num_points: int, observations_per_point: float = 4.0, *,
                      noise: float = 0.5, rotation_noise: float = 0.002, translation_noise: float = 0.01,
                      point_noise: float = 0.02, focal: float = 500.0, size: tuple[int, int] = (1024, 768),
                      dist: tuple[float, ...] | None = None, seed: int = 0) -> SyntheticProblem:
    """A BA problem with ``num_points * observations_per_point`` observations (on average).

    Args:
        num_cameras: C >= 2.
        num_points: P.
        observations_per_point: mean track length (>= 2; Ladybug-49 has 4.1, Dubrovnik-356 5.5).
        noise: pixel noise sigma.
        rotation_noise, translation_noise, point_noise: perturbation of the start (radians, scene units).
        focal: focal length in pixels; the principal point is the image centre.
        size: image (width, height).
        dist: OpenCV distortion coefficients of every camera, or None.
        seed: numpy seed.

    Returns:
        :class:`SyntheticProblem`.

    Example:
        >>> p = synthetic_problem(5, 100, seed=1)
        >>> p.poses.shape, p.points.shape, p.observations.shape[1]
        ((5, 4, 4), (100, 3), 2)
    """
    rng = np.random.default_rng(seed)
    ang = np.linspace(0.0, 2.0 * np.pi, num_cameras, endpoint=False) * 0.5  # a half ring
    centers = np.stack([4.0 * np.sin(ang), rng.uniform(-0.3, 0.3, num_cameras), -4.0 * np.cos(ang)], axis=-1)
    T = np.stack([_look_at(c, rng.normal(0.0, 0.05, 3)) for c in centers])
    X = rng.uniform(-1.0, 1.0, (num_points, 3))
    k = np.clip(np.round(rng.normal(observations_per_point, 1.0, num_points)), 2, num_cameras).astype(int)
    order = np.argsort(rng.random((num_points, num_cameras)), axis=1)
    mask = np.arange(num_cameras)[None, :] < k[:, None]
    pt = np.repeat(np.arange(num_points), k)
    cam = order[mask]
    K = np.array([[focal, 0, size[0] / 2], [0, focal, size[1] / 2], [0, 0, 1]])
    d = None if dist is None else mx.array(np.tile(np.asarray(dist, np.float32), (num_cameras, 1)))
    cams = Camera(mx.array(np.tile(K, (num_cameras, 1, 1)).astype(np.float32)), dist=d,
                  size=mx.array(np.tile(np.asarray(size, np.float32), (num_cameras, 1))))
    true_poses, true_points = mx.array(T.astype(np.float32)), mx.array(X.astype(np.float32))
    cam_i, pt_i = mx.array(cam, dtype=mx.int32), mx.array(pt, dtype=mx.int32)
    px = cams.select(cam_i).with_pose(true_poses[cam_i]).project(true_points[pt_i][:, None])[0]
    obs = np.array(px[:, 0]) + rng.normal(0.0, noise, (cam.size, 2))
    dR = _rotvec_matrix(rng.normal(0.0, rotation_noise, (num_cameras, 3)))
    T0 = T.copy()
    T0[:, :3, :3] = dR @ T[:, :3, :3]
    T0[:, :3, 3] += rng.normal(0.0, translation_noise, (num_cameras, 3))
    X0 = X + rng.normal(0.0, point_noise, X.shape)
    return SyntheticProblem(cams, mx.array(T0.astype(np.float32)), mx.array(X0.astype(np.float32)),
                            mx.array(obs.astype(np.float32)), cam.astype(np.int32), pt.astype(np.int32),
                            true_poses, true_points)
