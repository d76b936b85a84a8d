"""CUDA fast paths for ``so3_exp`` / ``se3_exp`` and the point actions (``mx.fast.cuda_kernel``).

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


def with_pure_derivatives(kernel_fn: Callable[..., mx.array], pure_fn: Callable[..., mx.array]):
    """``kernel_fn`` forward, differentiated as ``pure_fn`` (same maths): a ``mx.custom_function``."""

    @mx.custom_function
    def fast(*args):
        return kernel_fn(*args)

    def _listed(x):
        # With a single input MLX passes the array itself rather than a tuple.
        return list(x) if isinstance(x, (list, tuple)) else [x]

    @fast.vjp
    def fast_vjp(primals, cotangent, output):
        return tuple(mx.vjp(pure_fn, _listed(primals), _listed(cotangent))[1])

    @fast.jvp
    def fast_jvp(primals, tangents):
        return tuple(mx.jvp(pure_fn, _listed(primals), _listed(tangents))[1])

    return fast


def exp_enabled(v: mx.array) -> bool:
    """Whether so3_exp / se3_exp of tangents ``v`` (*, 3) / (*, 6) take the kernel."""
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


def so3_act(r: mx.array, p: mx.array) -> mx.array:
    """R p (*, 3) for float32 R (*, 3, 3) (or one R) and p (*, 3), by the kernel."""
    return _launch("so3_act", [r, p], ["m", "p"], [2, 1], (3,))


def se3_act(m: mx.array, p: mx.array) -> mx.array:
    """R p + t (*, 3) for float32 poses (*, 4, 4) (or one pose) and p (*, 3), by the kernel."""
    return _launch("se3_act", [m, p], ["m", "p"], [2, 1], (3,))
