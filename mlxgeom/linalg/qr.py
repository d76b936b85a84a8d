"""Thin QR factorisation of small tall matrices by Gram-Schmidt, twice.

Each column is orthogonalised against the earlier ones by modified Gram-Schmidt, and the
pass is repeated ("twice is enough": Giraud, Langou, Rozloznik and van den Eshof 2005), which
keeps Q orthonormal to rounding level for any numerically full-rank input. R is the factor
a least-squares problem needs without forming the normal equations, whose condition number is
the square of the matrix's (too much for float32 once the matrix's exceeds about 1e3).
Products are elementwise sums (no TF32 on CUDA), so the factorisation is a few array ops
per pair of columns and differentiable.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_float, cast_out


def qr_columns(a: mx.array) -> tuple[mx.array, mx.array]:
    """:func:`qr` on an ``mx.array`` without the input checks."""
    n = a.shape[-1]
    zero = mx.zeros(a.shape[:-2], dtype=a.dtype)
    q: list[mx.array] = []
    r: list[list[mx.array]] = []  # r[j] = column j of R, entries 0..n-1
    for j in range(n):
        v, coef = a[..., :, j], [zero] * n
        for _ in range(2):
            for i, qi in enumerate(q):
                c = mx.sum(qi * v, axis=-1, keepdims=True)
                v = v - c * qi
                coef[i] = coef[i] + c[..., 0]
        norm = mx.sqrt(mx.sum(v * v, axis=-1, keepdims=True))
        q.append(v / mx.where(norm > 0, norm, 1.0))
        coef[j] = norm[..., 0]
        r.append(coef)
    return mx.stack(q, axis=-1), mx.stack([mx.stack(col, axis=-1) for col in r], axis=-1)


def qr(a: Any) -> tuple[mx.array, mx.array]:
    """Thin QR factorisation ``a = q r`` of a batch of tall matrices.

    Args:
        a: (*, m, n) with m >= n, float32 or float64 (other inputs are converted as everywhere).

    Returns:
        ``(q, r)``: q (*, m, n) with orthonormal columns, r (*, n, n) upper triangular with a
        non-negative diagonal. A column that depends on the earlier ones gets ``r[j, j]`` of
        rounding size (exactly 0 for a zero column, whose ``q`` column is then 0): compare the
        diagonal with the column norms to detect rank deficiency. Unlike ``mx.linalg.qr``, this
        runs on the GPU and has gradients (through its ops).

    Example:
        >>> import mlx.core as mx
        >>> q, r = qr(mx.array([[3.0, 1.0], [4.0, 2.0], [0.0, 2.0]]))
        >>> [round(v, 4) for v in r.reshape(-1).tolist()]
        [5.0, 2.2, 0.0, 2.0396]
    """
    x, out = as_float(a, "a")
    if x.ndim < 2 or x.shape[-2] < x.shape[-1]:
        raise ValueError(f"qr: expected a (*, m, n) array with m >= n, got shape {tuple(x.shape)}")
    q, r = qr_columns(x)
    return cast_out(q, out), cast_out(r, out)
