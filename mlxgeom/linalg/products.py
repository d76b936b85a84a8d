"""Products of small matrices written as broadcast multiply-and-sum.

On CUDA, MLX runs float32 ``matmul`` in TF32 by default (``MLX_ENABLE_TF32=1``), which
keeps about 10 mantissa bits: far too few for poses and inverses. For the fixed small
sizes of geometry (n <= ~10), a broadcast product summed over the shared axis is exact
float32 arithmetic on every backend and fuses under ``mx.compile``.
"""

from __future__ import annotations

import mlx.core as mx


def matmul(a: mx.array, b: mx.array) -> mx.array:
    """Batched product of small matrices in full float32 (no TF32), with broadcasting.

    Args:
        a: (*, n, k).
        b: (*, k, m); batch dims broadcast against a's.

    Returns:
        (*, n, m) = a @ b, summed in the inputs' dtype.

    Example:
        >>> import mlx.core as mx
        >>> matmul(mx.eye(3), mx.ones((2, 3, 1))).shape
        (2, 3, 1)
    """
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: inner sizes differ, a {tuple(a.shape)} and b {tuple(b.shape)}")
    return mx.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)
