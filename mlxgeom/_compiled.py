"""The one way the library compiles its pure-MLX array cores: :func:`compiled`.

Eager MLX runs each elementwise op as its own pass over memory; ``mx.compile`` fuses a core's
graph into a few kernels (on the CPU too, through g++). Every hot core (the arithmetic after a
public function's conversions and shape checks) is wrapped once, at import: ``mx.compile`` caches
its traces by function object and retraces per input shape and dtype itself, so the compiled
function must be created once, never per call. Python-scalar arguments are constants of the trace
(one trace per value). Nested inside a user's ``mx.compile``, under
``mx.grad``/``mx.vjp``/``mx.jvp``/``mx.vmap`` and inside ``mx.custom_function`` bodies and VJPs,
MLX traces through a compiled function as through the plain one. CUDA kernel dispatch stays
outside where it can; where a core calls a dispatching function (SL(3)'s log calls ``linalg.inv``),
the dispatch is traced once, so each core keeps one compiled function per fast-path state and
``MLXGEOM_CUDA_KERNELS`` is still read at each call. Likewise one per default device kind (CPU or
GPU): a trace keeps the device it was recorded on, and a core may arrange its work per device
(the inverse works through large batches in blocks on the CPU).

First-call cost: each distinct fused kernel of a trace is compiled on first use (g++ per kernel on
the CPU, about a second each; NVRTC on CUDA, slower), and kernels are keyed by their graph and the
values of inlined scalar constants, not by shape. So a core is compiled only where its steady-state
gain is worth that cost, and is written so that repeated steps repeat one graph: a loop counter kept
in the graph rather than compared against the Python loop index (each index value would be a new
kernel), a per-step update of the same form rather than one of growing length. Cores left eager for
this reason: ``matrix_exp`` and its Frechet derivative, SL(3) exp, and the undistortion's final step
(its Newton steps are one compiled step, run ``iterations`` times). Work done
once per call on a small batch (a solver's final checks and conversions) runs its cores eagerly
inside :func:`eager`, so that it does not compile kernels of its own.

``MLXGEOM_COMPILE=0`` in the environment (read at each call) runs every core eagerly, for debugging.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from typing import Callable, TypeVar

import mlx.core as mx

from ._cuda import on_cuda

F = TypeVar("F", bound=Callable[..., object])

_EAGER = contextvars.ContextVar("mlxgeom_compiled_eager", default=False)


def enabled() -> bool:
    """Whether library cores run compiled (``MLXGEOM_COMPILE`` is not ``0``)."""
    return os.environ.get("MLXGEOM_COMPILE", "1") != "0"


@contextlib.contextmanager
def eager():
    """Within the block (or the function it decorates, ``@eager()``), compiled cores run their plain
    function (as with ``MLXGEOM_COMPILE=0``): for once-per-call work on small batches, whose own
    fused kernels would cost more to compile on the first call than they save.

    Example:
        >>> import mlx.core as mx
        >>> from mlxgeom.linalg import inv
        >>> with eager():
        ...     inv(2 * mx.eye(3))[0, 0].item()
        0.5
    """
    token = _EAGER.set(True)
    try:
        yield
    finally:
        _EAGER.reset(token)


def on_cpu() -> bool:
    """Whether MLX's default device is the CPU."""
    return mx.default_device() == mx.cpu


def compiled(fn: F) -> F:
    """``fn`` through ``mx.compile``. Its arguments are arrays, lists/tuples of arrays, or Python
    scalars (``mx.compile`` retraces per scalar value, so they act as static constants); one
    compiled function per CUDA fast-path state (:func:`mlxgeom._cuda.on_cuda`) and default device kind.

    Example:
        >>> import mlx.core as mx
        >>> @compiled
        ... def scaled_sum(x, k):
        ...     return (x * k).sum(axis=-1)
        >>> scaled_sum(mx.ones((2, 3)), 2.0)
        array([6, 6], dtype=float32)
    """

    @functools.cache
    def for_state(cuda: bool, cpu: bool) -> Callable[..., object]:
        # A new function object per state: mx.compile caches its traces by function identity.
        return mx.compile(functools.partial(fn))

    @functools.wraps(fn)
    def call(*args):
        return for_state(on_cuda(), on_cpu())(*args) if enabled() and not _EAGER.get() else fn(*args)

    return call  # type: ignore[return-value]
