"""CUDA fast paths for projection (OpenCV and fisheye lenses) and unprojection (OpenCV) (``kernels/project.cu``,
``kernels/unproject.cu``): one thread per (camera, point) pair runs the whole pure path (pose,
perspective division, the lens model of ``kernels/lens.cuh`` with its Newton steps, intrinsics,
validity) in registers, where MLX's fused kernels take 3.5-10x a same-size copy on an H200.

Broadcasting: each camera array goes in as it is, K as (C, 9), the pose as (C, 16), the coefficients as
(C, k), and each per-point input as (P, N, d); C and P are 1 (shared) or the product of the output's
batch dims. A thread finds its camera and its point by index arithmetic, so nothing is broadcast or
packed in memory and a call is the kernel's launch alone. ``projection.py``
wraps these with :func:`mlxgeom._cuda.fast_path`, which differentiates them as the pure path.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._cuda import constant, launch, on_cuda


def enabled(arrays: list[mx.array], dist: mx.array | None, model: str, models: tuple[str, ...] = ("opencv",)) -> bool:
    """Whether a kernel applies: CUDA, float32 throughout, a lens model it has (``models``: the
    unprojection kernel has the OpenCV model, the projection kernel also the fisheye one), something
    to compute."""
    return (all(a.dtype == mx.float32 for a in arrays) and (dist is None or model in models)
            and all(a.size > 0 for a in arrays) and on_cuda())


def _rows(a: mx.array, batch: tuple[int, ...], tail: int) -> mx.array:
    """(*b, *tail) -> (1 or prod(batch), *tail) for a kernel input, broadcast only where it must be."""
    if math.prod(a.shape[: a.ndim - tail]) == 1:
        return a.reshape(1, *a.shape[a.ndim - tail:])
    if tuple(a.shape[: a.ndim - tail]) != batch:
        a = mx.broadcast_to(a, (*batch, *a.shape[a.ndim - tail:]))
    return a.reshape(math.prod(batch), *a.shape[a.ndim - tail:])


def _run(name: str, K: mx.array, pose: mx.array | None, dist: mx.array | None, per_point: dict[str, mx.array],
         limit: float, n: int, outputs: dict[str, int], template: list) -> list[mx.array]:
    """Kernel ``name`` on one (camera, point) pair per thread; outputs (*batch, n, width), batch the
    broadcast of the cameras' and the per-point inputs' batch dims. The camera arrays go in as they are
    (K (.., 9), pose (.., 16), dist (.., k); one row when shared), so a call launches the kernel alone."""
    cams = {"k": K.reshape(*K.shape[:-2], 9), "pose": None if pose is None else pose.reshape(*pose.shape[:-2], 16),
            "dist": dist}
    batch = mx.broadcast_shapes(*(c.shape[:-1] for c in cams.values() if c is not None),
                                *(p.shape[:-2] for p in per_point.values()))
    inputs = {name_: constant(0.0) if c is None else _rows(c, batch, 1) for name_, c in cams.items()}
    inputs.update({name_: _rows(p, batch, 2) for name_, p in per_point.items()})
    inputs["lim"] = constant(limit)
    count = math.prod(batch) * n
    outs = launch(name, inputs, {o: (count, w) for o, w in outputs.items()}, count, template, headers=("lens.cuh",))
    return [o.reshape(*batch, n, w) for o, w in zip(outs, outputs.values())]


def project(points: mx.array, K: mx.array, pose: mx.array | None, dist: mx.array | None,
            min_depth: float, model: str = "opencv") -> tuple[mx.array, mx.array, mx.array]:
    """Pixels (*b, N, 2), depth (*b, N) and valid as 1.0 / 0.0 (*b, N) of points (*p, N, 3) through
    cameras (*c), b the broadcast of p and c, lens ``model`` "opencv" or "fisheye"; one thread per
    (camera, point)."""
    k = 0 if dist is None else dist.shape[-1]
    pixels, depth, valid = _run("project", K, pose, dist, {"p": points}, min_depth, points.shape[-2],
                                {"pixels": 2, "depth": 1, "valid": 1},
                                [("HAS_POSE", pose is not None), ("K", k),
                                 ("FISHEYE", dist is not None and model == "fisheye")])
    return pixels, depth[..., 0], valid[..., 0]


def unproject(pixels: mx.array, depth: mx.array, K: mx.array, pose: mx.array | None, dist: mx.array | None,
              iterations: int, tol: float) -> tuple[mx.array, mx.array, mx.array]:
    """World points (*b, N, 3), camera-frame points (*b, N, 3) and valid as 1.0 / 0.0 (*b, N) of
    pixels (*p, N, 2) at depths (*z, N) (or broadcasting to it) through cameras (*c); one thread per pixel."""
    n = mx.broadcast_shapes(pixels.shape[:-1], depth.shape)[-1]
    if pixels.shape[-2] != n:
        pixels = mx.broadcast_to(pixels, (*pixels.shape[:-2], n, 2))
    if depth.ndim == 0 or depth.shape[-1] != n:
        depth = mx.broadcast_to(depth, (*depth.shape[:-1], n))
    k = 0 if dist is None else dist.shape[-1]
    points, points_cam, valid = _run("unproject", K, pose, dist, {"px": pixels, "z": depth[..., None]}, tol, n,
                                     {"points": 3, "points_cam": 3, "valid": 1},
                                     [("HAS_POSE", pose is not None), ("K", k), ("ITERATIONS", iterations)])
    return points, points_cam, valid[..., 0]
