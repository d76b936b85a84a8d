"""CUDA fast paths for SO(3)/SE(3) exp, log and the point actions (``mx.fast.cuda_kernel``).

The pure-mx closed forms in ``so3.py`` / ``se3.py`` are the reference and the path on every
other backend. On CUDA, their fused kernels read the (*, 3, 3) / (*, 4, 4) entries with
strides and write one plane per entry, several times a same-size copy. These kernels give
each block 256 elements: the block stages their inputs through shared memory with coalesced
loads, each thread evaluates one element in registers with the same formulas (the same
float32 Taylor coefficients below t^2 = 1, the half-angle closed forms above), and the block
writes the outputs back coalesced (the layout of ``linalg/inverse_cuda.py``). An input with
a single element (one rotation acting on many points) is read by every thread directly.

Derivatives are those of the pure path (``mx.custom_function`` whose VJP and JVP call
``mx.vjp`` / ``mx.jvp`` of the reference), so gradients are exactly the reference's.
Set ``MLXGEOM_CUDA_KERNELS=0`` to disable.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Callable

import mlx.core as mx

from . import _scalar as sc

_THREADS = 256


def _on_cuda() -> bool:
    return (os.environ.get("MLXGEOM_CUDA_KERNELS", "1") != "0" and mx.default_device() == mx.gpu
            and mx.cuda.is_available())


def _horner(coeffs: tuple[float, ...], x: str) -> str:
    expr = f"{coeffs[-1]!r}f"
    for c in reversed(coeffs[:-1]):
        expr = f"({expr} * {x} + {c!r}f)"
    return expr


def _series(coeffs: tuple[float, ...]) -> str:
    return _horner(coeffs[:sc._TERMS_FLOAT32], "t2")


# A = sin t / t, B = (1 - cos t) / t^2, C = (t - sin t) / t^3 of phi = (x, y, z), as sc.* compute them.
_COEFFS = f"""
  const float t2 = x * x + y * y + z * z;
  float A, B, C;
  if (t2 < {sc.SMALL_T2!r}f) {{
    A = {_series(sc.SIN_T)};
    B = {_series(sc.ONE_MINUS_COS)};
    C = {_series(sc.T_MINUS_SIN)};
  }} else {{
    const float t = sqrtf(t2);
    const float sh = sinf(0.5f * t), ch = cosf(0.5f * t);
    A = 2.0f * sh * ch / t;
    B = 2.0f * sh * sh / t2;
    C = (t - 2.0f * sh * ch) / (t2 * t);
  }}
  const float c0 = 1.0f - B * t2;
"""

# R = (1 - B t^2) I + A hat(phi) + B phi phi^T, row-major into R_OUT[ROW * STRIDE + col].
_ROTATION = """
  R_OUT[0] = c0 + B * x * x; R_OUT[1] = B * x * y - A * z; R_OUT[2] = B * x * z + A * y;
  R_OUT[S] = B * x * y + A * z; R_OUT[S + 1] = c0 + B * y * y; R_OUT[S + 2] = B * y * z - A * x;
  R_OUT[2 * S] = B * x * z - A * y; R_OUT[2 * S + 1] = B * y * z + A * x; R_OUT[2 * S + 2] = c0 + B * z * z;
"""

# phi = log R from the Shepperd quaternion (so3._quaternion_wxyz, sc.half_angle_ratio) of R in
# m_r[0, 1, 2, S, S + 1, S + 2, 2 S, 2 S + 1, 2 S + 2].
_LOG = f"""
  const float r00 = m_r[0], r01 = m_r[1], r02 = m_r[2];
  const float r10 = m_r[S], r11 = m_r[S + 1], r12 = m_r[S + 2];
  const float r20 = m_r[2 * S], r21 = m_r[2 * S + 1], r22 = m_r[2 * S + 2];
  const float d[4] = {{1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22}};
  const float k0 = r21 - r12, k1 = r02 - r20, k2 = r10 - r01, k3 = r01 + r10, k4 = r02 + r20, k5 = r12 + r21;
  int best = 0;
  #pragma unroll
  for (int i = 1; i < 4; ++i) if (d[i] > d[best]) best = i;
  const float s = sqrtf(fmaxf(d[best], 1.0f)), h = 0.5f / s;
  float q[4];
  if (best == 0) {{ q[0] = s * s * h; q[1] = k0 * h; q[2] = k1 * h; q[3] = k2 * h; }}
  else if (best == 1) {{ q[0] = k0 * h; q[1] = s * s * h; q[2] = k3 * h; q[3] = k4 * h; }}
  else if (best == 2) {{ q[0] = k1 * h; q[1] = k3 * h; q[2] = s * s * h; q[3] = k5 * h; }}
  else {{ q[0] = k2 * h; q[1] = k4 * h; q[2] = k5 * h; q[3] = s * s * h; }}
  const float sgn = q[0] < 0 ? -1.0f : 1.0f;
  const float qn = sgn / sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const float w = q[0] * qn, x = q[1] * qn, y = q[2] * qn, z = q[3] * qn;
  const float n2 = x * x + y * y + z * z;
  float ratio;
  if (n2 < 0.01f * w * w) {{
    const float x2 = n2 / (w * w);
    ratio = 2.0f / w * {_horner(sc.ATAN_X[:4], "x2")};
  }} else {{
    const float n = sqrtf(n2);
    ratio = 2.0f * atan2f(n, w) / n;
  }}
  const float p0 = ratio * x, p1 = ratio * y, p2 = ratio * z;
"""

_BODIES = {
    # so3_exp: phi (3) -> R (9)
    "so3_exp": ("const float x = phi_r[0], y = phi_r[1], z = phi_r[2];" + _COEFFS
                + _ROTATION.replace("R_OUT", "out_r").replace("S", "3")),
    # se3_exp: xi = [rho, phi] (6) -> T (16), t = (A I + B hat(phi) + C phi phi^T) rho
    "se3_exp": ("const float x = phi_r[3], y = phi_r[4], z = phi_r[5];" + _COEFFS
                + _ROTATION.replace("R_OUT", "out_r").replace("S", "4") + """
  const float r0 = phi_r[0], r1 = phi_r[1], r2 = phi_r[2];
  const float dot = x * r0 + y * r1 + z * r2;
  out_r[3] = A * r0 + B * (y * r2 - z * r1) + C * dot * x;
  out_r[7] = A * r1 + B * (z * r0 - x * r2) + C * dot * y;
  out_r[11] = A * r2 + B * (x * r1 - y * r0) + C * dot * z;
  out_r[12] = 0.0f; out_r[13] = 0.0f; out_r[14] = 0.0f; out_r[15] = 1.0f;
"""),
    # so3_log: R (9) -> phi (3)
    "so3_log": _LOG.replace("S", "3") + """
  out_r[0] = p0; out_r[1] = p1; out_r[2] = p2;
""",
    # se3_log: T (16) -> [rho, phi] (6), rho = J_l(phi)^-1 t = c0 t - t x phi / 2 ... (so3._left_jacobian_inv_apply)
    "se3_log": _LOG.replace("S", "4") + f"""
  const float t0 = m_r[3], t1 = m_r[7], t2v = m_r[11];
  const float t2 = p0 * p0 + p1 * p1 + p2 * p2;
  float D;
  if (t2 < {sc.SMALL_T2!r}f) {{
    D = {_series(sc.INV_JAC)};
  }} else {{
    const float t = sqrtf(t2);
    D = 1.0f / t2 - cosf(0.5f * t) / (2.0f * t * sinf(0.5f * t));
  }}
  const float c0 = 1.0f - D * t2, dot = p0 * t0 + p1 * t1 + p2 * t2v;
  out_r[0] = c0 * t0 - 0.5f * (p1 * t2v - p2 * t1) + D * dot * p0;
  out_r[1] = c0 * t1 - 0.5f * (p2 * t0 - p0 * t2v) + D * dot * p1;
  out_r[2] = c0 * t2v - 0.5f * (p0 * t1 - p1 * t0) + D * dot * p2;
  out_r[3] = p0; out_r[4] = p1; out_r[5] = p2;
""",
    # so3_act: R (9), p (3) -> R p (3)
    "so3_act": """
  #pragma unroll
  for (int i = 0; i < 3; ++i) out_r[i] = m_r[3 * i] * p_r[0] + m_r[3 * i + 1] * p_r[1] + m_r[3 * i + 2] * p_r[2];
""",
    # se3_act: T (16), p (3) -> R p + t (3)
    "se3_act": """
  #pragma unroll
  for (int i = 0; i < 3; ++i)
    out_r[i] = m_r[4 * i] * p_r[0] + m_r[4 * i + 1] * p_r[1] + m_r[4 * i + 2] * p_r[2] + m_r[4 * i + 3];
""",
}


def _stage_in(name: str, k: int) -> str:
    return f"""
  for (int j = tid; j < TB * {k}; j += TB) {{
    const long long g = base * {k} + j;
    tile[(j / {k}) * {k + 1} + j % {k}] = g < total * {k} ? {name}[g] : 0.0f;
  }}
  __syncthreads();
  float {name}_r[{k}];
  #pragma unroll
  for (int j = 0; j < {k}; ++j) {name}_r[j] = tile[tid * {k + 1} + j];
  __syncthreads();
"""


def _read_single(name: str, k: int) -> str:
    return f"""
  float {name}_r[{k}];
  #pragma unroll
  for (int j = 0; j < {k}; ++j) {name}_r[j] = {name}[j];
"""


def _stage_out(k: int) -> str:
    return f"""
  #pragma unroll
  for (int j = 0; j < {k}; ++j) tile[tid * {k + 1} + j] = out_r[j];
  __syncthreads();
  for (int j = tid; j < TB * {k}; j += TB) {{
    const long long g = base * {k} + j;
    if (g < total * {k}) out[g] = tile[(j / {k}) * {k + 1} + j % {k}];
  }}
"""


@functools.cache
def _kernel(op: str, inputs: tuple[tuple[str, int, bool], ...], k_out: int):
    """Kernel for ``op`` with inputs (name, entries, single) (single: one element for all)."""
    staged = [name for name, _, single in inputs if not single]
    pad = max([k for _, k, single in inputs if not single] + [k_out]) + 1
    src = [f"  __shared__ float tile[TB * {pad}];",
           f"  const long long total = {staged[0]}_shape[0];",
           "  const long long base = (long long)blockIdx.x * TB;",
           "  const int tid = threadIdx.x;"]
    src += [_read_single(n, k) if single else _stage_in(n, k) for n, k, single in inputs]
    src += [f"  float out_r[{k_out}];", _BODIES[op], _stage_out(k_out)]
    return mx.fast.cuda_kernel(name=f"mlxgeom_{op}_" + "_".join(f"{n}{int(s)}" for n, _, s in inputs),
                               input_names=[n for n, _, _ in inputs], output_names=["out"], source="\n".join(src))


def _launch(op: str, arrays: list[mx.array], names: list[str], trailing: list[int],
            out_tail: tuple[int, ...]) -> mx.array:
    """Run ``op`` on inputs with ``trailing`` element dims each; the last input sets the batch."""
    batch = tuple(arrays[-1].shape[: arrays[-1].ndim - trailing[-1]])
    count = math.prod(batch)
    flat = [a.reshape(math.prod(a.shape[: a.ndim - t]), math.prod(a.shape[a.ndim - t:])) for a, t in zip(arrays, trailing)]
    single = [f.shape[0] == 1 and count != 1 for f in flat]
    k_out = math.prod(out_tail)
    kernel = _kernel(op, tuple((n, f.shape[1], s) for n, f, s in zip(names, flat, single)), k_out)
    blocks = -(-count // _THREADS)
    (out,) = kernel(inputs=flat, template=[("TB", _THREADS)], grid=(blocks * _THREADS, 1, 1),
                    threadgroup=(_THREADS, 1, 1), output_shapes=[(count, k_out)], output_dtypes=[mx.float32])
    return out.reshape(*batch, *out_tail)


def _listed(x):
    # With a single input MLX passes the array (or axis) itself rather than a tuple.
    return list(x) if isinstance(x, (list, tuple)) else [x]


def fast_path(kernel_fn: Callable[..., mx.array], pure_fn: Callable[..., mx.array], trailing: tuple[int, ...],
              use_kernel: Callable[..., bool]) -> Callable[..., mx.array]:
    """``pure_fn``, but through ``kernel_fn`` where ``use_kernel(*args)``; differentiated as ``pure_fn``.

    The kernel runs inside a ``mx.custom_function`` whose VJP and JVP are those of ``pure_fn``
    (the same maths), and whose vmap rule moves the mapped axes to the front (``trailing``
    gives each argument's element dims, the rest is batch) and dispatches again.
    """

    @mx.custom_function
    def fast(*args):
        return kernel_fn(*args)

    @fast.vjp
    def fast_vjp(primals, cotangent, output):
        return tuple(mx.vjp(pure_fn, _listed(primals), _listed(cotangent))[1])

    @fast.jvp
    def fast_jvp(primals, tangents):
        return tuple(mx.jvp(pure_fn, _listed(primals), _listed(tangents))[1])

    @fast.vmap
    def fast_vmap(inputs, axes):
        inputs, axes = _listed(inputs), _listed(axes)
        ranks = [x.ndim - t - (ax is not None) for x, t, ax in zip(inputs, trailing, axes)]
        moved = []
        for x, t, ax, rank in zip(inputs, trailing, axes, ranks):
            if ax is not None:
                x = mx.moveaxis(x, ax, 0)
                x = x.reshape(x.shape[0], *([1] * (max(ranks) - rank)), *x.shape[1:])
            moved.append(x)
        return dispatch(*moved), 0

    def dispatch(*args):
        return fast(*args) if use_kernel(*args) else pure_fn(*args)

    return dispatch


def enabled(v: mx.array) -> bool:
    """Whether exp / log of ``v`` (tangents (*, 3) / (*, 6) or matrices) take the kernels."""
    return v.dtype == mx.float32 and v.size > 0 and _on_cuda()


def act_enabled(m: mx.array, p: mx.array) -> bool:
    """Whether the action of (*, 3, 3) / (*, 4, 4) ``m`` on points (*, 3) takes the kernel: float32,
    and either the same batch shape or a single rotation/pose for all points."""
    same = tuple(m.shape[:-2]) == tuple(p.shape[:-1])
    single = math.prod(m.shape[:-2]) == 1 and m.ndim - 2 <= p.ndim - 1
    return (m.dtype == mx.float32 and p.dtype == mx.float32 and p.size > 0 and (same or single)
            and _on_cuda())


def so3_exp(phi: mx.array) -> mx.array:
    """Rotation matrices (*, 3, 3) of float32 rotation vectors (*, 3), by the kernel."""
    return _launch("so3_exp", [phi], ["phi"], [1], (3, 3))


def se3_exp(xi: mx.array) -> mx.array:
    """Poses (*, 4, 4) of float32 twists [rho, phi] (*, 6), by the kernel."""
    return _launch("se3_exp", [xi], ["phi"], [1], (4, 4))


def so3_log(r: mx.array) -> mx.array:
    """Rotation vectors (*, 3) of float32 rotation matrices (*, 3, 3), by the kernel."""
    return _launch("so3_log", [r], ["m"], [2], (3,))


def se3_log(m: mx.array) -> mx.array:
    """Twists [rho, phi] (*, 6) of float32 poses (*, 4, 4), by the kernel."""
    return _launch("se3_log", [m], ["m"], [2], (6,))


def so3_act(r: mx.array, p: mx.array) -> mx.array:
    """R p (*, 3) for float32 R (*, 3, 3) (or one R) and p (*, 3), by the kernel."""
    return _launch("so3_act", [r, p], ["m", "p"], [2, 1], (3,))


def se3_act(m: mx.array, p: mx.array) -> mx.array:
    """R p + t (*, 3) for float32 poses (*, 4, 4) (or one pose) and p (*, 3), by the kernel."""
    return _launch("se3_act", [m, p], ["m", "p"], [2, 1], (3,))
