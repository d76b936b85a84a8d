"""CUDA fast path for the 3x3 and 4x4 inverse (``kernels/inverse.cu``): the scaled adjugate of
``inverse.py`` (the reference, 7-30x a same-size copy on CUDA) per thread, at about copy speed.
"""

from __future__ import annotations

import mlx.core as mx

from .._cuda import elementwise, on_cuda


def enabled(a: mx.array) -> bool:
    """Whether ``a``'s inverse should take the kernel: float32 3x3/4x4 on MLX's CUDA backend."""
    return a.dtype == mx.float32 and a.shape[-1] in (3, 4) and a.size > 0 and on_cuda()


def inverse(a: mx.array) -> mx.array:
    """Inverse of float32 (*, n, n), n in {3, 4}, by the kernel; same formulas as ``inverse.py``."""
    n = a.shape[-1]
    return elementwise("inverse", {"a": a}, [2], (n, n), [("N", n)])
