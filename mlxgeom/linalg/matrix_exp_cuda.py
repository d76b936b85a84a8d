"""CUDA fast path for the 3x3 and 4x4 matrix exponential (``kernels/matrix_exp.cu``): the
algorithm of ``matrix_exp.py`` (the reference, ~40x a same-size copy on CUDA) per matrix in
registers, with its coefficient table and thetas as inputs. The Frechet-derivative VJP/JVP of
``matrix_exp`` are unchanged.
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx
import numpy as np

from .._cuda import constant, elementwise, on_cuda


def enabled(a: mx.array) -> bool:
    """Whether ``matrix_exp`` of ``a`` takes the kernel: float32 3x3/4x4 on MLX's CUDA backend."""
    return a.dtype == mx.float32 and a.shape[-1] in (3, 4) and a.size > 0 and on_cuda()


@functools.cache
def _table(raw: bytes) -> mx.array:
    """The float64 coefficient table's bytes as the kernel's (1, 150) float32 input, made once."""
    return mx.array(np.frombuffer(raw)[None], dtype=mx.float32)


def expm(a: mx.array, coefficients: np.ndarray, thetas: tuple[float, ...], max_squarings: int,
         shift_limit: float) -> mx.array:
    """exp(a) of float32 (*, n, n), n in {3, 4}, by the kernel (the algorithm of ``matrix_exp.py``)."""
    n = a.shape[-1]
    grow_budget = math.ceil(math.log2(shift_limit / thetas[-1]))
    inputs = {"coef": _table(coefficients.tobytes()), "theta": constant(*thetas, shift_limit), "a": a}
    template = [("N", n), ("NTHETA", len(thetas)), ("MAX_SQUARINGS", max_squarings), ("GROW_BUDGET", grow_budget)]
    return elementwise("matrix_exp", inputs, [1, 1, 2], (n, n), template)
