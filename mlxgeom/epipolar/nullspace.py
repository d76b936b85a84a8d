"""Null spaces of small wide linear systems by Householder QR, and the epipolar design rows.

The minimal solvers need an orthonormal basis of the null space of an (m, 9) system with
m = 5 (five-point) or 7 (seven-point). The QR factorisation of ``A^T = Q R`` by m Householder
reflections (Golub and Van Loan, "Matrix Computations", 4th ed., Alg. 5.2.1) gives it as the
last ``9 - m`` columns of Q, with backward-stable float32 accuracy (the normal matrix ``A^T A``
would square the condition number). Every reflection is a fixed sequence of elementwise ops on
the whole matrix (rows above the step are masked), so the loop unrolls to one graph.
"""

from __future__ import annotations

import mlx.core as mx

from ..homography._common import safe_div, safe_sqrt
from ..linalg import matmul

# |R_kk| below this fraction of the largest row norm of A marks a rank-deficient (degenerate) sample.
_RANK_TOL = 1e-5


def design_rows(x1: mx.array, x2: mx.array) -> mx.array:
    """Rows ``kron(x2h, x1h)`` (*, N, 9) with ``a . vec(F) = x2h^T F x1h`` (F row-major), xh = (x, y, 1)."""
    one = mx.ones_like(x1[..., :1])
    h1 = mx.concatenate([x1, one], axis=-1)
    h2 = mx.concatenate([x2, one], axis=-1)
    return (h2[..., :, None] * h1[..., None, :]).reshape(*h1.shape[:-1], 9)


def null_space(a: mx.array) -> tuple[mx.array, mx.array]:
    """Orthonormal basis (*, n, n - m) of the null space of (*, m, n) ``a`` (m < n), and full-rank ok (*).

    ``ok`` is False where a pivot ``|R_kk|`` falls below ``1e-5`` of the largest row norm (the
    rows are dependent, so the returned columns span only part of a larger null space) or where
    the input is not finite.
    """
    m, n = a.shape[-2], a.shape[-1]
    r = a.swapaxes(-1, -2)  # (*, n, m): its QR gives Q whose trailing columns span null(a)
    q = mx.broadcast_to(mx.eye(n, dtype=a.dtype), (*a.shape[:-2], n, n))
    scale = mx.sqrt(mx.max(mx.sum(a * a, axis=-1), axis=-1))
    ok = mx.all(mx.isfinite(a), axis=(-2, -1)) & (scale > 0)
    rows = mx.arange(n)[:, None]
    for k in range(m):
        x = mx.where(rows >= k, r[..., :, k : k + 1], 0)  # (*, n, 1)
        xk = x[..., k : k + 1, :]
        norm = safe_sqrt(mx.sum(x * x, axis=-2, keepdims=True))
        alpha = mx.where(xk >= 0, -norm, norm)  # the sign that avoids cancellation in x - alpha e_k
        v = x - mx.where(rows == k, alpha, 0)
        vv = mx.sum(v * v, axis=-2, keepdims=True)
        # reflect with I - 2 v v^T / (v^T v); a zero column needs no reflection
        beta = safe_div(mx.array(2.0, dtype=a.dtype), vv, vv > 0)
        r = r - beta * v * matmul(v.swapaxes(-1, -2), r)
        q = q - beta * matmul(q, v) * v.swapaxes(-1, -2)
        ok = ok & (mx.abs(alpha[..., 0, 0]) > _RANK_TOL * scale)
    return q[..., :, m:], ok & mx.all(mx.isfinite(q), axis=(-2, -1))

