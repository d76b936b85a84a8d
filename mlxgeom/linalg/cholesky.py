"""Solve small symmetric positive definite systems by an unrolled Cholesky factorisation.

For the static size n the factorisation L L^T = A is written column by column
(Golub and Van Loan, "Matrix Computations", 4th ed., sec. 4.2), each column an elementwise
update of full-length columns, so the whole solve is O(n^2) array ops that ``mx.compile``
fuses; then forward and back substitution (:mod:`.triangular`).
Failed pivots (not positive, or not finite) are replaced by 1 so that the arithmetic
stays finite, flagged in ``ok``, and the affected solutions are set to NaN.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .._checks import as_floats, cast_out, check_square, rhs_as_matrix
from .._compiled import compiled
from .._vmap import all_of, batched_vmap
from .triangular import substitute


def _factor(a: mx.array) -> tuple[mx.array, mx.array]:
    """Lower Cholesky factor (*, n, n) of the symmetric part of ``a`` and a (*) ok mask.

    Left-looking order on full-length columns: column j is a's column j minus the outer-product
    contributions of the columns before it, masked to the rows below the diagonal. Every array
    keeps the full size n. The outer-product form on shrinking blocks compiles fewer CPU kernels,
    but its ends are zero-size arrays, and it is the suspect of the worker crashes of every
    solve_spd caller in 2026-12-07's GPU run (this form had passed there before).
    """
    n = a.shape[-1]
    a = 0.5 * (a + a.swapaxes(-1, -2))
    rows = np.arange(n)
    cols: list[mx.array] = []
    ok = mx.all(mx.isfinite(a), axis=(-2, -1))
    for j in range(n):
        v = a[..., :, j]
        for k in range(j):
            v = v - cols[k] * cols[k][..., j : j + 1]
        d = v[..., j]
        good = d > 0
        ok = all_of(ok, good)
        root = mx.sqrt(mx.where(good, d, 1.0))
        col = mx.where(mx.array(rows > j), v / root[..., None], 0.0)
        cols.append(mx.where(mx.array(rows == j), root[..., None], col))
    return mx.stack(cols, axis=-1), ok


def _substitute(lower: mx.array, b: mx.array) -> mx.array:
    """x = (L L^T)^-1 b for L (*, n, n) and b (*, n, k)."""
    return substitute(lower.swapaxes(-1, -2), substitute(lower, b, upper=False), upper=True)


@compiled
def _solve_masked(a: mx.array, b: mx.array) -> tuple[mx.array, mx.array]:
    lower, ok = _factor(a)
    x = _substitute(lower, b)
    return mx.where(ok[..., None, None], x, mx.nan), ok


@compiled
def _solve_spd_pullback(a: mx.array, b: mx.array, g: mx.array, x: mx.array, ok: mx.array):
    # x = A^-1 b with A the symmetric part: gb = A^-1 g, gA = -sym(gb x^T).
    # Entries with ok False get zero gradients, so a masked-out failure stays harmless.
    lower, _ = _factor(a)
    okm = ok[..., None, None]
    gb = mx.where(okm, _substitute(lower, mx.where(okm, g, 0.0)), 0.0)
    xs = mx.where(okm, x, 0.0)
    outer = mx.sum(gb[..., :, None, :] * xs[..., None, :, :], axis=-1)
    return -0.5 * (outer + outer.swapaxes(-1, -2)), gb


@batched_vmap
@mx.custom_function
def _solve_spd_core(a: mx.array, b: mx.array) -> tuple[mx.array, mx.array]:
    return _solve_masked(a, b)


@_solve_spd_core.vjp
def _solve_spd_vjp(primals, cotangents, outputs):
    a, b = primals
    ga, gb = _solve_spd_pullback(a, b, cotangents[0], *outputs)
    return _unbroadcast(ga, a.shape), _unbroadcast(gb, b.shape)


@_solve_spd_core.jvp
def _solve_spd_jvp(primals, tangents):
    a, b = primals
    da, db = tangents
    x, ok = _solve_spd_core(a, b)
    lower, _ = _factor(a)
    das = 0.5 * (da + da.swapaxes(-1, -2))
    rhs = db - mx.sum(das[..., :, :, None] * x[..., None, :, :], axis=-2)
    dx = mx.where(ok[..., None, None], _substitute(lower, rhs), mx.nan)
    return dx, mx.zeros(ok.shape, dtype=mx.bool_)


def _unbroadcast(g: mx.array, shape: tuple[int, ...]) -> mx.array:
    """Sum a gradient over the batch axes that broadcasting added to an input of ``shape``."""
    extra = g.ndim - len(shape)
    if extra:
        g = mx.sum(g, axis=tuple(range(extra)))
    axes = tuple(i for i, (s, t) in enumerate(zip(shape, g.shape)) if s == 1 and t != 1)
    return mx.sum(g, axis=axes, keepdims=True) if axes else g


def solve_spd_ex(a, b) -> tuple[mx.array, mx.array]:
    """Solve ``A x = b`` for small symmetric positive definite A, with a success mask.

    Cholesky ``A = L L^T`` unrolled over the static n, then two triangular solves. Only
    the symmetric part ``(A + A^T) / 2`` is read. ``ok`` is False where a pivot is not
    positive or A holds a non-finite entry; those solutions are NaN, and nothing about
    them reaches other batch entries.

    Gradient (custom VJP, exact for the symmetric part): ``gb = A^-1 g`` with the same
    factor and ``gA = -sym(gb x^T)``, ``sym(M) = (M + M^T) / 2``; summed over the
    right-hand-side columns for (*, n, k) b. Entries with ``ok`` False get zero gradients.

    Args:
        a: (*, n, n) symmetric positive definite, any n >= 1 (intended n <= ~16).
        b: (*, n) vectors when ``b.ndim == a.ndim - 1`` and its last size is n, else
            (*, n, k); batch dims broadcast with a's.

    Returns:
        ``(x, ok)``: x with b's trailing shape and the broadcast batch shape; ok (*) bool.

    Example:
        >>> import mlx.core as mx
        >>> x, ok = solve_spd_ex(mx.array([[4.0, 2.0], [2.0, 3.0]]), mx.array([2.0, 1.0]))
        >>> [round(v, 4) for v in x.tolist()], ok.item()
        ([0.5, 0.0], True)
    """
    (a, b), out = as_floats(a, b, names=("a", "b"))
    check_square(a, None, "a")
    rhs, vector, batch = rhs_as_matrix(a, b)
    x, ok = _solve_spd_core(a, rhs)
    return cast_out(x[..., 0] if vector else x, out), mx.broadcast_to(ok, batch)


def solve_spd(a, b) -> mx.array:
    """Solve ``A x = b`` for small SPD A: :func:`solve_spd_ex` without the mask.

    Entries whose A is not positive definite (or not finite) are NaN.

    Args:
        a: (*, n, n) symmetric positive definite.
        b: (*, n) or (*, n, k), as in :func:`solve_spd_ex`.

    Returns:
        x with b's trailing shape and the broadcast batch shape.

    Example:
        >>> import mlx.core as mx
        >>> solve_spd(mx.array([[2.0, 0.0], [0.0, 4.0]]), mx.array([1.0, 1.0]))
        array([0.5, 0.25], dtype=float32)
    """
    return solve_spd_ex(a, b)[0]
