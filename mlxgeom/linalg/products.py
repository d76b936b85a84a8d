"""Products of small matrices written as sums of outer products.

On CUDA, MLX runs float32 ``matmul`` in TF32 by default (``MLX_ENABLE_TF32=1``), which
keeps about 10 mantissa bits: far too few for poses and inverses. For the fixed small
sizes of geometry, the product as a sum of k rank-one (column x row) terms is exact float32
arithmetic on every backend and is purely elementwise, so ``mx.compile`` fuses it with its
neighbours (a broadcast product reduced with ``mx.sum`` would materialise (*, n, k, m) first).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_float

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
    k = a.shape[-1]
    if k > _UNROLL:
        return mx.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)
    acc = a[..., :, 0:1] * b[..., 0:1, :]
    for j in range(1, k):
        acc = acc + a[..., :, j : j + 1] * b[..., j : j + 1, :]
    return acc
