"""Matrix exponential of batches of square matrices, per-matrix scaling and squaring.

Method: Bader, Blanes and Casas, "Computing the Matrix Exponential with an Optimized
Taylor Polynomial Approximation", Mathematics 7(12):1174, 2019. Each matrix gets the
Taylor degree m in {1, 2, 4, 8, 12, 18} that its 1-norm allows (the paper's thresholds
theta_m for float32 / float64) and, above theta_18, a scaling ``A / 2**s`` followed by
``s`` squarings. Degree and ``s`` are chosen per matrix with masks, never with a host
sync, so the whole function runs under ``mx.compile`` and on any device. The library
runs it eagerly (not a compiled core, docs/conventions.md): compiled, its ~25 fused kernels
cost ~25 s of g++ on the first call per shape on the CPU.

Batching without branches:

- Every degree is evaluated in the paper's 5-product shape of T18,
  ``Z = B1 B5 + B4``, ``T = B2 + (B3 + Z) Z``, with ``B1..B5`` linear combinations of
  ``I, A, A^2, A^3, A^6``. T12 (paper eq. 11), T8 (eq. 9, with ``Z`` rescaled by
  ``sqrt(x7)`` so that its factor is monic), T4 (``Z = A^2 / sqrt(24)``), T2 and T1
  fit that shape, so one evaluation with per-matrix coefficient rows (a table lookup)
  gives each matrix exactly its own polynomial: five products for the whole batch,
  whatever mix of degrees it holds.
- Squarings: a static number ``max_squarings`` of them, each applied only where that
  matrix needs it (``mx.where``), so an easy matrix beside a hard one is neither
  over-scaled nor over-squared. A matrix whose 1-norm needs more than the budget gets
  NaN (its own entries only) rather than a silently inaccurate result.
- Trace shift (Higham, SIAM J. Matrix Anal. Appl. 26:1179, 2005, sec. 2): where the mean
  eigenvalue trace(A)/n is <= -1, exp(A) = e^mu exp(A - mu I) with mu = trace(A)/n
  (clamped to -32), which avoids the Taylor sum's cancellation for strongly negative
  spectra (a 1x1 exp(-10) loses 5e-5 in float32 without it).

Products go through :func:`mlxgeom.linalg.matmul` (exact float32, no TF32 on CUDA). On
CUDA, float32 3x3 and 4x4 inputs take the same algorithm as one kernel
(``matrix_exp_cuda.py``).
For n > 16 its (*, n, n, n) broadcast would be memory-heavy, so the inner dimension is
cut into blocks of 8 and the partial products are added: (*, n, 8, n) at a time.

Gradient: the VJP is the Frechet derivative ``L(A^T, G)``, read off the upper-right
block of ``exp([[A^T, G], [0, A^T]])`` (Mathias, SIAM J. Matrix Anal. Appl. 17:610-620,
1996); the JVP is the upper-right block of ``exp([[A, E], [0, A]])``. That block matrix
is evaluated by the same algorithm (its own norm picks m and s) but carried as the pair
(X, L) of ``[[X, L], [0, X]]``: a 2n x 2n product costs three n x n products.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import mlx.core as mx
import numpy as np

from .._checks import as_float, cast_out, check_square
from .._cuda import fast_path
from .._indexing import take
from .._vmap import all_of, batched_vmap
from . import matrix_exp_cuda
from .products import matmul

DEFAULT_MAX_SQUARINGS = 10
"""Static squaring budget: covers 1-norms up to 3.01 * 2**10 ~ 3.1e3 (float32) and
1.09 * 2**10 ~ 1.1e3 (float64)."""

_DEGREES = (1, 2, 4, 8, 12, 18)
# Bader-Blanes-Casas 2019, Table 2 / Table 3: largest 1-norm for which T_m keeps the
# backward error below the unit roundoff.
_THETAS = {
    mx.float32: (1.192092800768788e-07, 5.978858893805233e-04, 5.116619363445086e-02,
                 5.800524627688768e-01, 1.461661507209034e00, 3.010066362817634e00),
    mx.float64: (2.220446049250313e-16, 2.580956802971767e-08, 3.397168839976962e-04,
                 4.991228871115323e-02, 2.996158913811580e-01, 1.090863719290036e00),
}
_SHIFT_LIMIT = 32.0
_BROADCAST_MAX_N = 16
_BLOCK = 8


def _t18_rows() -> np.ndarray:
    # Paper eq. (18): rows B1 (a_i1), B2 (b_i1), B3 (b_i2), B4 (b_i3), B5 (b_i4) over I, A, A^2, A^3, A^6.
    return np.array([
        [0.0, -1.00365581030144618291e-01, -8.02924648241156932449e-03, -8.92138498045729985177e-04, 0.0],
        [0.0, 3.97849749499645077844e-01, 1.36783778460411720168e00, 4.98289622525382669416e-01,
         -6.37898194594723280150e-04],
        [-1.09676396052962061844e01, 1.68015813878906206114e00, 5.71779846478865511061e-02,
         -6.98210122488052056106e-03, 3.34975017086070470649e-05],
        [-9.04316832390810593223e-02, -6.76404519071381882256e-02, 6.75961301770459654925e-02,
         2.95552570429315521194e-02, -1.39180257516060693404e-05],
        [0.0, 0.0, -9.23364619367118555360e-02, -1.69364939002081722752e-02, -1.40086798182036094347e-05],
    ])


def _t12_rows() -> np.ndarray:
    # Paper eq. (11): y = q1 + (q2 + A6) A6, A6 = q3 + q4^2, q_j over I, A, A^2, A^3.
    q = np.array([
        [-1.86023205146205530824e-02, -5.00702322573317714499e-03, -5.73420122960522249400e-01,
         -1.33399693943892061476e-01],
        [4.6, 9.92875103538486847299e-01, -1.32445561052799642976e-01, 1.72990000000000000000e-03],
        [2.11693118299809440730e-01, 1.58224384715726723583e-01, 1.65635169436727403003e-01,
         1.07862779315792429308e-02],
        [0.0, -1.31810610138301836924e-01, -2.02785554058925905629e-02, -6.75951846863086323186e-03],
    ])
    q = np.concatenate([q, np.zeros((4, 1))], axis=1)
    # Z = q4 q4 + q3, T = q1 + (q2 + Z) Z.
    return np.stack([q[3], q[0], q[1], q[2], q[3]])


def _t8_rows() -> np.ndarray:
    # Paper eq. (9): A4 = A2 (x1 A + x2 A2), A8 = (x3 A2 + A4)(x4 I + x5 A + x6 A2 + x7 A4),
    # T8 = I + A + y2 A2 + A8. With F = x3 A2 + A4 and r = sqrt(x7), Z = r F gives
    # (B3 + Z) Z = A8 for B3 = (x4 I + x5 A + (x6 - x7 x3) A2) / r.
    s177 = math.sqrt(177.0)
    x3 = 2.0 / 3.0
    x1 = x3 * (1.0 + s177) / 88.0
    x2 = x3 * (1.0 + s177) / 352.0
    x4 = (-271.0 + 29.0 * s177) / (315.0 * x3)
    x5 = (-11.0 + 11.0 * s177) / (1260.0 * x3)
    x6 = (-99.0 + 11.0 * s177) / (5040.0 * x3)
    x7 = (89.0 - s177) / (5040.0 * x3 * x3)
    y2 = (857.0 - 58.0 * s177) / 630.0
    r = math.sqrt(x7)
    return np.array([
        [0.0, 0.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, y2, 0.0, 0.0],
        [x4 / r, x5 / r, (x6 - x7 * x3) / r, 0.0, 0.0],
        [0.0, 0.0, r * x3, 0.0, 0.0],
        [0.0, r * x1, r * x2, 0.0, 0.0],
    ])


def _low_rows(degree: int) -> np.ndarray:
    rows = np.zeros((5, 5))
    rows[1, :2] = 1.0
    if degree >= 2:
        rows[1, 2] = 0.5
    if degree == 4:
        rows[1, 3] = 1.0 / 6.0
        rows[3, 2] = 1.0 / math.sqrt(24.0)  # Z = A^2 / sqrt(24), Z^2 = A^4 / 24
    return rows


@lru_cache(maxsize=None)
def coefficient_table() -> np.ndarray:
    """(6, 5, 5) float64: per degree 1, 2, 4, 8, 12, 18, rows B1..B5 over I, A, A^2, A^3, A^6.

    The degree-m polynomial is ``T = B2 + (B3 + Z) Z`` with ``Z = B1 B5 + B4``.
    """
    return np.stack([_low_rows(1), _low_rows(2), _low_rows(4), _t8_rows(), _t12_rows(), _t18_rows()])


def _product(a: mx.array, b: mx.array) -> mx.array:
    n = a.shape[-1]
    if n <= _BROADCAST_MAX_N:
        return matmul(a, b)
    out = matmul(a[..., :, :_BLOCK], b[..., :_BLOCK, :])
    for k in range(_BLOCK, n, _BLOCK):
        out = out + matmul(a[..., :, k : k + _BLOCK], b[..., k : k + _BLOCK, :])
    return out


# A block is (X,) for X itself or (X, L) for the 2n x 2n matrix [[X, L], [0, X]]. Sums,
# products and polynomials of the latter keep that shape, so exp([[X, L], [0, X]]) =
# [[exp X, L(X, L)], [0, exp X]] costs three n x n products per 2n x 2n product.
Block = tuple[mx.array, ...]


def _mul(p: Block, q: Block) -> Block:
    x = _product(p[0], q[0])
    if len(p) == 1:
        return (x,)
    return (x, _product(p[0], q[1]) + _product(p[1], q[0]))


def _add(p: Block, q: Block) -> Block:
    return tuple(u + v for u, v in zip(p, q))


def _where(mask: mx.array, p: Block, q: Block | float) -> Block:
    q = q if isinstance(q, tuple) else (q,) * len(p)
    return tuple(mx.where(mask, u, v) for u, v in zip(p, q))


def _one_norm(p: Block) -> mx.array:
    """(*) max column sum of |block| (the matrix 1-norm the thresholds refer to)."""
    return mx.max(sum(mx.sum(mx.abs(x), axis=-2) for x in p), axis=-1)


def _taylor(p: Block, degree_index: mx.array) -> Block:
    """T_m(p) with m = _DEGREES[degree_index] per matrix; five products for every m."""
    eye = mx.eye(p[0].shape[-1], dtype=p[0].dtype)
    p2 = _mul(p, p)
    p3 = _mul(p2, p)
    powers = (p, p2, p3, _mul(p3, p3))
    coef = take(mx.array(coefficient_table(), dtype=eye.dtype), degree_index, axis=0)

    def combo(row: int) -> Block:
        c = [coef[..., row, j, None, None] for j in range(5)]
        out = tuple(sum(c[j + 1] * q[i] for j, q in enumerate(powers)) for i in range(len(p)))
        return (out[0] + c[0] * eye,) + out[1:]

    z = _add(_mul(combo(0), combo(4)), combo(3))
    return _add(combo(1), _mul(_add(combo(2), z), z))


def _scale_and_square(p: Block, norm: mx.array, max_squarings: int) -> Block:
    """exp(p) by T_m(p / 2^s)^(2^s), m and s chosen per matrix from its 1-norm ``norm``."""
    dtype = p[0].dtype
    thetas = _THETAS[dtype]
    # The norm only picks m and s (piecewise constant): no gradient flows through it.
    norm = mx.stop_gradient(norm)
    degree_index = sum((norm > t).astype(mx.int32) for t in thetas[:-1])
    # s = ceil(log2(norm / theta_18)) above theta_18; NaN norms compare False and get s = 0.
    need = norm > thetas[-1]
    ratio = mx.where(need, norm, thetas[-1]) / thetas[-1]
    s_real = mx.where(need, mx.ceil(mx.log2(ratio)), 0.0)
    covered = (s_real <= max_squarings)[..., None, None]
    s = mx.clip(s_real, 0, max_squarings).astype(mx.int32)
    # Exact powers of two from a table, so scaling adds no rounding.
    scale = take(mx.array([2.0**-k for k in range(max_squarings + 1)], dtype=dtype), s, axis=0)[..., None, None]
    e = _taylor(tuple(x * scale for x in p), degree_index)
    s = s[..., None, None]
    for _ in range(max_squarings):
        # Past its own s a matrix already holds exp(A): the extra square may overflow,
        # but where() drops it and sends it a zero cotangent against a finite e. The count
        # goes down in the graph (not ``k < s``, k a constant) so every squaring is the same
        # fused kernel, compiled once rather than once per k.
        e = _where(s > 0, _mul(e, e), e)
        s = s - 1
    return _where(covered, e, mx.nan)


def _trace_shift(p: Block) -> tuple[Block, mx.array, mx.array]:
    """``(p - mu I, mu, its 1-norm)`` with mu <= 0 and exp(p) = e^mu exp(p - mu I).

    A Taylor sum for a matrix with strongly negative eigenvalues cancels (e^-x from
    terms of size e^x); removing the negative mean of the eigenvalues (trace / n,
    Higham 2005, sec. 2) avoids most of it. Used for trace / n <= -1 only, where the
    loss shows, when it does not raise the 1-norm, and clamped to -32 so that e^-mu
    stays far from overflow. Elsewhere mu = 0 and p is returned unchanged.
    """
    x = p[0]
    n = x.shape[-1]
    eye = mx.eye(n, dtype=x.dtype)
    mean = mx.sum(mx.diagonal(x, 0, -2, -1), axis=-1) / n
    mu = mx.clip(mean, -_SHIFT_LIMIT, 0.0)[..., None, None]
    norm, shifted_norm = _one_norm(p), _one_norm((x - mu * eye,) + p[1:])
    useful = all_of(mean <= -1.0, shifted_norm <= norm)
    mu = mx.where(useful[..., None, None], mu, 0.0)
    return (x - mu * eye,) + p[1:], mu, mx.where(useful, shifted_norm, norm)


def _expm_block(p: Block, max_squarings: int) -> Block:
    """exp of a block, plain mx ops (autodiff works through it)."""
    shifted, mu, norm = _trace_shift(p)
    e = _scale_and_square(shifted, norm, max_squarings)
    # e^mu as 1 / e^-mu: a 1x1 Taylor sum of positive terms keeps full relative accuracy.
    budget = math.ceil(math.log2(_SHIFT_LIMIT / _THETAS[mu.dtype][-1]))
    grow = _scale_and_square((-mu,), -mu[..., 0, 0], budget)[0]
    return tuple(x / grow for x in e)


def _expm(a: mx.array, max_squarings: int) -> mx.array:
    """exp(a) for (*, n, n) float32/float64, plain mx ops (autodiff works through it)."""
    return _expm_block((a,), max_squarings)[0]


def _frechet(x: mx.array, e: mx.array, max_squarings: int) -> mx.array:
    """L(x, e): upper-right block of exp([[x, e], [0, x]]), with e rescaled (L is linear in e).

    e is scaled to the 1-norm max(||x||_1, 1), so the block's norm stays within twice
    x's and one extra squaring covers it.
    """
    enorm = _one_norm((e,))
    nonzero = enorm > 0
    gain = mx.maximum(_one_norm((x,)), 1.0) / mx.where(nonzero, enorm, 1.0)
    gain = mx.where(nonzero, gain, 1.0)[..., None, None]
    x, e = mx.broadcast_arrays(x, e * gain)
    return _expm_block((x, e), max_squarings + 1)[1] / gain


@lru_cache(maxsize=None)
def _differentiable_expm(max_squarings: int) -> Any:
    expm_any = fast_path(lambda a: matrix_exp_cuda.expm(a, coefficient_table(), _THETAS[mx.float32], max_squarings,
                                                        _SHIFT_LIMIT),
                         lambda a: _expm(a, max_squarings), matrix_exp_cuda.enabled)

    @batched_vmap
    @mx.custom_function
    def expm(a: mx.array) -> mx.array:
        return expm_any(a)

    # With one input and one output, MLX hands the arrays over bare (not in tuples).
    @expm.vjp
    def expm_vjp(primals: mx.array, cotangent: mx.array, output: mx.array) -> mx.array:
        return _frechet(primals.swapaxes(-1, -2), cotangent, max_squarings)

    @expm.jvp
    def expm_jvp(primals: mx.array, tangents: mx.array) -> mx.array:
        return _frechet(primals, tangents, max_squarings)

    return expm


def matrix_exp(a: Any, *, max_squarings: int = DEFAULT_MAX_SQUARINGS) -> mx.array:
    """Matrix exponential ``exp(A) = sum_k A^k / k!`` of a batch of square matrices.

    Bader-Blanes-Casas optimized Taylor polynomials (degree 1 to 18) with scaling and
    squaring, degree and number of squarings chosen per matrix from its 1-norm; no host
    synchronisation, so it runs under ``mx.compile`` and on the GPU.

    Args:
        a: (*, n, n) real matrices, any n >= 1; float32, float64 (CPU), float16/bfloat16
            (computed in float32), or integers (promoted to float32).
        max_squarings: static number of masked squarings (default 10). A matrix with
            1-norm up to ``theta_18 * 2**max_squarings`` (theta_18 = 3.01 in float32,
            1.09 in float64: ~3.1e3 / ~1.1e3 by default) is computed; beyond that its
            result is NaN (raise ``max_squarings``). Each squaring costs one product
            for the whole batch, so a smaller value is faster where norms are known to
            be small.

    Returns:
        (*, n, n) ``exp(A)`` in the input's float dtype. Differentiable: the VJP is the
        Frechet derivative via the 2n x 2n block exponential (Mathias 1996). NaN or inf
        entries give a non-finite result for their own matrix only. Measured accuracy
        (Frobenius relative error vs a float64 / long-double reference): <= 2e-5 in
        float32 and <= 1e-12 in float64 for 1-norms up to 10; up to 1e3, about 4e-4
        (float32) and 4e-13 (float64) for skew-symmetric matrices.

    Example:
        >>> import mlx.core as mx
        >>> matrix_exp(mx.array([[0.0, 1.0], [0.0, 0.0]]))
        array([[1, 1],
               [0, 1]], dtype=float32)
    """
    a, out = as_float(a, "a")
    n = check_square(a, name="a")
    if not isinstance(max_squarings, int) or max_squarings < 0:
        raise ValueError(f"max_squarings: expected a non-negative int, got {max_squarings!r}")
    if n == 0 or a.size == 0:
        return cast_out(mx.zeros(a.shape, dtype=a.dtype), out)
    return cast_out(_differentiable_expm(max_squarings)(a), out)
