"""CUDA fast paths for projection and unprojection through OpenCV cameras (``mx.fast.cuda_kernel``).

In pure mx, :func:`projection.project_points` is a few dozen elementwise ops on per-camera
scalars broadcast over the points (pose, perspective division, the distortion polynomial,
intrinsics, the validity tests) plus the stack of (u, v): MLX fuses them into several kernels
with intermediates in memory, 3.5-10x a same-size copy on an H200. Here one thread computes one
(camera, point) pair in registers, with the formulas and order of operations of the pure path
(:mod:`distortion_cuda` writes the lens model for both). :func:`unproject_points` likewise runs
the normalisation, the Newton iterations, the final Newton step with its convergence test, the
depth scaling and the inverse pose in one kernel.

Broadcasting: the camera parameters are packed per camera, (C, M), and C is either 1 (one
camera for every point) or the product of the output's batch dims; each per-point input is
(P, N, d) with P either 1 (points shared by every camera, as with 64 views of one cloud) or that
same product. A thread finds its camera and its point by index arithmetic, so neither is ever
broadcast in memory. ``projection.py`` wraps these with :func:`mlxgeom._cuda.fast_path`, which
differentiates them as the pure path.
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx

from .._cuda import THREADS, on_cuda
from . import distortion_cuda


def enabled(arrays: list[mx.array], dist: mx.array | None, model: str) -> bool:
    """Whether the kernels apply: CUDA, float32 throughout, the OpenCV model, something to compute."""
    return (all(a.dtype == mx.float32 for a in arrays) and (dist is None or model == "opencv")
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


_INTRINSICS = """
  const float fx = cam_r[0], fy = cam_r[1], cx = cam_r[2], cy = cam_r[3], s = cam_r[4];
  const bool fok = fx > 0.0f && fy > 0.0f && isfinite(fx) && isfinite(fy) && isfinite(cx) && isfinite(cy)
                   && isfinite(s);
"""


def _header(inputs: tuple[tuple[str, int], ...]) -> str:
    """Index arithmetic: thread i is point i % N of the output row i / N; ``cam_r`` and each
    ``NAME_r`` point at its camera's parameters and its per-point entries."""
    first = inputs[0][0]
    src = [f"""
  const long long N = {first}_shape[1];
  long long rows = cam_shape[0];""", *(f"\n  rows = {n}_shape[0] > rows ? {n}_shape[0] : rows;" for n, _ in inputs), """
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * N) return;
  const float* cam_r = cam + (cam_shape[0] == 1 ? 0 : i / N) * cam_shape[1];"""]
    src += [f"\n  const float* {n}_r = {n} + ({n}_shape[0] == 1 ? i % N : i) * {d};" for n, d in inputs]
    return "".join(src) + _INTRINSICS


def project_body(has_pose: bool, k: int, min_depth: float) -> str:
    """C body of :func:`project`: pixels (2), depth, valid (1.0 or 0.0) of point ``p_r``."""
    if has_pose:
        rot = """
  const float xc = ((cam_r[5] * X + cam_r[6] * Y) + cam_r[7] * Z) + cam_r[8];
  const float yc = ((cam_r[9] * X + cam_r[10] * Y) + cam_r[11] * Z) + cam_r[12];
  const float zc = ((cam_r[13] * X + cam_r[14] * Y) + cam_r[15] * Z) + cam_r[16];"""
    else:
        rot = "\n  const float xc = X, yc = Y, zc = Z;"
    return "".join([
        _header((("p", 3),)), "\n  const float X = p_r[0], Y = p_r[1], Z = p_r[2];", rot,
        distortion_cuda.coefficients(k, "cam_r", 17 if has_pose else 5), f"""
  const bool front = zc > {float(min_depth)!r}f;
  const float iz = 1.0f / (front ? zc : 1.0f);
  const float x = xc * iz, y = yc * iz;
  {{""", distortion_cuda.distort(k, False), """
    const float u = fx * xd + s * yd + cx;
    const float v = fy * yd + cy;
    pixels[2 * i] = u;
    pixels[2 * i + 1] = v;
    depth[i] = zc;
    valid[i] = front && dok && fok && isfinite(u) && isfinite(v) ? 1.0f : 0.0f;
  }
"""])


@functools.cache
def _project_kernel(has_pose: bool, k: int, min_depth: float):
    return mx.fast.cuda_kernel(name=f"mlxgeom_project_opencv{k}{'_pose' if has_pose else ''}",
                               input_names=["cam", "p"], output_names=["pixels", "depth", "valid"],
                               source=project_body(has_pose, k, min_depth))


def _launch(kernel, cam: mx.array, per_point: list[mx.array], batch: tuple[int, ...], n: int,
            outputs: tuple[int, ...]) -> list[mx.array]:
    count = math.prod(batch) * n
    blocks = -(-count // THREADS)
    outs = kernel(inputs=[mx.stop_gradient(cam), *(mx.stop_gradient(p) for p in per_point)],
                  grid=(blocks * THREADS, 1, 1), threadgroup=(THREADS, 1, 1),
                  output_shapes=[(count, w) for w in outputs], output_dtypes=[mx.float32] * len(outputs))
    return [o.reshape(*batch, n, w) for o, w in zip(outs, outputs)]


def project(points: mx.array, K: mx.array, pose: mx.array | None, dist: mx.array | None,
            min_depth: float) -> tuple[mx.array, mx.array, mx.array]:
    """Pixels (*b, N, 2), depth (*b, N) and valid as 1.0 / 0.0 (*b, N) of points (*p, N, 3) through
    cameras (*c), b the broadcast of p and c; one thread per (camera, point)."""
    cam = _pack_camera(K, pose, dist)
    batch = mx.broadcast_shapes(cam.shape[:-1], points.shape[:-2])
    k = 0 if dist is None else dist.shape[-1]
    pixels, depth, valid = _launch(_project_kernel(pose is not None, k, float(min_depth)), _rows(cam, batch, 1),
                                   [_rows(points, batch, 2)], batch, points.shape[-2], (2, 1, 1))
    return pixels, depth[..., 0], valid[..., 0]


def unproject_body(has_pose: bool, k: int, iterations: int, tol: float) -> str:
    """C body of :func:`unproject`: world point (3), camera-frame point (3), valid (1.0 or 0.0) of
    pixel ``px_r`` at depth ``z_r``."""
    if k == 0:
        undistort = """
  const float xs = tx, ys = ty;
  const bool conv = isfinite(tx) && isfinite(ty);"""
    else:
        undistort = "".join([
            "\n  float x = tx, y = ty;", distortion_cuda.newton_steps(k, iterations), "  float xs, ys;\n  bool conv;\n  {",
            distortion_cuda.distort(k, True), f"""
    const float det = j00 * j11 - j01 * j10;
    const float idet = fabsf(det) > 0.0f ? 1.0f / det : 0.0f;
    const float rx = tx - xd, ry = ty - yd;
    xs = x + (j11 * rx - j01 * ry) * idet;
    ys = y + (j00 * ry - j10 * rx) * idet;
    const float res = sqrtf(rx * rx + ry * ry);
    const float size = 1.0f + sqrtf(tx * tx + ty * ty);
    conv = res <= {float(tol)!r}f * size && det > 0.0f && dok && isfinite(xs) && isfinite(ys);
  }}"""])
    if has_pose:
        world = """
  const float r0 = xc - cam_r[8], r1 = yc - cam_r[12], r2 = zc - cam_r[16];
  const float wx = (cam_r[5] * r0 + cam_r[9] * r1) + cam_r[13] * r2;
  const float wy = (cam_r[6] * r0 + cam_r[10] * r1) + cam_r[14] * r2;
  const float wz = (cam_r[7] * r0 + cam_r[11] * r1) + cam_r[15] * r2;"""
    else:
        world = "\n  const float wx = xc, wy = yc, wz = zc;"
    return "".join([
        _header((("px", 2), ("z", 1))), distortion_cuda.coefficients(k, "cam_r", 17 if has_pose else 5), """
  const float u = px_r[0], v = px_r[1], zc = z_r[0];
  const float ifx = 1.0f / (fok ? fx : 1.0f), ify = 1.0f / (fok ? fy : 1.0f);
  const float ty = (v - cy) * ify;
  const float tx = (u - cx - s * ty) * ifx;""", undistort, """
  const float xc = xs * zc, yc = ys * zc;""", world, """
  points[3 * i] = wx; points[3 * i + 1] = wy; points[3 * i + 2] = wz;
  points_cam[3 * i] = xc; points_cam[3 * i + 1] = yc; points_cam[3 * i + 2] = zc;
  valid[i] = conv && fok && isfinite(wx) && isfinite(wy) && isfinite(wz) ? 1.0f : 0.0f;
"""])


@functools.cache
def _unproject_kernel(has_pose: bool, k: int, iterations: int, tol: float):
    return mx.fast.cuda_kernel(name=f"mlxgeom_unproject_opencv{k}_{iterations}{'_pose' if has_pose else ''}",
                               input_names=["cam", "px", "z"], output_names=["points", "points_cam", "valid"],
                               source=unproject_body(has_pose, k, iterations, tol))


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
    kernel = _unproject_kernel(pose is not None, k, iterations, float(tol))
    points, points_cam, valid = _launch(kernel, _rows(cam, batch, 1), [_rows(pixels, batch, 2), _rows(depth[..., None], batch, 2)],
                                        batch, n, (3, 3, 1))
    return points, points_cam, valid[..., 0]
