"""The one way the library compiles its pure-MLX array cores: :func:`compiled`.

Eager MLX runs each elementwise op as its own pass over memory; ``mx.compile`` fuses a core's
graph into a few kernels (on the CPU too, through g++). Every hot core (the arithmetic after a
public function's conversions and shape checks) is wrapped once, at import: ``mx.compile`` caches
its traces by function object and retraces per input shape and dtype itself, so the compiled
function must be created once, never per call. Static (non-array) arguments are keywords and get
one compiled function each (``functools.cache``). Nested inside a user's ``mx.compile``, under
``mx.grad``/``mx.vjp``/``mx.jvp``/``mx.vmap`` and inside ``mx.custom_function`` bodies and VJPs,
MLX traces through a compiled function as through the plain one. CUDA kernel dispatch stays
outside (custom kernels are opaque to compile's fusion anyway).

``MLXGEOM_COMPILE=0`` in the environment (read at each call) runs every core eagerly, for debugging.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, TypeVar

import mlx.core as mx

F = TypeVar("F", bound=Callable[..., object])


def enabled() -> bool:
    """Whether library cores run compiled (``MLXGEOM_COMPILE`` is not ``0``)."""
    return os.environ.get("MLXGEOM_COMPILE", "1") != "0"


def compiled(fn: F) -> F:
    """``fn`` through ``mx.compile``: positional arguments are arrays (or lists/tuples of arrays),
    keyword arguments are static (hashable Python values, one compiled function per value set).

    Example:
        >>> import mlx.core as mx
        >>> @compiled
        ... def scaled_sum(x, *, k):
        ...     return (x * k).sum(axis=-1)
        >>> scaled_sum(mx.ones((2, 3)), k=2.0)
        array([6, 6], dtype=float32)
    """

    @functools.cache
    def for_static(static: tuple[tuple[str, object], ...]) -> Callable[..., object]:
        return mx.compile(functools.partial(fn, **dict(static)) if static else fn)

    @functools.wraps(fn)
    def call(*arrays, **static):
        if not enabled():
            return fn(*arrays, **static)
        return for_static(tuple(sorted(static.items())))(*arrays)

    return call  # type: ignore[return-value]
