"""Block-sparse Gauss-Newton normal equations of bundle adjustment and their Schur-complement solve.

Bundle adjustment has C camera parameter blocks (size dc: 6 for a pose, more with intrinsics) and
P point blocks (size 3); observation i couples camera ``c(i)`` and point ``p(i)`` only, so
``A = J^T W J`` is made of camera blocks ``U_c`` (dc x dc), point blocks ``V_p`` (3 x 3) and one
coupling block ``W_i = J_c,i^T w_i J_p,i`` (dc x 3) per observation (Triggs et al., "Bundle
Adjustment - A Modern Synthesis", 2000, sec. 6.1). Everything is accumulated with scatter-adds
(``mx.array.at[idx].add``), never as a dense (n x n) matrix.

The damped step solves ``(A + mu I) h = -g``. The points are eliminated with the closed-form
batched 3x3 inverse of ``V*_p = V_p + mu I``, leaving the reduced camera system

    S h_c = b,   S = U* - sum_i W_i V*_p(i)^-1 W_j^T (over observation pairs i, j of one point),
    b = -g_c + sum_i W_i V*_p(i)^-1 g_p(i),

then ``h_p = V*_p^-1 (-g_p - sum_i W_i^T h_c(i))``. S is solved either densely (a blocked
right-looking Cholesky in pure MLX, Golub and Van Loan, "Matrix Computations", 4th ed.,
Alg. 4.2.4) or by preconditioned conjugate gradients with the block-Jacobi preconditioner and
a fixed iteration count, applying ``S x = U* x - sum W V*^-1 W^T x`` by gathers and scatter-adds
without forming S (Agarwal et al., "Bundle Adjustment in the Large", ECCV 2010, sec. 4).

The damping is ``mu I`` (the solver core's :class:`DenseStep` convention, Madsen-Nielsen-Tingleff
Alg. 3.16), and the predicted decrease ``L(0) - L(h) = -g^T h - h^T A h / 2`` is evaluated
exactly from the blocks, so an inexact PCG step is scored correctly in the gain ratio.

The observation graph (which camera and point each observation has) is static problem structure:
:class:`BlockStructure` analyses it once on the host, like Ceres' symbolic analysis; the numeric
work afterwards never synchronises with the host.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from ..linalg import inv_ex, matmul, solve_spd_ex
from ..linalg.cholesky import _factor

#: Reduced camera systems up to this size (C * dc) are solved by dense Cholesky under "auto".
DENSE_MAX = 1024
LINEAR_SOLVERS = ("auto", "dense", "pcg")


class BlockStructure:
    """The static observation graph: camera and point index per observation, and the pairs
    of observations that share a point (the non-zero blocks of the reduced camera system).

    Args:
        camera_index: (O,) ints in [0, C).
        point_index: (O,) ints in [0, P).
        num_cameras: C.
        num_points: P.
        camera_dof: dc, parameters per camera block.
        with_pairs: build the observation pairs (needed by the dense solver only).

    Example:
        >>> s = BlockStructure([0, 1, 1], [0, 0, 1], 2, 2, 6)
        >>> s.num_pairs
        5
    """

    def __init__(self, camera_index: Any, point_index: Any, num_cameras: int, num_points: int,
                 camera_dof: int, with_pairs: bool = True):
        cam = np.asarray(camera_index, dtype=np.int64).reshape(-1)
        pt = np.asarray(point_index, dtype=np.int64).reshape(-1)
        if cam.shape != pt.shape:
            raise ValueError(f"camera_index {cam.shape} and point_index {pt.shape}: expected the same shape (O,)")
        if cam.size and (cam.min() < 0 or cam.max() >= num_cameras):
            raise ValueError(f"camera_index: expected values in [0, {num_cameras})")
        if pt.size and (pt.min() < 0 or pt.max() >= num_points):
            raise ValueError(f"point_index: expected values in [0, {num_points})")
        self.num_cameras, self.num_points, self.camera_dof = num_cameras, num_points, camera_dof
        self.num_observations = cam.size
        self.camera_index = mx.array(cam.astype(np.int32))
        self.point_index = mx.array(pt.astype(np.int32))
        self.pair_first = self.pair_second = None
        self.num_pairs = 0
        if with_pairs:
            first, second = _observation_pairs(pt)
            self.pair_first, self.pair_second = mx.array(first), mx.array(second)
            self.num_pairs = first.size
            # Flat positions of the pairs' (dc x dc) blocks in the dense (C dc) x (C dc) matrix.
            d = camera_dof
            rows = cam[first][:, None, None] * d + np.arange(d)[None, :, None]
            cols = cam[second][:, None, None] * d + np.arange(d)[None, None, :]
            self.pair_flat = mx.array((rows * (num_cameras * d) + cols).reshape(-1).astype(np.int32))
            own = np.arange(num_cameras)[:, None, None] * d
            diag = (own + np.arange(d)[None, :, None]) * (num_cameras * d) + own + np.arange(d)[None, None, :]
            self.diag_flat = mx.array(diag.reshape(-1).astype(np.int32))

    @property
    def reduced_size(self) -> int:
        return self.num_cameras * self.camera_dof


def _observation_pairs(point_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (i, j) of observations of the same point, i == j included."""
    order = np.argsort(point_index, kind="stable")
    sorted_pts = point_index[order]
    starts = np.flatnonzero(np.r_[True, sorted_pts[1:] != sorted_pts[:-1]]) if sorted_pts.size else np.zeros(0, int)
    counts = np.diff(np.r_[starts, sorted_pts.size])
    first, second = [], []
    for k in np.unique(counts):  # one vectorised block per track length
        sel = starts[counts == k]
        members = order[sel[:, None] + np.arange(k)[None, :]]  # (tracks, k)
        first.append(np.repeat(members, k, axis=1).reshape(-1))
        second.append(np.tile(members, (1, k)).reshape(-1))
    if not first:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate(first).astype(np.int32), np.concatenate(second).astype(np.int32)


class BlockSystem(NamedTuple):
    """Block-sparse normal equations ``A = J^T W J``, ``g = J^T W r`` of one BA problem.

    Attributes:
        U: (C, dc, dc) camera blocks.
        V: (P, 3, 3) point blocks.
        W: (O, dc, 3) coupling block of each observation.
        g_c: (C, dc) camera gradient.
        g_p: (P, 3) point gradient.
    """

    U: mx.array
    V: mx.array
    W: mx.array
    g_c: mx.array
    g_p: mx.array


def _tmat(j: mx.array, k: mx.array, w: mx.array) -> mx.array:
    """(O, a, b) = J_j^T diag(w) J_k for (O, 2, a) and (O, 2, b), exact float32."""
    wj = j * w[:, None, None]
    return matmul(wj.swapaxes(-1, -2), k)


def block_normal_equations(structure: BlockStructure, jac_camera: mx.array, jac_point: mx.array,
                           residual: mx.array, weight: mx.array) -> BlockSystem:
    """Accumulate the block-sparse normal equations from per-observation Jacobians.

    Args:
        structure: the observation graph.
        jac_camera: (O, 2, dc) d residual / d camera parameters.
        jac_point: (O, 2, 3) d residual / d point.
        residual: (O, 2).
        weight: (O,) IRLS weights (0 drops an observation).

    Returns:
        :class:`BlockSystem`.

    Example:
        >>> s = BlockStructure([0], [0], 1, 1, 1)
        >>> sys = block_normal_equations(s, mx.ones((1, 2, 1)), mx.ones((1, 2, 3)), mx.ones((1, 2)), mx.ones(1))
        >>> sys.U.tolist(), sys.g_p.tolist()
        ([[[2.0]]], [[2.0, 2.0, 2.0]])
    """
    c, p = structure.camera_index, structure.point_index
    dc, dt = jac_camera.shape[-1], jac_camera.dtype
    wr = residual * weight[:, None]
    U = mx.zeros((structure.num_cameras, dc, dc), dtype=dt).at[c].add(_tmat(jac_camera, jac_camera, weight))
    V = mx.zeros((structure.num_points, 3, 3), dtype=dt).at[p].add(_tmat(jac_point, jac_point, weight))
    W = _tmat(jac_camera, jac_point, weight)
    g_c = mx.zeros((structure.num_cameras, dc), dtype=dt).at[c].add(mx.sum(jac_camera * wr[..., None], axis=-2))
    g_p = mx.zeros((structure.num_points, 3), dtype=dt).at[p].add(mx.sum(jac_point * wr[..., None], axis=-2))
    return BlockSystem(U, V, W, g_c, g_p)


def _mv(m: mx.array, x: mx.array) -> mx.array:
    """(*, a) = M x for (*, a, b) and (*, b), elementwise (exact float32)."""
    return mx.sum(m * x[..., None, :], axis=-1)


def _mtv(m: mx.array, x: mx.array) -> mx.array:
    """(*, b) = M^T x for (*, a, b) and (*, a)."""
    return mx.sum(m * x[..., :, None], axis=-2)


def _damped(a: mx.array, mu: mx.array) -> mx.array:
    return a + mu * mx.eye(a.shape[-1], dtype=a.dtype)


class _Reduced(NamedTuple):
    v_inv: mx.array  # (P, 3, 3) (V + mu I)^-1
    y: mx.array  # (O, dc, 3) W_i (V + mu I)^-1_p(i)
    rhs: mx.array  # (C, dc) b of the reduced system
    u_damped: mx.array  # (C, dc, dc)
    ok: mx.array  # () every point block invertible


def _reduce(structure: BlockStructure, system: BlockSystem, mu: mx.array) -> _Reduced:
    v_inv, v_ok = inv_ex(_damped(system.V, mu))
    y = matmul(system.W, v_inv[structure.point_index])
    t = _mv(y, system.g_p[structure.point_index])  # (O, dc)
    rhs = -system.g_c + mx.zeros_like(system.g_c).at[structure.camera_index].add(t)
    return _Reduced(v_inv, y, rhs, _damped(system.U, mu), mx.all(v_ok))


def schur_diagonal(structure: BlockStructure, system: BlockSystem, red: _Reduced) -> mx.array:
    """(C, dc, dc) diagonal blocks of the reduced camera system (the block-Jacobi preconditioner)."""
    own = matmul(red.y, system.W.swapaxes(-1, -2))
    return red.u_damped - mx.zeros_like(red.u_damped).at[structure.camera_index].add(own)


def schur_dense(structure: BlockStructure, system: BlockSystem, red: _Reduced) -> mx.array:
    """(C dc, C dc) reduced camera system S, from the observation pairs of every point."""
    if structure.pair_first is None:
        raise ValueError("schur_dense: the BlockStructure was built with with_pairs=False")
    n = structure.reduced_size
    blocks = matmul(red.y[structure.pair_first], system.W[structure.pair_second].swapaxes(-1, -2))
    s = mx.zeros((n * n,), dtype=blocks.dtype).at[structure.pair_flat].add(-blocks.reshape(-1))
    s = s.at[structure.diag_flat].add(red.u_damped.reshape(-1))
    return s.reshape(n, n)


def schur_apply(structure: BlockStructure, system: BlockSystem, red: _Reduced, x: mx.array) -> mx.array:
    """``S x`` (C, dc) for x (C, dc) without forming S: ``U* x - sum_i W_i V*^-1 (sum_j W_j^T x_c(j))``."""
    c, p = structure.camera_index, structure.point_index
    t = mx.zeros((structure.num_points, 3), dtype=x.dtype).at[p].add(_mtv(system.W, x[c]))
    z = _mv(red.y, t[p])
    return _mv(red.u_damped, x) - mx.zeros_like(x).at[c].add(z)


def _lower_inverse(lower: mx.array) -> mx.array:
    """L^-1 of a lower-triangular (b, b) matrix by forward substitution on the identity."""
    b = lower.shape[-1]
    rows: list[mx.array] = []
    eye = mx.eye(b, dtype=lower.dtype)
    for i in range(b):
        r = eye[i]
        for k in range(i):
            r = r - lower[i, k] * rows[k]
        rows.append(r / lower[i, i])
    return mx.stack(rows, axis=0)


def cholesky_solve_blocked(a: mx.array, b: mx.array, block: int = 8) -> tuple[mx.array, mx.array]:
    """Solve ``A x = b`` for one SPD (n, n) matrix by a blocked right-looking Cholesky.

    Pure MLX (no ``mx.linalg``): per diagonal block the unrolled small Cholesky of
    :mod:`mlxgeom.linalg.cholesky`, the panel ``A21 L11^-T`` and the trailing update
    ``A22 - L21 L21^T`` as exact float32 rank-``block`` products (GVL Alg. 4.2.4); then blocked
    forward and back substitution. n is padded to a multiple of ``block`` with identity rows.

    Args:
        a: (n, n) symmetric positive definite.
        b: (n,).
        block: block size (<= 16 keeps the products unrolled).

    Returns:
        ``(x (n,), ok ())``: ok False where a pivot was not positive or not finite (x is then
        not meaningful).

    Example:
        >>> x, ok = cholesky_solve_blocked(mx.array([[4.0, 2.0], [2.0, 3.0]]), mx.array([2.0, 1.0]), block=1)
        >>> [round(v, 4) for v in x.tolist()], ok.item()
        ([0.5, 0.0], True)
    """
    n = a.shape[-1]
    pad = (-n) % block
    if pad:
        a = mx.concatenate([mx.concatenate([a, mx.zeros((n, pad), dtype=a.dtype)], axis=1),
                            mx.concatenate([mx.zeros((pad, n), dtype=a.dtype), mx.eye(pad, dtype=a.dtype)], axis=1)])
        b = mx.concatenate([b, mx.zeros((pad,), dtype=b.dtype)])
    nb = a.shape[-1] // block
    ok = mx.all(mx.isfinite(a))
    inv_diag, panels = [], []
    trailing = 0.5 * (a + a.T)
    for k in range(nb):
        lkk, ok_k = _factor(trailing[:block, :block])
        ok = ok & ok_k
        linv = _lower_inverse(lkk)
        inv_diag.append(linv)
        if k + 1 < nb:
            panel = matmul(trailing[block:, :block], linv.T)  # L21 = A21 L11^-T
            panels.append(panel)
            trailing = trailing[block:, block:] - matmul(panel, panel.T)
    y = []
    r = b
    for k in range(nb):  # L y = b, right-looking
        yk = _mv(inv_diag[k], r[:block])
        y.append(yk)
        if k + 1 < nb:
            r = r[block:] - _mv(panels[k], yk)
    x: list[mx.array] = [mx.array(0.0)] * nb
    for k in reversed(range(nb)):  # L^T x = y
        rk = y[k]
        if k + 1 < nb:
            rk = rk - _mtv(panels[k], mx.concatenate(x[k + 1:]))
        x[k] = _mtv(inv_diag[k], rk)
    sol = mx.concatenate(x)[:n]
    return sol, ok & mx.all(mx.isfinite(sol))


def pcg(apply: Any, rhs: mx.array, precond: mx.array, iterations: int) -> mx.array:
    """Preconditioned conjugate gradients with a fixed iteration count (no host sync).

    Args:
        apply: ``x (C, d) -> S x``.
        rhs: (C, d).
        precond: (C, d, d) inverse diagonal blocks (block-Jacobi).
        iterations: static count.

    Returns:
        x (C, d). A direction whose curvature is not positive, or a residual that reached zero,
        stops the updates (the step is frozen with ``mx.where``).

    Example:
        >>> A = mx.array([[[4.0, 1.0], [1.0, 3.0]]])
        >>> x = pcg(lambda v: _mv(A, v), mx.array([[1.0, 2.0]]), mx.broadcast_to(mx.eye(2), (1, 2, 2)), 2)
        >>> [round(v, 4) for v in x[0].tolist()]
        [0.0909, 0.6364]
    """
    x = mx.zeros_like(rhs)
    r = rhs
    z = _mv(precond, r)
    d = z
    rz = mx.sum(r * z)
    for _ in range(iterations):
        q = apply(d)
        curv = mx.sum(d * q)
        go = (curv > 0) & (rz > 0) & mx.isfinite(curv)
        alpha = mx.where(go, rz / mx.where(go, curv, 1.0), 0.0)
        x = x + alpha * d
        r = r - alpha * q
        z = _mv(precond, r)
        rz_new = mx.sum(r * z)
        beta = mx.where(go, rz_new / mx.where(rz > 0, rz, 1.0), 0.0)
        d = mx.where(go, z + beta * d, d)
        rz = mx.where(go, rz_new, rz)
    return x


class SchurStep:
    """The damped block-sparse step as a :class:`StepSolver` for :func:`mlxgeom.solve.lm_loop`.

    ``__call__(system, g, mu) -> (h, ok, predicted)`` with ``system`` a :class:`BlockSystem`,
    ``g`` the flat gradient ``[g_c.ravel(), g_p.ravel()]`` (n,), h likewise flat (n,) and
    ``predicted = -g^T h - h^T A h / 2``. Damping ``mu I`` on the full system (as ``DenseStep``).

    Args:
        structure: the observation graph.
        linear_solver: ``"dense"`` (blocked Cholesky of S), ``"pcg"`` (block-Jacobi PCG,
            S never formed) or ``"auto"`` (dense when ``C dc <= DENSE_MAX``).
        pcg_iterations: static PCG iteration count.

    Example:
        >>> s = BlockStructure([0, 0], [0, 1], 1, 2, 1)
        >>> sys = block_normal_equations(s, mx.ones((2, 2, 1)), mx.ones((2, 2, 3)), mx.ones((2, 2)), mx.ones(2))
        >>> h, ok, pred = SchurStep(s)(sys, flat_gradient(sys), mx.array(1.0))
        >>> h.shape, ok.item()
        ((7,), True)
    """

    def __init__(self, structure: BlockStructure, linear_solver: str = "auto", pcg_iterations: int = 50):
        if linear_solver not in LINEAR_SOLVERS:
            raise ValueError(f"linear_solver: expected one of {LINEAR_SOLVERS}, got {linear_solver!r}")
        if linear_solver == "auto":
            linear_solver = "dense" if structure.reduced_size <= DENSE_MAX else "pcg"
        if linear_solver == "dense" and structure.pair_first is None:
            raise ValueError("linear_solver='dense' needs a BlockStructure built with with_pairs=True")
        self.structure, self.linear_solver, self.pcg_iterations = structure, linear_solver, pcg_iterations

    def max_diagonal(self, system: BlockSystem) -> mx.array:
        du = mx.diagonal(system.U, axis1=-2, axis2=-1)
        dv = mx.diagonal(system.V, axis1=-2, axis2=-1)
        return mx.maximum(mx.max(du), mx.max(dv)) if dv.size else mx.max(du)

    def __call__(self, system: BlockSystem, g: mx.array, mu: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        st = self.structure
        mu = mx.reshape(mu, ())
        finite = mx.isfinite(mu) & mx.all(mx.isfinite(g)) & _all_finite(system)
        red = _reduce(st, system, mu)
        if self.linear_solver == "dense":
            h_c, ok = cholesky_solve_blocked(schur_dense(st, system, red), red.rhs.reshape(-1))
            h_c = h_c.reshape(red.rhs.shape)
        else:
            diag_inv, ok = solve_spd_ex(schur_diagonal(st, system, red),
                                        mx.broadcast_to(mx.eye(st.camera_dof, dtype=g.dtype), red.u_damped.shape))
            diag_inv = mx.where(ok[:, None, None], diag_inv, 0.0)
            h_c = pcg(lambda x: schur_apply(st, system, red, x), red.rhs, diag_inv, self.pcg_iterations)
            ok = mx.all(mx.isfinite(h_c))
        c, p = st.camera_index, st.point_index
        back = mx.zeros_like(system.g_p).at[p].add(_mtv(system.W, h_c[c]))
        h_p = _mv(red.v_inv, -system.g_p - back)
        h = mx.concatenate([h_c.reshape(-1), h_p.reshape(-1)])
        ok = ok & red.ok & finite & mx.all(mx.isfinite(h))
        h = mx.where(ok, h, 0.0)
        return h, ok, predicted_decrease(st, system, g, h)


def _all_finite(system: BlockSystem) -> mx.array:
    return mx.all(mx.stack([mx.all(mx.isfinite(a)) for a in system]))


def flat_gradient(system: BlockSystem) -> mx.array:
    """``g = [g_c.ravel(), g_p.ravel()]`` (C dc + 3 P,), the tangent order of :class:`SchurStep`."""
    return mx.concatenate([system.g_c.reshape(-1), system.g_p.reshape(-1)])


def split_step(structure: BlockStructure, h: mx.array) -> tuple[mx.array, mx.array]:
    """Flat h (n,) -> camera part (C, dc) and point part (P, 3)."""
    n = structure.reduced_size
    return h[:n].reshape(structure.num_cameras, structure.camera_dof), h[n:].reshape(structure.num_points, 3)


def predicted_decrease(structure: BlockStructure, system: BlockSystem, g: mx.array, h: mx.array) -> mx.array:
    """``L(0) - L(h) = -g^T h - h^T A h / 2`` of the undamped Gauss-Newton model, from the blocks."""
    h_c, h_p = split_step(structure, h)
    c, p = structure.camera_index, structure.point_index
    quad = (mx.sum(h_c * _mv(system.U, h_c)) + mx.sum(h_p * _mv(system.V, h_p))
            + 2.0 * mx.sum(h_c[c] * _mv(system.W, h_p[p])))
    return -mx.sum(g * h) - 0.5 * quad
