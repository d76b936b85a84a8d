"""The damped Gauss-Newton step of calibration's arrow-shaped normal equations, by the Schur complement.

With the shared intrinsics (n entries) first and V per-view 6-dof poses after them, the
Gauss-Newton matrix of a calibration problem is an arrow:

    [ U     W_1 .. W_V ]        U   (n, n)   intrinsics x intrinsics, summed over views
    [ W_v^T  P_v       ]        W_v (n, 6)   intrinsics x pose v,  P_v (6, 6) pose v x pose v

(no pose couples to another). The poses are eliminated view by view (Triggs et al., "Bundle
Adjustment -- A Modern Synthesis", 2000, sec. 6.1; Hartley and Zisserman, 2nd ed., A6.3):
``S = U + mu I - sum_v W_v (P_v + mu I)^-1 W_v^T``, ``S h_i = -g_i + sum_v W_v (P_v + mu I)^-1 g_v``,
then ``h_v = -(P_v + mu I)^-1 (g_v + W_v^T h_i)``. Every solve is a small SPD system
(``linalg.solve_spd_ex``) and every product an exact-float32 ``linalg.matmul``: the step costs
O(V n^2) per camera instead of the O((n + 6 V)^3) dense solve.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx

from .. import linalg
from .._compiled import compiled
from .._vmap import all_of


class ArrowSystem(NamedTuple):
    """Gauss-Newton matrix in arrow form: ``U`` (*, n, n), ``W`` (*, V, n, 6), ``P`` (*, V, 6, 6)."""

    U: mx.array
    W: mx.array
    P: mx.array


def _eye(n: int, dtype: mx.Dtype) -> mx.array:
    return mx.eye(n, dtype=dtype)


def _finite(*arrays: mx.array, batch_ndim: int) -> mx.array:
    out = None
    for a in arrays:
        f = mx.all(mx.isfinite(a), axis=tuple(range(batch_ndim, a.ndim)))
        out = f if out is None else all_of(out, f)
    return out


def reduced_system(system: ArrowSystem, g: mx.array, mu: mx.array) -> tuple[mx.array, mx.array, mx.array,
                                                                              mx.array, mx.array]:
    """The Schur complement ``S`` (*, n, n) and its right-hand side (*, n) after eliminating the
    damped poses, with ``(P_v + mu I)^-1 W_v^T`` (*, V, 6, n), ``(P_v + mu I)^-1 g_v`` (*, V, 6) and
    a (*) mask of the problems whose pose blocks were positive definite."""
    U, W, P = system
    n, views = U.shape[-1], W.shape[-3]
    g_i, g_p = g[..., :n], g[..., n:].reshape(*g.shape[:-1], views, 6)
    damped = P + mu[..., None, None, None] * _eye(6, P.dtype)
    rhs = mx.concatenate([W.swapaxes(-1, -2), g_p[..., None]], axis=-1)  # (*, V, 6, n + 1)
    x, ok_p = linalg.solve_spd_ex(damped, rhs)
    pw, pg = x[..., :n], x[..., n]
    S = U + mu[..., None, None] * _eye(n, U.dtype) - mx.sum(linalg.matmul(W, pw), axis=-3)
    r = -g_i + mx.sum(linalg.matmul(W, pg[..., None])[..., 0], axis=-2)
    return S, r, pw, pg, mx.all(ok_p, axis=-1)


class ArrowStep:
    """:class:`mlxgeom.solve.StepSolver` for :class:`ArrowSystem` (module docstring).

    ``__call__(system, g (*, n + 6 V), mu (*)) -> (h (*, n + 6 V), ok (*), predicted (*))`` with
    ``predicted = 0.5 h^T (mu h - g)`` (Madsen, Nielsen, Tingleff 2004, eq. 3.14); non-finite or
    indefinite systems give h = 0 and ok False for that problem only.

    Example:
        >>> import mlx.core as mx
        >>> sys = ArrowSystem(mx.eye(1)[None], mx.zeros((1, 2, 1, 6)), mx.broadcast_to(mx.eye(6), (1, 2, 6, 6)))
        >>> h, ok, pred = ArrowStep()(sys, mx.ones((1, 13)), mx.zeros(1))
        >>> h[0, :3].tolist(), ok.tolist(), ArrowStep().max_diagonal(sys).tolist()
        ([-1.0, -1.0, -1.0], [True], [1.0])
    """

    def __call__(self, system: ArrowSystem, g: mx.array, mu: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        return _step(*system, g, mu)

    def max_diagonal(self, system: ArrowSystem) -> mx.array:
        """(*) largest diagonal entry of U (*, n, n) and of the pose blocks P (*, V, 6, 6)."""
        U, _, P = system
        du = mx.max(mx.diagonal(U, axis1=-2, axis2=-1), axis=-1)
        dp = mx.max(mx.diagonal(P, axis1=-2, axis2=-1), axis=(-2, -1))
        return mx.maximum(du, dp)


@compiled
def _step(U: mx.array, W: mx.array, P: mx.array, g: mx.array, mu: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """:meth:`ArrowStep.__call__` as one compiled core: eager, the guards, the two eliminations and
    the back-substitution were ~760 small ops in each LM iteration."""
    finite = all_of(_finite(U, W, P, g, batch_ndim=mu.ndim), mx.isfinite(mu))
    # Double where: non-finite problems solve the identity system with a zero right-hand side.
    U = mx.where(finite[..., None, None], U, _eye(U.shape[-1], U.dtype))
    W = mx.where(finite[..., None, None, None], W, 0.0)
    P = mx.where(finite[..., None, None, None], P, _eye(6, P.dtype))
    system = ArrowSystem(U, W, P)
    g = mx.where(finite[..., None], g, 0.0)
    S, r, pw, pg, ok_p = reduced_system(system, g, mu)
    h_i, ok_i = linalg.solve_spd_ex(S, r)
    h_p = -pg - linalg.matmul(pw, h_i[..., None, :, None])[..., 0]
    h = mx.concatenate([h_i, h_p.reshape(*h_p.shape[:-2], -1)], axis=-1)
    ok = all_of(finite, ok_p, ok_i, mx.all(mx.isfinite(h), axis=-1))
    h = mx.where(ok[..., None], h, 0.0)
    hs, gs = mx.stop_gradient(h), mx.stop_gradient(g)
    return h, ok, 0.5 * mx.sum(hs * (mu[..., None] * hs - gs), axis=-1)
