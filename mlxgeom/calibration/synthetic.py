"""Synthetic calibration data: a checkerboard's inner corners seen from random tilted poses.

For tests, benchmarks and examples (host-side generation with a seeded numpy RNG; the
projection is the library's :func:`mlxgeom.camera.project_points`).
"""

from __future__ import annotations

import numpy as np

import mlx.core as mx

from ..camera import project_points
from ..lie import se3_from_rt, so3_exp

#: The synthetic test camera: 640 x 480, fx 800, fy 780, principal point near the centre.
DEFAULT_K = ((800.0, 0.0, 322.0), (0.0, 780.0, 236.0), (0.0, 0.0, 1.0))
DEFAULT_DIST = (-0.25, 0.09, 0.0012, -0.0007, 0.0)


def board_points(rows: int = 6, cols: int = 9, square: float = 0.03) -> np.ndarray:
    """(rows * cols, 3) float64 inner corners in the board plane z = 0, row-major as OpenCV returns them.

    Example:
        >>> board_points(2, 3, 1.0)[:, :2].tolist()
        [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    """
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64) * square
    return np.stack([x.ravel(), y.ravel(), np.zeros(rows * cols)], axis=-1)


def random_board_poses(num_views: int, center: np.ndarray, rng: np.random.Generator, max_tilt: float = 0.6,
                       distance: float = 0.5) -> np.ndarray:
    """(num_views, 4, 4) board-to-camera poses: tilts up to ``max_tilt`` rad about x and y, the
    board centre ~``distance`` in front of the camera."""
    tilt = rng.uniform(-max_tilt, max_tilt, size=(num_views, 2))
    spin = rng.uniform(-0.3, 0.3, size=(num_views, 1))
    rvec = np.concatenate([tilt, spin], axis=-1)
    R = np.array(so3_exp(mx.array(rvec, dtype=mx.float32)), dtype=np.float64)
    offset = np.concatenate([rng.uniform(-0.04, 0.04, size=(num_views, 2)),
                             rng.uniform(0.85, 1.15, size=(num_views, 1)) * distance], axis=-1)
    t = offset - R @ center
    return np.array(se3_from_rt(mx.array(R), mx.array(t)))


def synthetic_views(num_views: int = 15, noise: float = 0.3, seed: int = 0, K=DEFAULT_K, dist=DEFAULT_DIST,
                    rows: int = 6, cols: int = 9, square: float = 0.03, max_tilt: float = 0.6):
    """Board corners seen from ``num_views`` random poses, with Gaussian pixel noise.

    Returns:
        ``(object_points (V, N, 3), image_points (V, N, 2), K (3, 3), dist (k,), poses (V, 4, 4))``
        as float32 ``mx.array``.

    Example:
        >>> obj, img, K, dist, poses = synthetic_views(num_views=4)
        >>> obj.shape, img.shape
        ((4, 54, 3), (4, 54, 2))
    """
    rng = np.random.default_rng(seed)
    board = board_points(rows, cols, square)
    poses = random_board_poses(num_views, board.mean(axis=0), rng, max_tilt)
    K_, dist_ = np.asarray(K, dtype=np.float64), np.asarray(dist, dtype=np.float64)
    obj = np.broadcast_to(board, (num_views, *board.shape))
    px = np.array(project_points(mx.array(obj, dtype=mx.float32), mx.array(K_, dtype=mx.float32),
                                 mx.array(poses, dtype=mx.float32),
                                 mx.array(dist_, dtype=mx.float32) if dist_.size else None).pixels)
    px = px + noise * rng.standard_normal(px.shape)
    return (mx.array(obj, dtype=mx.float32), mx.array(px, dtype=mx.float32), mx.array(K_, dtype=mx.float32),
            mx.array(dist_, dtype=mx.float32), mx.array(poses, dtype=mx.float32))
