"""CUDA fast paths for PnP's sums over the points (``mx.fast.cuda_kernel``): one warp per problem.

Refinement: :func:`pnp._point_totals` sums 28 per-point terms (A's upper triangle, g, the cost) over
the points of every problem. The pure-mx path forms each term as a (*, N) array and reduces
it, so one linearisation reads and writes the points dozens of times (and, uncompiled, launches
a few hundred kernels). This kernel gives each problem one warp: the lanes stride over the
points with coalesced loads of the (P = 1, 6, *, M) rows of :func:`pnp.pnp_blocks`, keep
the 28 sums in registers, and reduce them across the warp with shuffles: one read of the
points per linearisation. The formulas are those of :func:`pnp._point_terms` (same Jacobian
rows, same robust weights); ``pnp.py`` wraps it with :func:`mlxgeom._cuda.fast_path`, so it
is differentiated as the pure path.

Initialisation: :func:`_pnp_init.point_moments` (EPnP's and DLT's only pass over the points:
a centroid, then 40 weighted moments of the centred points) the same way, two strided loops
over the problem's points per warp.
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx

from .._cuda import on_cuda
from .losses import Cauchy, GemanMcClure, Huber, RobustLoss, SoftL1, Tukey

_WARP = 32
_THREADS = 256
TERMS = 28

# Per loss: C statements setting the IRLS factor `rw` = rho'(sq) and `rho` = rho(sq) from
# `sq`, with `c` = scale and `c2` = scale^2 (the formulas of losses.py).
_LOSSES = {
    type(None): "rw = 1.0f; rho = sq;",
    Huber: "const bool outer = sq > c2; const float so = outer ? sq : c2;\n"
           "    rw = outer ? c / sqrtf(so) : 1.0f; rho = outer ? 2.0f * c * sqrtf(so) - c2 : sq;",
    Cauchy: "rw = 1.0f / (1.0f + sq / c2); rho = c2 * log1pf(sq / c2);",
    Tukey: "const float u = fmaxf(1.0f - sq / c2, 0.0f); rw = u * u; rho = (c2 / 3.0f) * (1.0f - u * u * u);",
    SoftL1: "rw = rsqrtf(1.0f + sq / c2); rho = 2.0f * sq / (sqrtf(1.0f + sq / c2) + 1.0f);",
    GemanMcClure: "const float q = c2 / (c2 + sq); rw = q * q; rho = c2 * sq / (c2 + sq);",
}



def _one_warp_per_problem(count: str) -> str:
    """C prologue: ``problem`` (the warp's problem, of ``count``) and ``lane``."""
    return f"""
  const long long count = {count};
  const long long problem = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / WARP;
  const int lane = threadIdx.x % WARP;
  if (problem >= count) return;
"""


def _warp_sum(array: str, size: int | str) -> str:
    """C: every lane's ``array[0:size]`` replaced by its sum over the warp (butterfly shuffles)."""
    return f"""
  #pragma unroll
  for (int j = 0; j < {size}; ++j) {{
    #pragma unroll
    for (int off = WARP / 2; off > 0; off /= 2) {array}[j] += __shfl_xor_sync(0xffffffffu, {array}[j], off);
  }}
"""


_SOURCE = _one_warp_per_problem("pose_shape[0]") + """
  const long long m = pts_shape[3];
  const float* T = pose + problem * 16;
  const float* K = k + problem * 9;
  const float fx = K[0], sk = K[1], cx = K[2], fy = K[4], cy = K[5];
  const float c = scale[0], c2 = c * c;
  float acc[TERMS];
  #pragma unroll
  for (int j = 0; j < TERMS; ++j) acc[j] = 0.0f;
  const long long plane = count * m;
  const float* row = pts + problem * m;
  for (long long i = lane; i < m; i += WARP) {
    const float X = row[i], Y = row[plane + i], Z = row[2 * plane + i];
    const float U = row[3 * plane + i], V = row[4 * plane + i], w = row[5 * plane + i];
    const float px = T[0] * X + T[1] * Y + T[2] * Z + T[3];
    const float py = T[4] * X + T[5] * Y + T[6] * Z + T[7];
    const float pz = T[8] * X + T[9] * Y + T[10] * Z + T[11];
    const float zs = fabsf(pz) > 1e-12f ? pz : 1e-12f;
    const float iz = w > 0.0f ? 1.0f / zs : 0.0f;
    const float x = px * iz, y = py * iz;
    const float ru = fx * x + sk * y + cx - U, rv = fy * y + cy - V;
    const float sq = w * (ru * ru + rv * rv);
    float rw, rho;
    LOSS
    const float cw = w * rw;
    const float ju[6] = {fx * iz, sk * iz, -(fx * x + sk * y) * iz, -(fx * (x * y) + sk * (1.0f + y * y)),
                         fx * (1.0f + x * x) + sk * (x * y), sk * x - fx * y};
    const float jv[6] = {0.0f, fy * iz, -fy * y * iz, -fy * (1.0f + y * y), fy * (x * y), fy * x};
    int t = 0;
    #pragma unroll
    for (int a = 0; a < 6; ++a) {
      #pragma unroll
      for (int b = a; b < 6; ++b) acc[t++] += cw * (ju[a] * ju[b] + jv[a] * jv[b]);
    }
    #pragma unroll
    for (int a = 0; a < 6; ++a) acc[21 + a] += cw * (ju[a] * ru + jv[a] * rv);
    acc[27] += 0.5f * rho;
  }""" + _warp_sum("acc", "TERMS") + """
  #pragma unroll
  for (int j = 0; j < TERMS; ++j) if (lane == j) out[problem * TERMS + j] = acc[j];
"""


_MOMENTS_SOURCE = _one_warp_per_problem("w_shape[0]") + """
  const long long n = w_shape[1];
  const float* P = pw + problem * n * 3;
  const float* X = xn + problem * n * 2;
  const float* W = w + problem * n;
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (long long i = lane; i < n; i += WARP) {
    const float wi = W[i];
    c[0] += wi; c[1] += wi * P[3 * i]; c[2] += wi * P[3 * i + 1]; c[3] += wi * P[3 * i + 2];
  }""" + _warp_sum("c", 4) + """
  const float inv_n = 1.0f / fmaxf(c[0], 1.0f);
  const float c0[3] = {c[1] * inv_n, c[2] * inv_n, c[3] * inv_n};
  float acc[40];
  #pragma unroll
  for (int j = 0; j < 40; ++j) acc[j] = 0.0f;
  for (long long i = lane; i < n; i += WARP) {
    const float wi = W[i], x = X[2 * i], y = X[2 * i + 1];
    const float h[4] = {P[3 * i] - c0[0], P[3 * i + 1] - c0[1], P[3 * i + 2] - c0[2], 1.0f};
    const float coef[4] = {wi, wi * x, wi * y, wi * (x * x + y * y)};
    #pragma unroll
    for (int q = 0; q < 4; ++q) {
      int t = 0;
      #pragma unroll
      for (int a = 0; a < 4; ++a) {
        #pragma unroll
        for (int b = a; b < 4; ++b) acc[q * 10 + t++] += coef[q] * (h[a] * h[b]);
      }
    }
  }""" + _warp_sum("acc", 40) + """
  float* o = out + problem * 43;
  if (lane == 0) { o[0] = c0[0]; o[1] = c0[1]; o[2] = c0[2]; }
  #pragma unroll
  for (int j = 0; j < 40; ++j) if (lane == j % WARP) o[3 + j] = acc[j];
"""


def _run(kernel, inputs: list[mx.array], count: int, width: int, template: list) -> mx.array:
    """Launch ``kernel`` with one warp per problem; its output is (count, width) float32. The inputs
    are cut from autodiff (custom kernels have no derivative rules; :func:`fast_path` differentiates)."""
    blocks = -(-count * _WARP // _THREADS)
    (out,) = kernel(inputs=[mx.stop_gradient(a) for a in inputs], template=[("WARP", _WARP), *template],
                    grid=(blocks * _THREADS, 1, 1), threadgroup=(_THREADS, 1, 1), output_shapes=[(count, width)],
                    output_dtypes=[mx.float32])
    return out


def enabled(pose: mx.array, k: mx.array, points: mx.array, loss: RobustLoss | None) -> bool:
    """Whether the kernel applies: CUDA, float32, one point block, pose and K per problem."""
    batch = tuple(points.shape[2:-1])
    return (type(loss) in _LOSSES and points.dtype == pose.dtype == k.dtype == mx.float32
            and points.shape[0] == 1 and points.shape[1] == 6 and points.shape[-1] > 0
            and tuple(pose.shape) == (*batch, 4, 4) and tuple(k.shape) == (*batch, 3, 3) and on_cuda())


@functools.cache
def _kernel(loss_type: type):
    source = _SOURCE.replace("LOSS", _LOSSES[loss_type])
    return mx.fast.cuda_kernel(name=f"mlxgeom_pnp_normal_equations_{loss_type.__name__.lower()}",
                               input_names=["pose", "k", "pts", "scale"], output_names=["out"], source=source)


def point_totals(pose: mx.array, k: mx.array, points: mx.array, loss: RobustLoss | None) -> mx.array:
    """The 28 per-problem sums (*, 28) of :func:`pnp._point_totals`, one warp per problem."""
    batch = tuple(points.shape[2:-1])
    count = math.prod(batch)
    scale = mx.array([1.0 if loss is None else float(loss.scale)], dtype=mx.float32)
    inputs = [pose.reshape(count, 16), k.reshape(count, 9), points.reshape(1, 6, count, points.shape[-1]), scale]
    return _run(_kernel(type(loss)), inputs, count, TERMS, [("TERMS", TERMS)]).reshape(*batch, TERMS)


def moments_enabled(pw: mx.array, xn: mx.array, w: mx.array) -> bool:
    """Whether the moments kernel applies: CUDA, float32, one row of points per problem."""
    return (pw.dtype == xn.dtype == w.dtype == mx.float32 and w.ndim >= 1 and w.shape[-1] > 0
            and tuple(pw.shape) == (*w.shape, 3) and tuple(xn.shape) == (*w.shape, 2) and on_cuda())


@functools.cache
def _moments_kernel():
    return mx.fast.cuda_kernel(name="mlxgeom_pnp_point_moments", input_names=["pw", "xn", "w"],
                               output_names=["out"], source=_MOMENTS_SOURCE)


def point_moments(pw: mx.array, xn: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Centroid (*, 3) and packed moments (*, 4, 10) of :func:`_pnp_init.point_moments`, one warp per problem."""
    batch = tuple(w.shape[:-1])
    count, n = math.prod(batch), w.shape[-1]
    out = _run(_moments_kernel(), [pw.reshape(count, n, 3), xn.reshape(count, n, 2), w.reshape(count, n)], count, 43, [])
    return out[:, :3].reshape(*batch, 3), out[:, 3:].reshape(*batch, 4, 10)
