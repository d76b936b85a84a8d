"""The one launcher (:func:`launch`) and the one dispatch rule (:func:`fast_path`) of the CUDA fast paths.

Each kernel is one source file, ``mlxgeom/kernels/NAME.cu`` (device functions above its ``// @body``
line, the kernel's body below, after ``common.cuh`` and the headers it names), specialised only by MLX's
typed template arguments (``("N", 4)`` becomes ``constexpr int N = 4;``); run-time values are inputs.
The pure-mx function is the reference and :func:`fast_path` differentiates through it;
``MLXGEOM_CUDA_KERNELS=0`` disables every fast path. tests/test_kernel_bodies.py runs each kernel via g++.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import mlx.core as mx

KERNELS = Path(__file__).with_name("kernels")
THREADS = 256
_BODY = "// @body"


def on_cuda() -> bool:
    """Whether fast paths apply: MLX's CUDA backend is the default device and they are enabled."""
    return (os.environ.get("MLXGEOM_CUDA_KERNELS", "1") != "0" and mx.default_device() == mx.gpu
            and mx.cuda.is_available())


@functools.cache
def _kernel(name: str, inputs: tuple[str, ...], outputs: tuple[str, ...], headers: tuple[str, ...]):
    # kernels/NAME.cu: its header above the "// @body" line, after common.cuh and ``headers``; its body below.
    head, _, body = (KERNELS / f"{name}.cu").read_text().partition(_BODY)
    header = "".join((KERNELS / h).read_text() + "\n" for h in ("common.cuh", *headers)) + head
    return mx.fast.cuda_kernel(name=f"mlxgeom_{name}", input_names=list(inputs), output_names=list(outputs),
                               source=body.split("\n", 1)[1], header=header)


@functools.lru_cache(maxsize=256)
def constant(*values: float) -> mx.array:
    """A (1, len(values)) float32 kernel input, made once per value (a call uploads nothing); the
    cache is bounded, as a loss scale or min_depth can take any value."""
    return mx.array([values], dtype=mx.float32)


def launch(name: str, inputs: dict[str, mx.array], outputs: dict[str, tuple[int, ...]], threads: int,
           template: Sequence[tuple[str, int | bool]] = (), headers: tuple[str, ...] = ()) -> list[mx.array]:
    """Run ``kernels/NAME.cu`` on ``threads`` threads (blocks of ``THREADS``, template ``TB``) with the
    named inputs; float32 outputs of the given shapes.

    The kernel is opaque to autodiff: its inputs are cut from the graph with ``stop_gradient``,
    so ``mx.jvp`` and ``mx.vjp`` never reach it (MLX's custom kernels have no derivative rules)
    and the caller's :func:`fast_path` supplies the derivatives.
    """
    blocks = -(-threads // THREADS)
    kernel = _kernel(name, tuple(inputs), tuple(outputs), headers)
    return kernel(inputs=[mx.stop_gradient(a) for a in inputs.values()], template=[("TB", THREADS), *template],
                  grid=(blocks * THREADS, 1, 1), threadgroup=(THREADS, 1, 1), output_shapes=list(outputs.values()),
                  output_dtypes=[mx.float32] * len(outputs))


def elementwise(name: str, inputs: dict[str, mx.array], trailing: Sequence[int], out_tail: tuple[int, ...],
                template: Sequence[tuple[str, int | bool]] = (), headers: tuple[str, ...] = ()) -> mx.array:
    """:func:`launch` with one element per thread: ``trailing[i]`` is input i's element ndim, the last
    input sets the batch; template ``SINGLE`` says whether the first of several inputs has one
    element, read by every thread (it broadcasts). Returns (*batch, *out_tail)."""
    last = list(inputs.values())[-1]
    batch = tuple(last.shape[: last.ndim - trailing[-1]])
    count = math.prod(batch)
    flat = {n: _as_rows(a, t) for (n, a), t in zip(inputs.items(), trailing)}
    if len(flat) > 1:
        template = [("SINGLE", next(iter(flat.values())).shape[0] == 1), *template]
    (out,) = launch(name, flat, {"out": (count, math.prod(out_tail))}, count, template, headers)
    return out.reshape(*batch, *out_tail)


def _as_rows(a: mx.array, trailing: int) -> mx.array:
    """(*lead, *element) -> (prod(lead), prod(element)): a kernel input's rows."""
    shape = (math.prod(a.shape[: a.ndim - trailing]), math.prod(a.shape[a.ndim - trailing:]))
    return a if a.shape == shape else a.reshape(shape)


def _listed(x):
    # With a single input MLX passes the array (or axis) itself rather than a tuple.
    return list(x) if isinstance(x, (list, tuple)) else [x]


def fast_path(kernel_fn: Callable[..., mx.array], pure_fn: Callable[..., mx.array],
              use_kernel: Callable[..., bool]) -> Callable[..., mx.array]:
    """``pure_fn``, but through ``kernel_fn`` where ``use_kernel(*args)``; differentiated as ``pure_fn``
    (a ``mx.custom_function`` with ``pure_fn``'s VJP and JVP). No ``mx.vmap`` over the kernel's inputs:
    custom kernels have no vmap rule (docs/conventions.md, "CUDA fast paths")."""

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
