"""Input conversion, dtype policy and shape checks shared by every public function.

Policy (DESIGN.md, "Array conventions"):

- ``mx.array`` inputs keep their dtype when it is float32 or float64; float16 and
  bfloat16 are computed in float32 and results are cast back; bool and integer
  inputs are promoted to float32; complex inputs raise ``TypeError``.
- numpy arrays, Python lists and scalars are converted the way ``mx.array`` does it
  (numpy float64 becomes float32, as everywhere in MLX): pass an ``mx.array`` of
  dtype float64 to compute in float64 (CPU only, MLX has no float64 on the GPU).

Shape checks run on shapes only, so they never synchronise with the device.
"""

from __future__ import annotations

from typing import Any, Sequence

import mlx.core as mx
import numpy as np

_COMPUTE = (mx.float32, mx.float64)
_LOW_PRECISION = (mx.float16, mx.bfloat16)
_COMPLEX = (mx.complex64,)


def eps(dtype: mx.Dtype) -> float:
    """Machine epsilon of a floating dtype (float64's, else float32's: the compute dtypes)."""
    return 2.220446049250313e-16 if dtype == mx.float64 else 1.1920929e-07


def as_float(x: Any, name: str = "input") -> tuple[mx.array, mx.Dtype]:
    """Return ``(array in its compute dtype, dtype the results take)``.

    >>> a, out = as_float([1, 2, 3])
    >>> a.dtype, out
    (mlx.core.float32, mlx.core.float32)
    """
    if not isinstance(x, mx.array):
        if isinstance(x, np.ndarray) and x.dtype.kind == "c" or isinstance(x, complex):
            raise TypeError(f"{name}: complex input is not supported (got {getattr(x, 'dtype', 'complex')})")
        if isinstance(x, np.ndarray) and x.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected a real numeric array, got numpy dtype {x.dtype}")
        if x is None or isinstance(x, (str, bytes)):
            raise TypeError(f"{name}: expected a real numeric array, got {x!r}")
        try:
            x = mx.array(x)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name}: expected a real numeric array or nested sequence of numbers, "
                            f"got {type(x).__name__} ({str(e).splitlines()[0]})") from e
    dtype = x.dtype
    if dtype in _COMPUTE:
        return x, dtype
    if dtype in _LOW_PRECISION:
        return x.astype(mx.float32), dtype
    if dtype in _COMPLEX:
        raise TypeError(f"{name}: complex input is not supported (got {dtype})")
    return x.astype(mx.float32), mx.float32


def as_floats(*xs: Any, names: Sequence[str]) -> tuple[list[mx.array], mx.Dtype]:
    """Convert several inputs with :func:`as_float` and promote them to one dtype.

    The compute dtype is float64 if any input is float64, else float32; the output
    dtype is the promotion of the inputs' output dtypes.
    """
    converted = [as_float(x, n) for x, n in zip(xs, names)]
    arrays = [a for a, _ in converted]
    compute = mx.float64 if any(a.dtype == mx.float64 for a in arrays) else mx.float32
    given = {d for _, d in converted}
    out = given.pop() if len(given) == 1 else mx.float64 if mx.float64 in given else mx.float32
    return [a.astype(compute) for a in arrays], out


def cast_out(x: mx.array, dtype: mx.Dtype) -> mx.array:
    """Cast a result back to the dtype the caller's inputs asked for."""
    return x if x.dtype == dtype else x.astype(dtype)


def check_trailing(x: mx.array, trailing: Sequence[int | None], name: str = "input") -> None:
    """Raise ``ValueError`` unless ``x.shape`` ends with ``trailing`` (``None`` = any size).

    >>> check_trailing(mx.zeros((5, 3)), (3,), "points")
    >>> check_trailing(mx.zeros((5, 4)), (3,), "points")
    Traceback (most recent call last):
    ...
    ValueError: points: expected shape (*, 3), got (5, 4)
    """
    k = len(trailing)
    ok = x.ndim >= k and all(d is None or s == d for s, d in zip(x.shape[x.ndim - k :], trailing))
    if not ok:
        dims = ", ".join("n" if d is None else str(d) for d in trailing)
        raise ValueError(f"{name}: expected shape (*, {dims}), got {tuple(x.shape)}")


def as_checked(x: Any, trailing: Sequence[int | None], name: str = "input") -> tuple[mx.array, mx.Dtype]:
    """:func:`as_float`, then :func:`check_trailing`: ``(array (*, *trailing), dtype the results take)``.

    >>> as_checked([[1, 2, 3]], (3,), "p")[0].shape
    (1, 3)
    """
    x, out = as_float(x, name)
    check_trailing(x, trailing, name)
    return x, out


def check_square(x: mx.array, sizes: Sequence[int] | None = None, name: str = "input") -> int:
    """Raise ``ValueError`` unless ``x`` is a batch of square matrices; return n.

    With ``sizes``, n must also be one of them.
    """
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name}: expected square matrices of shape (*, n, n), got {tuple(x.shape)}")
    n = x.shape[-1]
    if sizes is not None and n not in sizes:
        allowed = ", ".join(f"({s}, {s})" for s in sizes)
        raise ValueError(f"{name}: expected matrices of shape (*, n, n) with n in {tuple(sizes)} ({allowed}), got {tuple(x.shape)}")
    return n


def broadcast_batch(*shapes: Sequence[int], names: Sequence[str]) -> tuple[int, ...]:
    """Broadcast batch shapes with numpy rules; ``ValueError`` naming the inputs if they clash."""
    try:
        return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        desc = ", ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes))
        raise ValueError(f"batch shapes do not broadcast: {desc}") from None


def check_batch(*args: tuple[str, Any, int]) -> tuple[int, ...]:
    """Broadcast batch shape of named arrays, each given as ``(name, array, trailing dims)``.

    The batch of an array is its shape without the trailing dims (2 for matrices, 1 for
    vectors, 0 for scalars per element); lists and numpy arrays are read by their nested
    shape, never converted. Public functions call this before any MLX op
    broadcasts, so a clash raises the project's ``ValueError`` naming the arguments and
    their batch shapes instead of MLX's internal ``broadcast_shapes`` message.

    >>> check_batch(("R", mx.zeros((2, 3, 3)), 2), ("p", mx.zeros((5, 1, 3)), 1))
    (5, 2)
    >>> check_batch(("a", mx.zeros((2, 4, 4)), 2), ("b", mx.zeros((3, 4, 4)), 2))
    Traceback (most recent call last):
    ...
    ValueError: batch shapes do not broadcast: a (2,), b (3,)
    """
    shapes = [tuple(a.shape) if isinstance(a, mx.array) else np.shape(a) for _, a, _ in args]
    return broadcast_batch(*[s[: max(len(s) - k, 0)] for s, (_, _, k) in zip(shapes, args)],
                           names=[n for n, _, _ in args])


def rhs_as_matrix(a: mx.array, b: mx.array) -> tuple[mx.array, bool, tuple[int, ...]]:
    """Right-hand side of ``A x = b`` as (*, n, k), whether b was vectors, and the batch shape.

    ``b`` is a batch of vectors (*, n) when ``b.ndim == a.ndim - 1`` and its last size is n,
    otherwise a batch of matrices (*, n, k); batch dims broadcast with a's.
    """
    n = a.shape[-1]
    if b.ndim == a.ndim - 1 and b.shape[-1] == n:
        return b[..., None], True, broadcast_batch(a.shape[:-2], b.shape[:-1], names=("a", "b"))
    if b.ndim >= 2 and b.shape[-2] == n:
        return b, False, broadcast_batch(a.shape[:-2], b.shape[:-2], names=("a", "b"))
    raise ValueError(f"b: expected shape (*, {n}) or (*, {n}, k) to match a {tuple(a.shape)}, got {tuple(b.shape)}")


def argmax(x: mx.array, axis: int = -1) -> mx.array:
    """``mx.argmax`` that also takes an empty batch (MLX refuses any zero-size input).

    Only shapes are inspected: with no element at all the result is an empty uint32 array of
    the reduced shape, which is what the reduction means there.
    """
    return _arg_reduce(mx.argmax, x, axis)


def argmin(x: mx.array, axis: int = -1) -> mx.array:
    """``mx.argmin`` that also takes an empty batch (see :func:`argmax`)."""
    return _arg_reduce(mx.argmin, x, axis)


def _arg_reduce(reduce: Any, x: mx.array, axis: int) -> mx.array:
    if x.size == 0:
        axis = axis % x.ndim
        return mx.zeros((*x.shape[:axis], *x.shape[axis + 1:]), dtype=mx.uint32)
    return reduce(x, axis=axis)
