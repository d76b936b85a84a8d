"""CUDA fast path for the Newton iterations of OpenCV undistortion (``kernels/undistort.cu``).

In pure mx each of :func:`distortion.undistort_opencv`'s gradient-free Newton steps is a full pass
over the points (dozens of fused kernels), ten steps 40-70x a same-size copy on an H200; the kernel
runs all steps of one point in registers with the formulas of ``kernels/lens.cuh``. Its inputs are
constants for autodiff already, so it needs no derivative rule.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._cuda import elementwise, on_cuda


def enabled(tx: mx.array, ty: mx.array, coeffs: list[mx.array]) -> bool:
    """Whether the kernel applies: CUDA, float32 throughout, an OpenCV model with coefficients."""
    return (len(coeffs) in (4, 5, 8, 12, 14) and all(a.dtype == mx.float32 for a in (tx, ty, *coeffs))
            and math.prod(mx.broadcast_shapes(tx.shape, ty.shape)) > 0 and on_cuda())


def newton_iterations(tx: mx.array, ty: mx.array, coeffs: list[mx.array], iterations: int) -> tuple[mx.array, mx.array]:
    """The undistorted (x, y) after ``iterations`` Newton steps towards the distorted targets
    (tx, ty), which broadcast with the coefficient arrays; one thread per point."""
    k = len(coeffs)
    c_shape = mx.broadcast_shapes(*(c.shape for c in coeffs))
    shape = mx.broadcast_shapes(tx.shape, ty.shape, c_shape)
    c = mx.stack([mx.broadcast_to(a, c_shape) for a in coeffs], axis=-1)
    # One camera: every thread reads the same k coefficients; otherwise k per point.
    c = c.reshape(1, k) if math.prod(c_shape) == 1 else mx.broadcast_to(c, (*shape, k))
    t = mx.stack([mx.broadcast_to(tx, shape), mx.broadcast_to(ty, shape)], axis=-1)
    out = elementwise("undistort", {"c": c, "t": t}, [1, 1], (2,), [("K", k), ("ITERATIONS", iterations)],
                      headers=("lens.cuh",))
    return out[..., 0], out[..., 1]
