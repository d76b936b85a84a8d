"""Triangular solves by substitution, unrolled over the static size (GVL Alg. 3.1.1 / 3.1.2).

Row i of the solution is a (*, k) array built from the rows before it (forward, lower) or after
it (back, upper): O(n^2) elementwise ops that ``mx.compile`` fuses, exact float32 on CUDA (no TF32).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_floats, cast_out, check_square, rhs_as_matrix


def substitute(a: mx.array, b: mx.array, upper: bool) -> mx.array:
    """:func:`solve_triangular` on ``mx.array`` inputs (*, n, n) and (*, n, k), without checks."""
    n = a.shape[-1]
    order = range(n - 1, -1, -1) if upper else range(n)
    x: list[mx.array | None] = [None] * n
    for i in order:
        r = b[..., i, :]
        for k in (range(i + 1, n) if upper else range(i)):
            r = r - a[..., i, k][..., None] * x[k]
        x[i] = r / a[..., i, i][..., None]
    return mx.stack(x, axis=-2)


def solve_triangular(a: Any, b: Any, *, upper: bool = False) -> mx.array:
    """Solve ``a x = b`` for triangular ``a`` (only its ``upper`` or lower triangle is read).

    Args:
        a: (*, n, n) triangular matrices with a non-zero diagonal (a zero gives inf/NaN rows).
        b: (*, n) or (*, n, k); batch dims broadcast against a's.
        upper: whether ``a`` is upper triangular (back substitution) or lower (forward).

    Returns:
        x with b's shape, in the inputs' promoted dtype. Runs on the GPU and has gradients
        (through its ops), unlike ``mx.linalg.solve_triangular``.

    Example:
        >>> import mlx.core as mx
        >>> solve_triangular(mx.array([[2.0, 0.0], [1.0, 4.0]]), mx.array([2.0, 9.0])).tolist()
        [1.0, 2.0]
    """
    (a, b), out = as_floats(a, b, names=("a", "b"))
    check_square(a, name="a")
    b, vector, shape = rhs_as_matrix(a, b)
    x = substitute(mx.broadcast_to(a, (*shape, *a.shape[-2:])), mx.broadcast_to(b, (*shape, *b.shape[-2:])), upper)
    return cast_out(x[..., 0] if vector else x, out)
