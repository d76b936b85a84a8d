"""The five-point minimal solver for E on the device (Nister, PAMI 26(6) 2004; Stewenius et al. 2006).

1. The five rows ``kron(y2, y1)`` of normalised points have a 4-dimensional null space
   ``E = x X + y Y + z Z + W`` (Householder QR, :mod:`.nullspace`).
2. ``det E = 0`` and ``E E^T E - tr(E E^T) E / 2 = 0`` (Nister eqs. 2-3) are 10 cubics in (x, y, z)
   with 20 monomials, in Nister's order ``x^3, y^3, x^2y, xy^2, x^2z, x^2, y^2z, y^2, xyz, xy | xz^2,
   xz, x, yz^2, yz, y, z^3, z^2, z, 1``; the 10x20 matrix is reduced by Gauss-Jordan elimination
   with partial pivoting (argmax pivots and gathers, no branch).
3. With rows ``<e>`` .. ``<j>`` of the reduced matrix (pivots ``x^2z, x^2, y^2z, y^2, xyz, xy``),
   ``<k> = <e> - z <f>``, ``<l> = <g> - z <h>``, ``<m> = <i> - z <j>`` are linear in (x, y, 1) with
   coefficients polynomial in z (degrees 3, 3, 4): ``B(z) [x, y, 1]^T = 0``, so ``det B(z)`` is the
   degree-10 polynomial of Nister's sec. 3.2.3, whose real roots come from :func:`.polynomial.real_roots`.
4. For each root, (x, y, 1) is the null vector of B(z) (the largest cross product of two of its
   rows), polished by Gauss-Newton on the 10 cubics, and E follows.
5. Float32 loses solutions far from the chart ``w = 1`` (small W component): steps 2-4 run in a
   second chart (the basis mixed by an orthogonal matrix), solutions found twice are kept once,
   and the 10 with the smallest polish residuals are returned with a mask; unit Frobenius norm.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .._indexing import take, take_rows
from .._vmap import all_of
from ..homography._common import safe_div
from ..lie.so3 import cross
from ..linalg import gauss_newton_system, matmul, solve_spd_ex
from .nullspace import design_rows, null_space
from .polynomial import ITERATIONS, Complex, aberth, cmul, horner, log_scale

# Exponents (x, y, z) of the monomials: linear (x, y, z, 1), quadratic, and the cubic in Nister's order.
_MON1 = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)]
_MON2 = [(2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)]
_MON3 = [(3, 0, 0), (0, 3, 0), (2, 1, 0), (1, 2, 0), (2, 0, 1), (2, 0, 0), (0, 2, 1), (0, 2, 0), (1, 1, 1), (1, 1, 0),
         (1, 0, 2), (1, 0, 1), (1, 0, 0), (0, 1, 2), (0, 1, 1), (0, 1, 0), (0, 0, 3), (0, 0, 2), (0, 0, 1), (0, 0, 0)]
# Gauss-Newton steps on the 10 cubics that polish each root (the decic is ill-conditioned near
# close roots: float32 coefficients alone leave ~1e-3 relative errors there).
_POLISH = 6
# Roots with |im| <= _REAL_TOL (1 + |re|) are polished; a converged polish decides whether they are real.
_REAL_TOL = 0.1
# Accepted residual of the 10 normalised cubics after the polish.
_RESIDUAL_TOL = 1e-3
# The affine chart w = 1 of E = xX + yY + zZ + wW loses solutions with small w in float32 (~1 %);
# a second chart, the basis mixed by an orthogonal Hadamard matrix, finds them (union: 99.9 %).
_CHART = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
# Candidates of the two charts closer than this in 1 - |cos| of their unit 9-vectors are one solution.
_SAME = 1e-5
# RANSAC's cheap variant (five_point(fast=True)): Aberth iterations and polish steps, one chart.
_FAST = (10, 2)
# Pivot accepted by the elimination: relative to the largest entry of the constraint matrix.
_PIVOT_TOL = 1e-7


def _product_index(ma: list, mb: list, mc: list) -> mx.array:
    """Index (|mc|, L) into the flattened outer product (|ma| |mb| + 1 entries, the last 0) per product monomial."""
    groups: list[list[int]] = [[] for _ in mc]
    pos = {m: i for i, m in enumerate(mc)}
    for i, a in enumerate(ma):
        for j, b in enumerate(mb):
            groups[pos[tuple(p + q for p, q in zip(a, b))]].append(i * len(mb) + j)
    width = max(len(g) for g in groups)
    pad = len(ma) * len(mb)
    return mx.array(np.array([g + [pad] * (width - len(g)) for g in groups], np.int32))


_IDX11 = _product_index(_MON1, _MON1, _MON2)
_IDX21 = _product_index(_MON2, _MON1, _MON3)


def _collect(outer: mx.array, idx: mx.array) -> mx.array:
    """Sum the (*, na, nb) outer-product terms into the product's monomials (*, nc)."""
    flat = outer.reshape(*outer.shape[:-2], -1)
    flat = mx.concatenate([flat, mx.zeros_like(flat[..., :1])], axis=-1)
    return mx.sum(take(flat, idx.reshape(-1), axis=-1).reshape(*flat.shape[:-1], *idx.shape), axis=-1)


def _mul(terms: list[tuple[mx.array, mx.array]], idx: mx.array) -> mx.array:
    """sum_k a_k * b_k of polynomials given by coefficient vectors, collected once."""
    outer = sum(a[..., :, None] * b[..., None, :] for a, b in terms)
    return _collect(outer, idx)


def constraint_matrix(basis: mx.array) -> mx.array:
    """The 10 cubic constraints (*, 10, 20) on (x, y, z) for the null-space basis (*, 9, 4) = [X, Y, Z, W]."""
    e = [[basis[..., 3 * i + j, :] for j in range(3)] for i in range(3)]  # linear polys (*, 4)
    eet = [[_mul([(e[i][j], e[k][j]) for j in range(3)], _IDX11) for k in range(3)] for i in range(3)]
    half_tr = 0.5 * (eet[0][0] + eet[1][1] + eet[2][2])
    lam = [[eet[i][k] - half_tr if i == k else eet[i][k] for k in range(3)] for i in range(3)]
    trace_rows = [_mul([(lam[i][k], e[k][j]) for k in range(3)], _IDX21) for i in range(3) for j in range(3)]
    cof = [_mul([(e[1][(j + 1) % 3], e[2][(j + 2) % 3])], _IDX11) - _mul([(e[1][(j + 2) % 3], e[2][(j + 1) % 3])], _IDX11)
           for j in range(3)]
    det = _mul([(cof[j], e[0][j]) for j in range(3)], _IDX21)
    return mx.stack([det] + trace_rows, axis=-2)


def gauss_jordan(m: mx.array) -> tuple[mx.array, mx.array]:
    """Reduce (*, r, c) m to [I | B] on its first r columns with partial pivoting; ok (*) if every pivot is usable."""
    r = m.shape[-2]
    rows = mx.arange(r)
    scale = mx.max(mx.abs(m), axis=(-2, -1))
    ok = all_of(mx.isfinite(scale), scale > 0)
    for c in range(r):
        cand = mx.where(rows >= c, mx.abs(m[..., :, c]), -1)
        p = mx.stop_gradient(mx.argmax(cand, axis=-1))[..., None]  # (*, 1)
        perm = mx.where(rows == c, p, mx.where(rows == p, c, rows))
        m = take_rows(m, perm, axis=-2)
        piv = m[..., c, c]
        good = mx.abs(piv) > _PIVOT_TOL * scale
        ok = all_of(ok, good)
        prow = safe_div(m[..., c, :], piv[..., None], good[..., None])
        m = mx.where((rows == c)[:, None], prow[..., None, :], m - m[..., :, c : c + 1] * prow[..., None, :])
    return m, ok


def _pair_polys(b: mx.array, top: int) -> mx.array:
    """Coefficients in z (increasing, (*, 3, 5)) of x, y and 1 in ``<row top> - z <row top + 1>``."""
    e, f = b[..., top, 10:], b[..., top + 1, 10:]
    zero = mx.zeros_like(e[..., 0])
    # tail columns: xz^2 xz x | yz^2 yz y | z^3 z^2 z 1
    px = [e[..., 2], e[..., 1] - f[..., 2], e[..., 0] - f[..., 1], -f[..., 0], zero]
    py = [e[..., 5], e[..., 4] - f[..., 5], e[..., 3] - f[..., 4], -f[..., 3], zero]
    p1 = [e[..., 9], e[..., 8] - f[..., 9], e[..., 7] - f[..., 8], e[..., 6] - f[..., 7], -f[..., 6]]
    return mx.stack([mx.stack(p, axis=-1) for p in (px, py, p1)], axis=-2)


def _det3(m: list[list[mx.array]]) -> mx.array:
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def hidden_matrix(reduced: mx.array) -> tuple[mx.array, mx.array]:
    """B(z) (*, 3, 3, 5) with z scaled to roots of geometric-mean modulus 1 (rows rescaled), and rho (*).

    ``det B`` has degree 10 with ``c0 = det B(0)`` and ``c10 = det`` of the leading coefficients
    (degree 3 in the x, y columns, 4 in the 1 column); ``z = rho u``. Row scaling keeps the roots.
    """
    b = mx.stack([_pair_polys(reduced, 4), _pair_polys(reduced, 6), _pair_polys(reduced, 8)], axis=-3)
    c0 = _det3([[b[..., i, j, 0] for j in range(3)] for i in range(3)])
    c10 = _det3([[b[..., i, j, 4 if j == 2 else 3] for j in range(3)] for i in range(3)])
    log_rho = log_scale(c0, c10, 10)
    mag = mx.abs(b)
    k = mx.arange(5, dtype=b.dtype)
    logs = mx.where(mag > 0, mx.log(mx.maximum(mag, 1e-30)) + k * log_rho[..., None, None, None], -mx.inf)
    top = mx.max(logs, axis=(-2, -1), keepdims=True)
    top = mx.where(mx.isfinite(top), top, 0)
    return mx.where(mag > 0, mx.sign(b) * mx.exp(logs - top), 0), mx.exp(log_rho)


def _det_and_derivative(b: mx.array, z: Complex) -> tuple[Complex, Complex]:
    """det B(z) and its derivative ``sum_ij cof_ij B'_ij`` at complex z (*, K) for B (*, 3, 3, 5)."""
    val, der = [], []
    for i in range(3):
        vrow, drow = [], []
        for j in range(3):
            v, d = horner(b[..., i, j, None, :], z)
            vrow.append(v), drow.append(d)
        val.append(vrow), der.append(drow)

    def sub(a: Complex, c: Complex) -> Complex:
        return a[0] - c[0], a[1] - c[1]

    det, dd = (0, 0), (0, 0)
    for i in range(3):
        for j in range(3):
            r1, r2, c1, c2 = (i + 1) % 3, (i + 2) % 3, (j + 1) % 3, (j + 2) % 3
            cof = sub(cmul(val[r1][c1], val[r2][c2]), cmul(val[r1][c2], val[r2][c1]))
            if i == 0:
                t = cmul(val[0][j], cof)
                det = (det[0] + t[0], det[1] + t[1])
            t = cmul(der[i][j], cof)
            dd = (dd[0] + t[0], dd[1] + t[1])
    return det, dd


def _evaluate(p: mx.array, z: mx.array) -> mx.array:
    """Real polynomials (*, d + 1) at real points z (*, K): (*, K)."""
    acc = mx.broadcast_to(p[..., -1:], z.shape)
    for k in range(p.shape[-1] - 2, -1, -1):
        acc = acc * z + p[..., k : k + 1]
    return acc


def _monomials(v: list[mx.array]) -> tuple[list[mx.array], list[list[tuple[int, mx.array]]]]:
    """The 20 cubic monomials at v = (x, y, z) (each (*, K)) and, per variable, the nonzero partials as (index, value)."""
    powers = [[mx.ones_like(c), c, c * c, c * c * c] for c in v]

    def term(exps) -> mx.array:
        return powers[0][exps[0]] * powers[1][exps[1]] * powers[2][exps[2]]

    mono = [term(e) for e in _MON3]
    grads = []
    for axis in range(3):
        cols = []
        for j, e in enumerate(_MON3):
            if e[axis]:
                lower = list(e)
                lower[axis] -= 1
                cols.append((j, e[axis] * term(lower)))
        grads.append(cols)
    return mono, grads


def _apply(m: mx.array, terms: list[tuple[int, mx.array]]) -> mx.array:
    """``sum_j m[:, j] t_j`` (*, K, 10) for m (*, 1, 10, 20) and monomial values t_j (*, K): elementwise, fused."""
    acc = 0
    for j, t in terms:
        acc = acc + m[..., j] * t[..., None]
    return acc


def polish(m: mx.array, v: list[mx.array], steps: int = _POLISH) -> tuple[list[mx.array], mx.array]:
    """``steps`` Gauss-Newton steps on the 10 cubics ``m mono(x, y, z) = 0`` (m (*, 1, 10, 20), rows of unit norm) from v.

    Returns the polished (x, y, z) (each (*, K)) and the final residual norm relative to |mono|.
    """
    for _ in range(steps):
        mono, grads = _monomials(v)
        r = _apply(m, list(enumerate(mono)))  # (*, K, 10)
        jac = [_apply(m, g) for g in grads]
        a, g = gauss_newton_system([jac], [r], mx.ones_like(r))
        step, ok = solve_spd_ex(a, -g)
        step = mx.where(all_of(ok[..., None], mx.all(mx.isfinite(step), axis=-1, keepdims=True)), step, 0)
        v = [v[i] + step[..., i] for i in range(3)]
    mono, _ = _monomials(v)
    r = _apply(m, list(enumerate(mono)))
    size = sum(t * t for t in mono)
    return v, mx.sqrt(mx.sum(r * r, axis=-1) / mx.maximum(size, 1e-30))


def five_point(y1: mx.array, y2: mx.array, *, fast: bool = False) -> tuple[mx.array, mx.array]:
    """Up to 10 essential matrices (*, 10, 3, 3) from 5 normalised correspondences (*, 5, 2); mask (*, 10).

    ``y2h^T E y1h = 0`` with ``yh = (x, y, 1)`` the undistorted ``K^-1`` coordinates. Candidates
    have unit Frobenius norm (both nonzero singular values ``1 / sqrt 2``); masked ones are finite.
    ``fast``: one chart, fewer Aberth iterations and polish steps (``_FAST``): ~3x cheaper, and
    97 % of the true solutions found instead of 99.8 % (random noise-free scenes), which costs
    RANSAC a few hypotheses, not the model (its other all-inlier samples find it).
    """
    basis, full = null_space(design_rows(y1, y2))
    if fast:
        e, m, _ = _solve(basis, full, *_FAST)
        return e, m
    # both charts in one pass (one graph, half the kernels of two calls)
    charts = mx.stack([basis, matmul(basis, mx.array(_CHART, dtype=basis.dtype))], axis=-3)
    e, m, r = _solve(charts, full[..., None])
    (e1, e2), (m1, m2), (r1, r2) = ((x[..., 0, :, :, :], x[..., 1, :, :, :]) if x.ndim > m.ndim else
                                    (x[..., 0, :], x[..., 1, :]) for x in (e, m, r))
    # a solution found in both charts is kept once, from the chart where the polish ended lower
    cos = mx.abs(mx.sum(e1[..., :, None, :, :] * e2[..., None, :, :, :], axis=(-2, -1)))
    same = all_of(m1[..., :, None], m2[..., None, :], cos > 1 - _SAME)
    m1 = all_of(m1, ~mx.any(all_of(same, r2[..., None, :] < r1[..., :, None]), axis=-1))
    m2 = all_of(m2, ~mx.any(all_of(same, r1[..., :, None] <= r2[..., None, :]), axis=-2))
    e, m, r = (mx.concatenate(pair, axis=-3 if pair[0].ndim > m1.ndim else -1) for pair in ((e1, e2), (m1, m2), (r1, r2)))
    order = mx.stop_gradient(mx.argsort(mx.where(m, r, mx.inf), axis=-1))[..., :10]
    return take_rows(e, order, axis=-3), take_rows(m, order, axis=-1)


def _solve(basis: mx.array, full: mx.array, iterations: int = ITERATIONS,
           polish_steps: int = _POLISH) -> tuple[mx.array, mx.array, mx.array]:
    """Candidates (*, 10, 3, 3), mask and polish residual (*, 10) in the chart ``E = xX + yY + zZ + W``."""
    cubics = constraint_matrix(basis)
    # rows of unit norm: partial pivoting then compares like with like (equilibration)
    unit = cubics / mx.maximum(mx.sqrt(mx.sum(cubics * cubics, axis=-1, keepdims=True)), 1e-30)
    reduced, ok = gauss_jordan(unit)
    b, rho = hidden_matrix(reduced)
    ur, ui = aberth(lambda u: _det_and_derivative(b, u), 10, b.shape[:-3], b.dtype, iterations)
    real = mx.abs(ui) <= _REAL_TOL * (1 + mx.abs(ur))
    z = ur * rho[..., None]
    rows = [mx.stack([_evaluate(b[..., i, j, :], ur) for j in range(3)], axis=-1) for i in range(3)]  # (*, K, 3)
    crosses = [cross(rows[0], rows[1]), cross(rows[0], rows[2]), cross(rows[1], rows[2])]
    norms = [mx.sum(c * c, axis=-1, keepdims=True) for c in crosses]
    best = mx.where(all_of(norms[0] >= norms[1], norms[0] >= norms[2]), crosses[0],
                    mx.where(norms[1] >= norms[2], crosses[1], crosses[2]))
    best = [best[..., i] for i in range(3)]
    good = mx.abs(best[2]) > 0
    x, y = safe_div(best[0], best[2], good), safe_div(best[1], best[2], good)
    (x, y, z), res = polish(unit[..., None, :, :], [x, y, z], polish_steps)
    good = all_of(good, res < _RESIDUAL_TOL)
    coef = mx.stack([x, y, z, mx.ones_like(z)], axis=-1)  # (*, K, 4)
    e = mx.sum(basis[..., None, :, :] * coef[..., :, None, :], axis=-1).reshape(*coef.shape[:-1], 3, 3)
    norm = mx.sqrt(mx.sum(e * e, axis=(-2, -1), keepdims=True))
    e = safe_div(e, norm, norm > 0)
    mask = all_of(real, good, all_of(full, ok)[..., None], mx.all(mx.isfinite(e), axis=(-2, -1)))
    return mx.where(mask[..., None, None], e, 0), mask, mx.where(mask, res, mx.inf)
