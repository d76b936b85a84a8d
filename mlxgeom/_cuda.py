"""Shared machinery of the ``mx.fast.cuda_kernel`` fast paths (``lie/lie_cuda.py``, ``linalg/*_cuda.py``, ``optim/pnp_cuda.py``).

A :func:`launch` kernel evaluates one small element (a rotation vector, a 4x4 matrix, a point) per thread.
Each block of ``THREADS`` threads stages its elements' inputs through shared memory with
coalesced loads (rows padded to k + 1 words against bank conflicts), the thread computes in
registers (``NAME_r[k]`` in, ``out_r[k]`` out), and the block writes back coalesced, which runs
near the speed of a copy where MLX's own fused kernels read entries with strides. An input
with a single element (one matrix for all) is read by every thread directly. The pure-mx
function is always the reference: :func:`fast_path` differentiates through it.
Set ``MLXGEOM_CUDA_KERNELS=0`` to disable every fast path.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Callable

import mlx.core as mx

THREADS = 256


def on_cuda() -> bool:
    """Whether fast paths apply: MLX's CUDA backend is the default device and they are enabled."""
    return (os.environ.get("MLXGEOM_CUDA_KERNELS", "1") != "0" and mx.default_device() == mx.gpu
            and mx.cuda.is_available())


def horner(coeffs, x: str) -> str:
    """C expression of ``sum_k coeffs[k] x^k`` (float literals)."""
    expr = f"{float(coeffs[-1])!r}f"
    for c in reversed(coeffs[:-1]):
        expr = f"({expr} * {x} + {float(c)!r}f)"
    return expr


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


def kernel_source(body: str, inputs: tuple[tuple[str, int, bool], ...], k_out: int) -> str:
    """Kernel source: inputs (name, entries, single), the last one staged and setting the batch."""
    pad = max([k for _, k, single in inputs if not single] + [k_out]) + 1
    src = [f"  __shared__ float tile[TB * {pad}];",
           f"  const long long total = {inputs[-1][0]}_shape[0];",
           "  const long long base = (long long)blockIdx.x * TB;",
           "  const int tid = threadIdx.x;"]
    src += [_read_single(n, k) if single else _stage_in(n, k) for n, k, single in inputs]
    src += [f"  float out_r[{k_out}];", body, _stage_out(k_out)]
    return "\n".join(src)


@functools.cache
def _kernel(op: str, body: str, inputs: tuple[tuple[str, int, bool], ...], k_out: int):
    name = f"mlxgeom_{op}_" + "_".join(f"{n}{k}{'s' if s else ''}" for n, k, s in inputs)
    return mx.fast.cuda_kernel(name=name, input_names=[n for n, _, _ in inputs], output_names=["out"],
                               source=kernel_source(body, inputs, k_out))


def launch(op: str, body: str, arrays: list[mx.array], names: list[str], trailing: list[int],
           out_tail: tuple[int, ...]) -> mx.array:
    """Run ``body`` per element. ``trailing[i]`` is input i's element ndim; the last input sets
    the batch, an earlier input with one element is read by every thread (it broadcasts).

    The kernel is opaque to autodiff: its inputs are cut from the graph with ``stop_gradient``,
    so ``mx.jvp`` and ``mx.vjp`` never reach it (MLX's custom kernels have no derivative rules)
    and the caller's ``mx.custom_function`` supplies the derivatives.
    """
    batch = tuple(arrays[-1].shape[: arrays[-1].ndim - trailing[-1]])
    count = math.prod(batch)
    flat = [mx.stop_gradient(a).reshape(math.prod(a.shape[: a.ndim - t]), math.prod(a.shape[a.ndim - t:]))
            for a, t in zip(arrays, trailing)]
    single = [f.shape[0] == 1 and i < len(flat) - 1 for i, f in enumerate(flat)]
    k_out = math.prod(out_tail)
    kernel = _kernel(op, body, tuple((n, f.shape[1], s) for n, f, s in zip(names, flat, single)), k_out)
    blocks = -(-count // THREADS)
    (out,) = kernel(inputs=flat, template=[("TB", THREADS)], grid=(blocks * THREADS, 1, 1),
                    threadgroup=(THREADS, 1, 1), output_shapes=[(count, k_out)], output_dtypes=[mx.float32])
    return out.reshape(*batch, *out_tail)


def _listed(x):
    # With a single input MLX passes the array (or axis) itself rather than a tuple.
    return list(x) if isinstance(x, (list, tuple)) else [x]


def fast_path(kernel_fn: Callable[..., mx.array], pure_fn: Callable[..., mx.array],
              use_kernel: Callable[..., bool]) -> Callable[..., mx.array]:
    """``pure_fn``, but through ``kernel_fn`` where ``use_kernel(*args)``; differentiated as ``pure_fn``.

    The kernel runs inside a ``mx.custom_function`` whose VJP and JVP are those of ``pure_fn``
    (the same maths). ``mx.vmap`` over the kernel's inputs is not possible: MLX's vmap transforms every node under
    a custom function, the kernel included, and custom kernels have no vmap rule
    (docs/conventions.md, "CUDA fast paths").
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

    def dispatch(*args):
        return fast(*args) if use_kernel(*args) else pure_fn(*args)

    return dispatch
