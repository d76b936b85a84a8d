"""The library's gathers, all of one kind: MLX's ``Gather`` (``mx.take``) with int32 indices.

MLX's CUDA backend compiles a module of 18-72 kernel templates with NVRTC the first time a process
meets a new gather specialisation, keyed by kind (``take`` or ``take_along_axis``), data dtype, index
dtype and index count, at 3-6 s each (docs/conventions.md, "First-call cost"). argsort and argmax give
uint32, numpy index tables int64, and ``take_along_axis`` is a kind of its own; written directly, one
solver met five to eight of them. Here every gather is a ``take`` along one axis with int32 indices,
on float data (bool through float32), and integer data known to lie below 2^24 (indices of points
or groups) through float32 as well: one module for a solver, two with the library's other integer data.
"""

from __future__ import annotations

import math

import mlx.core as mx


# Integer values gathered through int32: exactly (uint32 by its bits). 64-bit ones keep their own gather.
_THROUGH_INT32 = (mx.int8, mx.uint8, mx.int16, mx.uint16, mx.uint32)


def take(a: mx.array, indices: mx.array, axis: int) -> mx.array:
    """``mx.take(a, indices, axis)`` with int32 indices; bool values are gathered as float32, integers
    of up to 32 bits as int32.

    Example:
        >>> take(mx.array([[1.0, 2.0], [3.0, 4.0]]), mx.array([1, 1]), axis=0).tolist()
        [[3.0, 4.0], [3.0, 4.0]]
    """
    idx = indices if indices.dtype == mx.int32 else indices.astype(mx.int32)
    if a.dtype == mx.bool_:
        return mx.take(a.astype(mx.float32), idx, axis=axis) > 0
    if a.dtype in _THROUGH_INT32:
        return mx.take(a.astype(mx.int32), idx, axis=axis).astype(a.dtype)
    return mx.take(a, idx, axis=axis)


def take_index_values(values: mx.array, indices: mx.array, axis: int, bound: int) -> mx.array:
    """:func:`take` of integer ``values`` in [0, ``bound``), ``bound`` static: exact through float32 when
    ``bound <= 2**24`` (every such integer is a float32), so the gather shares the float one's module.

    Example:
        >>> take_index_values(mx.array([5, 7, 9]), mx.array([2, 0]), 0, bound=10).tolist()
        [9, 5]
    """
    if bound > 1 << 24:
        return take(values, indices, axis)
    return take(values.astype(mx.float32), indices, axis).astype(values.dtype)


def take_rows(a: mx.array, indices: mx.array, axis: int, bound: int | None = None) -> mx.array:
    """Per batch entry, the sub-arrays of ``a`` at ``indices`` along ``axis``.

    Args:
        a: (*batch_a, n, *rest); ``axis`` is the position of n (negative counts from the end).
        indices: (*batch, k) integers in [0, n), ``batch_a`` broadcasting against ``batch``.
        bound: for integer ``a`` known to lie in [0, bound): gathered as :func:`take_index_values`.

    Returns:
        (*batch, k, *rest): ``out[..., j, ...] = a[..., indices[..., j], ...]``, as
        ``mx.take_along_axis`` with indices expanded over ``rest``, by one ``take`` of a's rows
        (a broadcast batch axis of ``a`` is read in place, not copied).

    Example:
        >>> a = mx.array([[[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]])
        >>> take_rows(a, mx.array([[1], [0]]), axis=1).tolist()
        [[[2.0, 3.0]], [[4.0, 5.0]]]
    """
    axis = axis % a.ndim
    batch_a, n, rest = a.shape[:axis], a.shape[axis], a.shape[axis + 1:]
    batch = mx.broadcast_shapes(batch_a, indices.shape[:-1])
    rows = indices.astype(mx.int32)
    # Row of a's first sub-array for each batch entry: stride 0 along a's broadcast (size 1) axes.
    stride, pad = n, len(batch) - len(batch_a)
    for d in reversed(range(len(batch_a))):
        if batch_a[d] != 1:
            shape = [1] * (len(batch) + 1)
            shape[pad + d] = batch_a[d]
            rows = rows + (mx.arange(batch_a[d], dtype=mx.int32) * stride).reshape(shape)
            stride *= batch_a[d]
    rows = mx.broadcast_to(rows, (*batch, indices.shape[-1]))
    rows_of_a = a.reshape(math.prod(batch_a) * n, math.prod(rest))
    flat = (take(rows_of_a, rows.reshape(-1), axis=0) if bound is None else
            take_index_values(rows_of_a, rows.reshape(-1), 0, bound))
    return flat.reshape(*batch, indices.shape[-1], *rest)
