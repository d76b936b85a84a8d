"""Products of small matrices written as sums of outer products, and Gauss-Newton sums.

On CUDA, MLX runs float32 ``matmul`` in TF32 by default (``MLX_ENABLE_TF32=1``), which
keeps about 10 mantissa bits: far too few for poses and inverses. For the fixed small
sizes of geometry, the product as a sum of k rank-one (column x row) terms is exact float32
arithmetic on every backend and is purely elementwise, so ``mx.compile`` fuses it with its
neighbours (a broadcast product reduced with ``mx.sum`` would materialise (*, n, k, m) first).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import mlx.core as mx
import numpy as np

from .._checks import as_float, check_batch
from .._compiled import compiled
from .._indexing import take

_UNROLL = 16


def matmul(a: Any, b: Any) -> mx.array:
    """Batched product of small matrices in full float32 (no TF32), with broadcasting.

    Args:
        a: (*, n, k); an ``mx.array`` keeps its dtype, numpy arrays and lists are converted
            as everywhere (:func:`mlxgeom._checks.as_float`).
        b: (*, k, m); batch dims broadcast against a's.

    Returns:
        (*, n, m) = a @ b, summed in the inputs' dtype.

    Example:
        >>> import mlx.core as mx
        >>> matmul(mx.eye(3), mx.ones((2, 3, 1))).shape
        (2, 3, 1)
    """
    a = a if isinstance(a, mx.array) else as_float(a, "a")[0]
    b = b if isinstance(b, mx.array) else as_float(b, "b")[0]
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: expected a (*, n, k) and b (*, k, m), got a {tuple(a.shape)} and b {tuple(b.shape)}")
    if a.shape[:-2] != b.shape[:-2]:  # equal batches (the hot case) need no broadcast check
        check_batch(("a", a, 2), ("b", b, 2))
    return _product(a, b)


@compiled
def _product(a: mx.array, b: mx.array) -> mx.array:
    k = a.shape[-1]
    if k > _UNROLL:
        return mx.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)
    acc = a[..., :, 0:1] * b[..., 0:1, :]
    for j in range(1, k):
        acc = acc + a[..., :, j : j + 1] * b[..., j : j + 1, :]
    return acc


def gauss_newton_system(jacobian: Sequence[Sequence[mx.array]], residual: Sequence[mx.array],
                        weight: mx.array) -> tuple[mx.array, mx.array]:
    """``A = sum_i w_i J_i^T J_i`` (*, n, n) and ``g = sum_i w_i J_i^T r_i`` (*, n) over points i.

    Each point i has m residual rows ``r_i`` (m x 1) and a Jacobian ``J_i`` (m x n), given entry
    by entry as (*, N) arrays: ``jacobian[row][k]`` is d r_row / d x_k and ``residual[row]`` the
    residual, for N points of * independent problems. The n (n + 1) / 2 + n products are
    elementwise (exact float32, they fuse with the code that forms the entries) and all of them
    are summed over N in one reduction, instead of materialising (*, N, m, n) Jacobians and
    reducing each entry of A separately.

    Args:
        jacobian: m rows of n arrays (*, N) each (broadcastable).
        residual: m arrays (*, N).
        weight: (*, N) per-point weights (IRLS weights, masks).

    Returns:
        ``(A, g)``: (*, n, n) symmetric and (*, n).

    Example:
        >>> import mlx.core as mx
        >>> x = mx.array([[0.0, 1.0, 2.0]])  # fit r = a x + b - y: one row, J = [x, 1]
        >>> A, g = gauss_newton_system([[x, mx.ones_like(x)]], [x - 1.0], mx.ones_like(x))
        >>> A.tolist(), g.tolist()
        ([[[5.0, 3.0], [3.0, 3.0]]], [[2.0, 0.0]])
    """
    n = len(jacobian[0])
    named = [(f"jacobian[{r}][{c}]", e, 0) for r, row in enumerate(jacobian) for c, e in enumerate(row)]
    named += [(f"residual[{r}]", e, 0) for r, e in enumerate(residual)] + [("weight", weight, 0)]
    if len({getattr(e, "shape", None) for _, e, _ in named}) > 1:  # equal shapes (the hot case) cannot clash
        check_batch(*named)
    # Each entry's products fuse with the code that formed the entries; one stack, one reduction.
    entries = [sum(row[i] * row[j] for row in jacobian) for i in range(n) for j in range(i, n)]
    entries += [sum(row[i] * r for row, r in zip(jacobian, residual)) for i in range(n)]
    shape = mx.broadcast_shapes(weight.shape, *(e.shape for e in entries))
    return _normal_system([mx.stack([mx.broadcast_to(weight * e, shape) for e in entries], axis=-2)], n)


def _normal_system(products: Sequence[mx.array], n: int) -> tuple[mx.array, mx.array]:
    """``(A (*, n, n), g (*, n))`` from products (*, k, M) whose sums over M, concatenated, are the
    upper triangle of A row by row and then g: the one reduction of both normal-equation builders
    (:func:`gauss_newton_system`, :func:`mlxgeom.solve.normal_equations`)."""
    sums = mx.concatenate([mx.sum(p, axis=-1) for p in products], axis=-1)
    return _unpack_symmetric(sums[..., :-n], n), sums[..., -n:]


def _unpack_symmetric(packed: mx.array, n: int) -> mx.array:
    """The symmetric (*, n, n) matrices of their upper triangles packed row by row (*, n (n + 1) / 2)."""
    a = take(packed, mx.array(_symmetric_index(n)), axis=-1)
    return a.reshape(*a.shape[:-1], n, n)


@functools.cache
def _symmetric_index(n: int) -> np.ndarray:
    """(n * n,) position of each entry of an n x n symmetric matrix in its packed upper triangle (a
    host array: an mx.array cached from inside an mx.compile trace would not outlive the trace)."""
    iu, ju = np.triu_indices(n)
    packed = np.zeros((n, n), dtype=np.int32)
    packed[iu, ju] = packed[ju, iu] = np.arange(iu.size)
    return packed.reshape(-1)
