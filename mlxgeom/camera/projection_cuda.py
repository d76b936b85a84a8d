"""CUDA fast paths for projection (OpenCV and fisheye lenses) and unprojection (OpenCV) (``kernels/project.cu``,
``kernels/unproject.cu``): one thread per (camera, point) pair runs the whole pure path (pose,
perspective division, the lens model of ``kernels/lens.cuh`` with its Newton steps, intrinsics,
validity) in registers, where MLX's fused kernels take 3.5-10x a same-size copy on an H200.

Broadcasting: the cameras are packed (C, M), C = 1 or the product of the output's batch dims; each
per-point input is (P, N, d), P = 1 (points shared by every camera) or that product. A thread finds
its camera and its point by index arithmetic, so neither is broadcast in memory. ``projection.py``
wraps these with :func:`mlxgeom._cuda.fast_path`, which differentiates them as the pure path.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._cuda import launch, on_cuda


def enabled(arrays: list[mx.array], dist: mx.array | None, model: str, models: tuple[str, ...] = ("opencv",)) -> bool:
    """Whether a kernel applies: CUDA, float32 throughout, a lens model it has (``models``: the
    unprojection kernel has the OpenCV model, the projection kernel also the fisheye one), something
    to compute."""
    return (all(a.dtype == mx.float32 for a in arrays) and (dist is None or model in models)
            and all(a.size > 0 for a in arrays) and on_cuda())


def _pack_camera(K: mx.array, pose: mx.array | None, dist: mx.array | None) -> mx.array:
    """(*c, M): fx, fy, cx, cy, skew, then the pose's [R | t] row-major (12), then the coefficients."""
    parts = [mx.stack([K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 0, 1]], axis=-1)]
    if pose is not None:
        parts.append(pose[..., :3, :].reshape(*pose.shape[:-2], 12))
    if dist is not None:
        parts.append(dist)
    batch = mx.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return mx.concatenate([mx.broadcast_to(p, (*batch, p.shape[-1])) for p in parts], axis=-1)


def _rows(a: mx.array, batch: tuple[int, ...], tail: int) -> mx.array:
    """(*b, *tail) -> (1 or prod(batch), *tail) for a kernel input, broadcast only where it must be."""
    if math.prod(a.shape[: a.ndim - tail]) == 1:
        return a.reshape(1, *a.shape[a.ndim - tail:])
    if tuple(a.shape[: a.ndim - tail]) != batch:
        a = mx.broadcast_to(a, (*batch, *a.shape[a.ndim - tail:]))
    return a.reshape(math.prod(batch), *a.shape[a.ndim - tail:])


def _run(name: str, cam: mx.array, per_point: dict[str, mx.array], limit: float, batch: tuple[int, ...], n: int,
         outputs: dict[str, int], template: list) -> list[mx.array]:
    """Kernel ``name`` on one (camera, point) pair per thread; outputs (*batch, n, width)."""
    count = math.prod(batch) * n
    inputs = {"cam": cam, **per_point, "lim": mx.array([limit], dtype=mx.float32)}
    outs = launch(name, inputs, {o: (count, w) for o, w in outputs.items()}, count, template, headers=("lens.cuh",))
    return [o.reshape(*batch, n, w) for o, w in zip(outs, outputs.values())]


def project(points: mx.array, K: mx.array, pose: mx.array | None, dist: mx.array | None,
            min_depth: float, model: str = "opencv") -> tuple[mx.array, mx.array, mx.array]:
    """Pixels (*b, N, 2), depth (*b, N) and valid as 1.0 / 0.0 (*b, N) of points (*p, N, 3) through
    cameras (*c), b the broadcast of p and c, lens ``model`` "opencv" or "fisheye"; one thread per
    (camera, point)."""
    cam = _pack_camera(K, pose, dist)
    batch = mx.broadcast_shapes(cam.shape[:-1], points.shape[:-2])
    k = 0 if dist is None else dist.shape[-1]
    pixels, depth, valid = _run("project", _rows(cam, batch, 1), {"p": _rows(points, batch, 2)}, min_depth, batch,
                                points.shape[-2], {"pixels": 2, "depth": 1, "valid": 1},
                                [("HAS_POSE", pose is not None), ("K", k),
                                 ("FISHEYE", dist is not None and model == "fisheye")])
    return pixels, depth[..., 0], valid[..., 0]


def unproject(pixels: mx.array, depth: mx.array, K: mx.array, pose: mx.array | None, dist: mx.array | None,
              iterations: int, tol: float) -> tuple[mx.array, mx.array, mx.array]:
    """World points (*b, N, 3), camera-frame points (*b, N, 3) and valid as 1.0 / 0.0 (*b, N) of
    pixels (*p, N, 2) at depths (*z, N) (or broadcasting to it) through cameras (*c); one thread per pixel."""
    cam = _pack_camera(K, pose, dist)
    n = mx.broadcast_shapes(pixels.shape[:-1], depth.shape)[-1]
    if pixels.shape[-2] != n:
        pixels = mx.broadcast_to(pixels, (*pixels.shape[:-2], n, 2))
    if depth.ndim == 0 or depth.shape[-1] != n:
        depth = mx.broadcast_to(depth, (*depth.shape[:-1], n))
    batch = mx.broadcast_shapes(cam.shape[:-1], pixels.shape[:-2], depth.shape[:-1])
    k = 0 if dist is None else dist.shape[-1]
    per_point = {"px": _rows(pixels, batch, 2), "z": _rows(depth[..., None], batch, 2)}
    points, points_cam, valid = _run("unproject", _rows(cam, batch, 1), per_point, tol, batch, n,
                                     {"points": 3, "points_cam": 3, "valid": 1},
                                     [("HAS_POSE", pose is not None), ("K", k), ("ITERATIONS", iterations)])
    return points, points_cam, valid[..., 0]
