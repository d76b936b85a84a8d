"""Null spaces of small wide linear systems by Householder QR, and the epipolar design rows.

The minimal solvers need an orthonormal basis of the null space of an (m, 9) system with
m = 5 (five-point) or 7 (seven-point). The QR factorisation of ``A^T = Q R`` by m Householder
reflections (Golub and Van Loan, "Matrix Computations", 4th ed., Alg. 5.2.1) gives it as the
last ``9 - m`` columns of Q, with backward-stable float32 accuracy (the normal matrix ``A^T A``
would square the condition number). Every reflection is elementwise arithmetic on the matrix
entries, so the loop unrolls to one graph without data-dependent branches.
"""

from __future__ import annotations

import mlx.core as mx

from .._vmap import all_of
from ..homography._common import safe_div, safe_sqrt

# |R_kk| below this fraction of the largest row norm of A marks a rank-deficient (degenerate) sample.
_RANK_TOL = 1e-5


def design_rows(x1: mx.array, x2: mx.array) -> mx.array:
    """Rows ``kron(x2h, x1h)`` (*, N, 9) with ``a . vec(F) = x2h^T F x1h`` (F row-major), xh = (x, y, 1)."""
    one = mx.ones_like(x1[..., :1])
    h1 = mx.concatenate([x1, one], axis=-1)
    h2 = mx.concatenate([x2, one], axis=-1)
    return (h2[..., :, None] * h1[..., None, :]).reshape(*h1.shape[:-1], 9)


def _dot(u: list, v: list):
    """``sum_i u_i v_i`` in order; Python 0.0 entries are skipped and 1.0 entries not multiplied (exact either way)."""
    terms = [a * b if not isinstance(a, float) else b if a == 1.0 else a * b
             for a, b in zip(u, v) if not (isinstance(a, float) and a == 0.0)]
    return sum(terms[1:], terms[0]) if terms else 0.0


def null_space(a: mx.array) -> tuple[mx.array, mx.array]:
    """Orthonormal basis (*, n, n - m) of the null space of (*, m, n) ``a`` (m < n), and full-rank ok (*).

    ``ok`` is False where a pivot ``|R_kk|`` falls below ``1e-5`` of the largest row norm (the
    rows are dependent, so the returned columns span only part of a larger null space) or where
    the input is not finite. Entry by entry: every matrix entry is its own (*) array, so the
    factorisation is elementwise arithmetic that ``mx.compile`` fuses, with no (*, n, n)
    intermediates (on the CPU those made it memory-bound); the operations and their order are
    those of the matrix form (``r - (beta v)(v^T r)``, ``q - (beta q v) v^T``).
    """
    m, n = a.shape[-2], a.shape[-1]
    scale = mx.sqrt(mx.max(mx.sum(a * a, axis=-1), axis=-1))
    ok = all_of(mx.all(mx.isfinite(a), axis=(-2, -1)), scale > 0)
    # columns of A^T (its QR gives Q whose trailing columns span null(a)), each a list of n entries
    cols = [[a[..., j, i] for i in range(n)] for j in range(m)]
    q = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]  # rows of Q
    for k in range(m):
        x = cols[k][k:]
        norm = safe_sqrt(_dot(x, x))
        alpha = mx.where(x[0] >= 0, -norm, norm)  # the sign that avoids cancellation in x - alpha e_k
        v = [x[0] - alpha] + x[1:]  # rows k..n-1 (zero above)
        vv = _dot(v, v)
        # I - 2 v v^T / (v^T v); a zero column needs no reflection
        beta = safe_div(mx.array(2.0, dtype=a.dtype), vv, vv > 0)
        bv = [beta * vi for vi in v]
        for j in range(k + 1, m):
            d = _dot(v, cols[j][k:])
            cols[j] = cols[j][:k] + [c - bvi * d for c, bvi in zip(cols[j][k:], bv)]
        for i in range(n):
            qv = _dot(q[i][k:], v)
            if not isinstance(qv, float):
                bqv = beta * qv
                q[i] = q[i][:k] + [c - bqv * vj for c, vj in zip(q[i][k:], v)]
        ok = all_of(ok, mx.abs(alpha) > _RANK_TOL * scale)
    basis = mx.stack([mx.stack([mx.broadcast_to(mx.array(e, dtype=a.dtype), scale.shape) if isinstance(e, float) else e
                                for e in q[i][m:]], axis=-1) for i in range(n)], axis=-2)
    return basis, all_of(ok, mx.all(mx.isfinite(basis), axis=(-2, -1)))
