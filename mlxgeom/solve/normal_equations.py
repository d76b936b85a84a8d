"""Robust cost and Gauss-Newton normal equations of many small dense problems.

With residual blocks ``r_i`` (``block_size`` entries each, 2 for reprojection errors) and
their squared norms ``s_i = ||r_i||^2``, the cost is ``F = 0.5 sum_i rho(s_i)`` and the
reweighted Gauss-Newton system ``A = J^T W J``, ``g = J^T W r`` with the IRLS weights
``W = rho'(s_i)`` (Triggs, McLauchlan, Hartley, Fitzgibbon, "Bundle Adjustment -- A Modern
Synthesis", 2000, sec. 4.3, dropping the ``rho''`` term).
"""

from __future__ import annotations

import mlx.core as mx

from .._checks import check_batch
from ..linalg.products import _normal_system
from .losses import RobustLoss


def weighted_cost(r: mx.array, block_size: int, loss: RobustLoss | None) -> tuple[mx.array, mx.array]:
    """Cost ``0.5 sum_i rho(||r_i||^2)`` (*) and IRLS weights (*, m) of residuals r (*, m).

    Args:
        r: (*, m) residuals, m a multiple of ``block_size``; block i is ``r[..., b i : b (i + 1)]``.
        block_size: entries per robust block.
        loss: a :class:`RobustLoss`, or None for plain squares (weights 1).

    Returns:
        ``(cost (*), w (*, m))``: every entry of a block carries its block's weight ``rho'(s_i)``.

    Example:
        >>> import mlx.core as mx
        >>> cost, w = weighted_cost(mx.array([[1.0, 2.0]]), 1, None)
        >>> cost.item(), w.tolist()
        (2.5, [[1.0, 1.0]])
    """
    s = mx.sum(mx.square(r.reshape(*r.shape[:-1], r.shape[-1] // block_size, block_size)), axis=-1)
    if loss is None:
        return 0.5 * mx.sum(s, axis=-1), mx.ones_like(r)
    return 0.5 * mx.sum(loss.rho(s), axis=-1), mx.repeat(loss.weight(s), block_size, axis=-1)


def normal_equations(r: mx.array, J: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """``A = J^T W J`` (*, n, n) and ``g = J^T W r`` (*, n) of dense per-problem Jacobians.

    Exact float32 (elementwise products, no TF32 matmul on CUDA) in about 2 n kernels rather than
    one per entry of A: row k of the upper triangle is one broadcast product reduced over the m
    residuals (the last, contiguous axis), and one gather unpacks the rows.

    Args:
        r: (*, m) residuals.
        J: (*, m, n) their Jacobian.
        w: (*, m) per-residual weights (from :func:`weighted_cost`, or a mask).

    Returns:
        ``(A, g)``.

    Example:
        >>> import mlx.core as mx
        >>> A, g = normal_equations(mx.array([[1.0, 2.0]]), mx.array([[[1.0], [1.0]]]), mx.ones((1, 2)))
        >>> A.tolist(), g.tolist()
        ([[[2.0]]], [[3.0]])
    """
    if not r.shape == J.shape[:-1] == w.shape:  # equal shapes (the hot case) cannot clash
        check_batch(("r", r, 0), ("J", J, 1), ("w", w, 0))
    n = J.shape[-1]
    Jt = J.swapaxes(-1, -2)
    JtW = Jt * w[..., None, :]
    return _normal_system([*(JtW[..., k : k + 1, :] * Jt[..., k:, :] for k in range(n)), JtW * r[..., None, :]], n)
