"""The one ``mx.vmap`` rule of the library's ``mx.custom_function`` cores: :func:`batched_vmap`.

Every core takes any number of leading batch axes, so ``mx.vmap`` needs no per-op rule: the mapped
axis becomes one more leading batch axis and the core runs once on the whole batch, through its own
VJP and JVP. Without a rule, MLX vmaps the core's body op by op (``mx.custom_function``'s default
rule is ``mx.vmap`` of the body), which met an MLX bug (0.32.4, still in its main branch):
``BitwiseBinary::vmap`` (``&``, ``|``, ``^``, shifts) aligns its operands' ranks and mapped axes but,
unlike every other binary op's rule, does not broadcast them, and builds the result with the first
operand's shape. An operand that is unmapped (a constant) or of another shape, unless it has a
single element, is then read out of bounds: ``mx.vmap(lambda v: (v > 0) | c)(x)`` with a constant
``c`` of x's row shape gives wrong, run-to-run varying rows. Derivative rules and the code of public
functions outside the cores are still vmapped op by op, so there boolean masks that may broadcast
or be constant are combined with :func:`all_of` / :func:`any_of` (``mx.logical_and`` / ``mx.logical_or``,
whose rules broadcast), never with ``&`` / ``|``.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import mlx.core as mx

F = TypeVar("F")


def batched_vmap(fn: F) -> F:
    """Give the ``mx.custom_function`` ``fn`` (array arguments only, outputs an array or a tuple of
    arrays) the vmap rule "move the mapped axis to the front and call ``fn`` on the batch".

    Mapped arguments get size-1 axes after the new leading axis so that all arguments keep their
    relative ranks (numpy broadcasting between them is unchanged); unmapped ones are broadcast
    along it. Outputs are mapped along axis 0.

    Example:
        >>> @batched_vmap
        ... @mx.custom_function
        ... def total(a):
        ...     return mx.sum(a, axis=-1)
        >>> mx.vmap(total, in_axes=1)(mx.ones((3, 2))).tolist()
        [3.0, 3.0]
    """

    @fn.vmap  # type: ignore[attr-defined]
    def rule(args: Any, axes: Any) -> tuple[Any, Any]:
        # With one argument MLX passes the array and its axis bare, not in tuples.
        single = isinstance(args, mx.array)
        args, axes = ((args,), (axes,)) if single else (tuple(args), tuple(axes))
        size = next(a.shape[ax] for a, ax in zip(args, axes) if ax is not None)
        rank = max(a.ndim - (ax is not None) for a, ax in zip(args, axes))

        def leading(a: mx.array, ax: int | None) -> mx.array:
            if ax is None:
                a = a.reshape((1,) * (rank + 1 - a.ndim) + a.shape)
                return mx.broadcast_to(a, (size, *a.shape[1:]))
            a = mx.moveaxis(a, ax, 0)
            return a.reshape(size, *(1,) * (rank + 1 - a.ndim), *a.shape[1:])

        out = fn(*map(leading, args, axes))  # type: ignore[operator]
        return out, 0 if isinstance(out, mx.array) else tuple(0 for _ in out)

    return fn


def all_of(*masks: mx.array) -> mx.array:
    """Elementwise AND of boolean masks (broadcast); ``&`` without MLX's vmap bug (module docstring).

    >>> all_of(mx.array([True, True]), mx.array([True, False])).tolist()
    [True, False]
    """
    return functools.reduce(mx.logical_and, masks)


def any_of(*masks: mx.array) -> mx.array:
    """Elementwise OR of boolean masks (broadcast); ``|`` without MLX's vmap bug (module docstring).

    >>> any_of(mx.array([False, False]), mx.array([True, False])).tolist()
    [True, False]
    """
    return functools.reduce(mx.logical_or, masks)
