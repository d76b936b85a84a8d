"""Smallest eigenpairs of small symmetric positive semi-definite matrices by inverse iteration.

Null vectors of normal matrices (DLT, EPnP, triangulation) need only the k smallest
eigenpairs, not the whole decomposition. This module computes them by shifted block inverse
iteration with Rayleigh-Ritz extraction (Golub and Van Loan, "Matrix Computations", 4th ed.,
sec. 8.2.2 and 8.3.7; Parlett, "The Symmetric Eigenvalue Problem", ch. 4 and 11):

1. ``A`` is scaled to unit trace and shifted, ``B = A / tr A + mu I`` with ``mu = 10 n eps``:
   B is positive definite even where rounding made A slightly indefinite, and the shift is
   tiny, so B^-1 amplifies the near-null directions of A by ``(lambda_j + mu) / (lambda_1 + mu)``.
2. ``C = B^-1`` explicitly, by Goodnight's sweep operator (Gauss-Jordan elimination for SPD
   matrices, Goodnight, Am. Stat. 33, 1979): n identical rank-one update steps on the whole
   matrix, so ``mx.compile`` emits one kernel shape for all of them. Its pivots are all
   positive exactly when B is positive definite, which gives the ``ok`` mask for free.
3. The start block of ``p = k + oversample`` columns holds the column of C with the largest
   diagonal entry (its Rayleigh quotient for C is at least 1/n of the largest, so it cannot
   miss the smallest eigenvector unless the gap is below a factor 2n) and C times fixed
   pseudo-random vectors; ``iterations`` products with C, each followed by modified
   Gram-Schmidt, converge the i-th vector at the rate ``(lambda_i + mu) / (lambda_p+1 + mu)``.
4. Rayleigh-Ritz: the p x p projection ``X^T A X`` is diagonalised by :func:`eigh` (with
   three Jacobi sweeps fewer than its default: the matrix is nearly diagonal already) and
   the k smallest Ritz pairs are returned.

Everything is a fixed sequence of elementwise ops and small products: no data-dependent
loop, no CPU-only primitive. Gradients are analytic (a custom VJP/JVP): differentiating the
unrolled iteration would cancel terms of size 1 / mu and lose eps / mu of relative accuracy.
"""

from __future__ import annotations

import functools

import mlx.core as mx
import numpy as np

from .._checks import argmax, as_float, cast_out, check_square, eps
from .._indexing import take_rows
from .._vmap import all_of, any_of, batched_vmap
from .eigh import _gap_inverse, default_sweeps, eigh
from .products import matmul
from .qr import qr_columns


def sweep_inverse(b: mx.array) -> tuple[mx.array, mx.array]:
    """Inverse of symmetric positive definite (*, n, n) ``b`` by the sweep operator, and ok.

    Sweeping pivot j maps S to ``S - c c^T / d`` off row and column j, ``c / d`` on them and
    ``-1 / d`` at (j, j), with ``c = S[:, j]``, ``d = S[j, j]``; after all n pivots S = -B^-1.
    ``ok`` (*) is False where a pivot was not positive (B not positive definite) or not
    finite; such pivots are replaced by 1 so that the arithmetic stays finite.
    """
    n = b.shape[-1]
    s = b
    ok = mx.all(mx.isfinite(b), axis=(-2, -1))
    for j in range(n):
        e = mx.array(np.arange(n) == j)
        c = s[..., j, :]
        d = c[..., j : j + 1]
        good = d > 0
        ok = all_of(ok, good[..., 0])
        inv_d = 1.0 / mx.where(good, d, 1.0)
        u = c * inv_d
        # row and column j are written, not updated: the update would leave rounding there
        uj = mx.where(e, -inv_d, u)
        on_cross = mx.where(e[:, None], uj[..., None, :], uj[..., :, None])
        s = mx.where(any_of(e[:, None], e[None, :]), on_cross, s - c[..., :, None] * u[..., None, :])
    return -s, ok


def _start(n: int, p: int, dtype: mx.Dtype) -> mx.array:
    """Fixed pseudo-random start columns (n, p - 1); the first start column is chosen from the data."""
    return mx.array(np.random.default_rng(20240607).standard_normal((n, p - 1)), dtype=dtype)


def _smallest(a: mx.array, k: int, iterations: int, oversample: int) -> tuple[mx.array, mx.array, mx.array]:
    """Unscaled core of :func:`eigh_smallest` on (*, n, n) in the compute dtype."""
    n = a.shape[-1]
    p = min(n, k + oversample)
    a = 0.5 * (a + a.swapaxes(-1, -2))
    tr = mx.sum(mx.diagonal(a, axis1=-2, axis2=-1), axis=-1)[..., None, None]
    scale = mx.where(all_of(tr > 0, tr < mx.inf), tr, 1.0)
    a = a / scale
    c, ok = sweep_inverse(a + 10.0 * n * eps(a.dtype) * mx.eye(n, dtype=a.dtype))
    j = mx.stop_gradient(argmax(mx.diagonal(c, axis1=-2, axis2=-1), axis=-1))  # an index: no gradient
    x = take_rows(c.swapaxes(-1, -2), j[..., None], axis=-2).swapaxes(-1, -2)
    if p > 1:
        x = mx.concatenate([x, matmul(c, _start(n, p, a.dtype))], axis=-1)
    x = qr_columns(x)[0]
    for _ in range(iterations):
        x = qr_columns(matmul(c, x))[0]
    h = matmul(x.swapaxes(-1, -2), matmul(a, x))  # Rayleigh-Ritz: (*, p, p)
    if p == 1:
        w, v = h[..., 0], x
    else:
        # X spans converged eigenvectors, so H is diagonal up to terms of the size of its
        # eigenvalue gaps: Jacobi, quadratically convergent, needs 3 sweeps fewer than from a
        # random start (EPnP matrices: the same Ritz vectors with 2, 3 and 6 sweeps)
        w, q = eigh(h, sweeps=max(default_sweeps(p, a.dtype) - 3, 2))
        w, v = w[..., :k], matmul(x, q[..., :k])
    w = mx.where(ok[..., None], w * scale[..., 0], mx.nan)
    return w, mx.where(ok[..., None, None], v, mx.nan), ok


def _complement_solve(a: mx.array, w: mx.array, v: mx.array, g: mx.array) -> mx.array:
    """z_i = -(A - w_i I)^+ P_i g_i on the complement of v_1..v_i, P_i = I - sum_{j<=i} v_j v_j^T.

    ``M_i = A - w_i I + sum_{j<=i} (s - w_j + w_i) v_j v_j^T`` equals ``A - w_i I`` on that
    complement (eigenvalues w_j - w_i > 0) and ``s I`` on v_1..v_i (s = tr A), so it is positive
    definite, and only v_1..v_i need to be accurate: the terms of the later returned vectors,
    which converge more slowly, are taken through the solve as well.
    """
    n, k = v.shape[-2], v.shape[-1]
    s = mx.sum(mx.diagonal(a, axis1=-2, axis2=-1), axis=-1)[..., None, None]
    s = mx.where(s > 0, s, 1.0)
    eye = mx.eye(n, dtype=a.dtype)
    out = []
    for i in range(k):
        vi = v[..., : i + 1]
        gi = g[..., i : i + 1]
        pg = gi - matmul(vi, matmul(vi.swapaxes(-1, -2), gi))
        shift = (s - w[..., : i + 1, None] + w[..., i, None, None]).swapaxes(-1, -2)  # (*, 1, i + 1)
        m = a - w[..., i, None, None] * eye + matmul(vi * shift, vi.swapaxes(-1, -2))
        minv, _ = sweep_inverse(m)
        out.append(-matmul(minv, pg))
    return mx.concatenate(out, axis=-1)


def _earlier_gaps(w: mx.array) -> mx.array:
    """E_ji = 1 / (w_i - w_j) for j < i, else 0 (0 also at rounding-level gaps)."""
    k = w.shape[-1]
    return _gap_inverse(w) * mx.array(np.triu(np.ones((k, k)), 1), dtype=w.dtype)


@functools.cache
def _make_core(k: int, iterations: int, oversample: int):
    @batched_vmap
    @mx.custom_function
    def core(a: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        return _smallest(a, k, iterations, oversample)

    @core.vjp
    def core_vjp(primals, cotangents, outputs):
        # Magnus (1985): dv_i = sum_{j != i} v_j v_j^T dA v_i / (w_i - w_j); the terms j < i
        # use the returned vectors, the terms j > i are -(A - w_i I)^+ on the complement of
        # v_1..v_i (one small SPD inverse per vector), never the iteration's 1 / mu amplification.
        a = 0.5 * (primals + primals.swapaxes(-1, -2))
        w, v, ok = outputs
        gw, gv = cotangents[0], cotangents[1]
        okm = ok[..., None, None]
        w, v = mx.where(ok[..., None], w, 0.0), mx.where(okm, v, 0.0)
        gw, gv = mx.where(ok[..., None], gw, 0.0), mx.where(okm, gv, 0.0)
        inner = _earlier_gaps(w) * matmul(v.swapaxes(-1, -2), gv) + gw[..., :, None] * mx.eye(k, dtype=w.dtype)
        ga = matmul(matmul(v, inner), v.swapaxes(-1, -2)) + matmul(_complement_solve(a, w, v, gv), v.swapaxes(-1, -2))
        ga = 0.5 * (ga + ga.swapaxes(-1, -2))
        return (mx.where(all_of(okm, mx.all(mx.isfinite(ga), axis=(-2, -1), keepdims=True)), ga, 0.0),)

    @core.jvp
    def core_jvp(primals, tangents):
        # one positional argument: MLX passes the array itself, not a tuple
        a = 0.5 * (primals + primals.swapaxes(-1, -2))
        w, v, ok = core(primals)
        da = 0.5 * (tangents + tangents.swapaxes(-1, -2))
        dav = matmul(da, v)
        p = matmul(v.swapaxes(-1, -2), dav)
        dw = mx.diagonal(p, axis1=-2, axis2=-1)
        dv = matmul(v, _earlier_gaps(w) * p) + _complement_solve(a, w, v, dav)
        return dw, dv, mx.zeros(ok.shape, dtype=mx.bool_)

    return core


def eigh_smallest(a, k: int = 1, iterations: int = 2, oversample: int = 1) -> tuple[mx.array, mx.array, mx.array]:
    """The k smallest eigenpairs of small symmetric positive semi-definite matrices, on any device.

    Shifted block inverse iteration with Rayleigh-Ritz (module docstring): much cheaper than
    the full :func:`eigh` when only a null space is wanted (DLT and EPnP normal matrices).
    Only the symmetric part ``(A + A^T) / 2`` is read. The block holds ``p = k + oversample``
    vectors; the i-th eigenvector converges at the rate ``(lambda_i + mu) / (lambda_p+1 + mu)``
    per iteration, ``mu = 10 n eps tr A``. Accuracy (tests, float32 vs numpy float64, DLT- and
    EPnP-like spectra): eigenvalues within 1e-6 tr A, eigenvectors of eigenvalues separated
    from the rest by 1e-3 tr A within ``|v . v_ref| > 1 - 1e-6``.

    Gradient: analytic VJP/JVP of the k eigenpairs (Magnus 1985), ``dv_i = sum_{j != i} v_j
    v_j^T dA v_i / (w_i - w_j)``: the terms j < i from the returned vectors (0 at rounding-level
    gaps, as in :func:`eigh`), the terms j > i as ``-(A - w_i I)^+`` on the complement of
    v_1..v_i by one small SPD inverse per vector, so the gradient of v_1 needs v_1 only.

    Args:
        a: (*, n, n) symmetric positive semi-definite (a Gram or normal matrix); rounding-level
            negative eigenvalues are fine.
        k: number of eigenpairs, 1 <= k <= n.
        iterations: inverse-iteration steps after the start block (static).
        oversample: extra block vectors (static); they speed up the convergence of the k-th
            vector when lambda_k+1 is close to lambda_k.

    Returns:
        ``(w, v, ok)``: (*, k) ascending eigenvalues, (*, n, k) orthonormal eigenvectors in
        the columns (signs arbitrary), and (*) bool, False where ``A + mu I`` is not positive
        definite (A indefinite beyond rounding) or A is not finite; w and v are NaN there.

    Example:
        >>> import mlx.core as mx
        >>> w, v, ok = eigh_smallest(mx.array([[2.0, 1.0], [1.0, 2.0]]))
        >>> round(w.item(), 5), round(abs(v[0, 0].item()), 5), ok.item()
        (1.0, 0.70711, True)
    """
    a, out = as_float(a, "a")
    n = check_square(a, None, "a")
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k: expected an int in [1, n] = [1, {n}], got {k!r}")
    for name, value in (("iterations", iterations), ("oversample", oversample)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
    w, v, ok = _make_core(k, iterations, oversample)(a)
    return cast_out(w, out), cast_out(v, out), ok
