"""Thin QR factorisation of small tall matrices by Gram-Schmidt, twice.

Each column is orthogonalised against the earlier ones by classical Gram-Schmidt, and the
pass is repeated ("twice is enough": Giraud, Langou, Rozloznik and van den Eshof 2005), which
keeps Q orthonormal to rounding level for any numerically full-rank input. R is the factor
a least-squares problem needs without forming the normal equations, whose condition number is
the square of the matrix's (too much for float32 once the matrix's exceeds about 1e3).
Products are elementwise sums (no TF32 on CUDA), so the whole factorisation is O(n) array ops
per column and differentiable.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_float, cast_out


def _orthogonalize(q: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
    """v (*, m) minus its projection on the orthonormal columns of q (*, m, j), twice; with the
    (*, j) coefficients removed."""
    total = mx.zeros((*v.shape[:-1], q.shape[-1]), dtype=v.dtype)
    for _ in range(2):
        c = mx.sum(q * v[..., :, None], axis=-2)
        v = v - mx.sum(q * c[..., None, :], axis=-1)
        total = total + c
    return v, total


def qr_columns(a: mx.array) -> tuple[mx.array, mx.array]:
    """:func:`qr` on an ``mx.array`` without the input checks."""
    m, n = a.shape[-2:]
    batch = a.shape[:-2]
    q = mx.zeros((*batch, m, 0), dtype=a.dtype)
    r_cols = []
    for j in range(n):
        v, c = _orthogonalize(q, a[..., :, j])
        norm = mx.sqrt(mx.sum(v * v, axis=-1))
        q = mx.concatenate([q, (v / mx.where(norm > 0, norm, 1.0)[..., None])[..., None]], axis=-1)
        r_cols.append(mx.concatenate([c, norm[..., None], mx.zeros((*batch, n - j - 1), dtype=a.dtype)], axis=-1))
    return q, mx.stack(r_cols, axis=-1)


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
