"""E refinement on its manifold with the one LM loop (:func:`mlxgeom.solve.lm_loop`).

``E = [t]_x R`` with R in SO(3) and t on the unit sphere: 5 degrees of freedom (Ma, Kosecka and
Sastry, "Optimization criteria and geometric algorithms for motion and structure estimation",
IJCV 44, 2001). The update is ``R <- R exp([w]_x)`` (the library's right perturbation) and
``t <- (t + B d) / |t + B d|`` with B (3 x 2) an orthonormal basis of the tangent plane at t.
The cost is the weighted sum of squared Sampson distances (H&Z eq. 11.9) in normalised
coordinates; the Jacobian is analytic (``dE`` along each of the 5 tangent directions), the
normal equations come from ``linalg.gauss_newton_system``.
"""

from __future__ import annotations

import mlx.core as mx

from .._vmap import all_of
from ..homography._common import safe_div
from ..lie import so3_exp, so3_hat
from ..lie.so3 import cross
from ..linalg import gauss_newton_system, matmul
from ..solve import lm_loop
from .distances import epipolar_terms
from .pose import _decompose
from .relations import _essential


def _tangent_basis(t: mx.array) -> tuple[mx.array, mx.array]:
    """Two unit vectors (*, 3) orthogonal to unit t and to each other (crossed with t's smallest axis)."""
    axis = mx.stop_gradient(mx.argmin(mx.abs(t), axis=-1))
    a = (mx.arange(3) == axis[..., None]).astype(t.dtype)
    # lie.so3.cross, not mx.linalg.cross: the latter breaks mx.compile of the LM loop (MLX 0.32.4, IndexError)
    b1 = cross(a, t)
    b1 = b1 / mx.sqrt(mx.sum(b1 * b1, axis=-1, keepdims=True))
    return b1, cross(t, b1)


def _retract(x: tuple[mx.array, mx.array], h: mx.array) -> tuple[mx.array, mx.array]:
    r, t = x
    b1, b2 = _tangent_basis(t)
    t2 = t + h[..., 3:4] * b1 + h[..., 4:5] * b2
    return matmul(r, so3_exp(h[..., :3])), t2 / mx.sqrt(mx.sum(t2 * t2, axis=-1, keepdims=True))


def _directions(r: mx.array, t: mx.array) -> mx.array:
    """dE / dh (*, 5, 3, 3) of ``E = [t]_x R`` along the retraction: ``E [e_k]_x`` (rotation), ``[b_k]_x R``."""
    e = _essential(r, t)
    eye = mx.eye(3, dtype=r.dtype)
    rot = [matmul(e, so3_hat(eye[k])) for k in range(3)]
    b1, b2 = _tangent_basis(t)
    return mx.stack(rot + [_essential(r, b1), _essential(r, b2)], axis=-3)


def sampson_system(e: mx.array, d: mx.array, y1: mx.array, y2: mx.array, w: mx.array):
    """Cost, J^T W J (*, k, k) and J^T W r (*, k) of the Sampson residuals of e (*, 3, 3) along directions d (*, k, 3, 3).

    ``r = s e / sqrt(D)``: ``dr = s (de / sqrt(D) - e dD / (2 D^1.5))`` with ``de = y2^T dE y1`` and
    ``dD = 2 <(E y1)_12, (dE y1)_12> + 2 <(E^T y2)_12, (dE^T y2)_12>`` (s = sqrt(w)), for each
    direction dE = d[k] of the parametrisation (the analytic Jacobian, no autodiff pass).
    """
    num, n2, n1 = epipolar_terms(e[..., None, :, :], y1, y2)
    den = n1 + n2
    good = all_of(den > 0, w > 0)
    inv = mx.rsqrt(mx.where(good, den, 1))
    s = mx.where(good, mx.sqrt(mx.where(good, w, 1)), 0)
    res = s * num * inv
    h1 = mx.concatenate([y1, mx.ones_like(y1[..., :1])], axis=-1)  # (*, N, 3)
    h2 = mx.concatenate([y2, mx.ones_like(y2[..., :1])], axis=-1)
    l2 = matmul(h1, e.swapaxes(-1, -2))  # rows: E y1
    l1 = matmul(h2, e)  # rows: E^T y2
    jac = []
    for k in range(d.shape[-3]):
        dk = d[..., k, :, :]
        dl2 = matmul(h1, dk.swapaxes(-1, -2))
        dl1 = matmul(h2, dk)
        de = mx.sum(h2 * dl2, axis=-1)
        dd = 2 * (mx.sum(l2[..., :2] * dl2[..., :2], -1) + mx.sum(l1[..., :2] * dl1[..., :2], -1))
        jac.append(s * (de * inv - 0.5 * num * dd * inv * inv * inv))
    a, g = gauss_newton_system([jac], [res], mx.ones_like(res))
    return 0.5 * mx.sum(res * res, axis=-1), a, g


def _unit(m: mx.array) -> mx.array:
    norm = mx.sqrt(mx.sum(m * m, axis=(-2, -1), keepdims=True))
    return safe_div(m, norm, norm > 0)


def refine_essential(e0: mx.array, y1: mx.array, y2: mx.array, w: mx.array, iterations: int) -> tuple[mx.array, mx.array]:
    """LM on the essential manifold from e0 (B, 3, 3) over normalised points (B, N, 2) with weights (B, N).

    Returns ``(E (B, 3, 3) of unit Frobenius norm, ok (B))``; ok is False where the cost is not finite.
    """
    dec = _decompose(e0)

    def linearize(x):
        return sampson_system(_essential(x[0], x[1]), _directions(x[0], x[1]), y1, y2, w)

    res = lm_loop(linearize, (dec.R1, dec.t), _retract, e0.shape[:-2], max_iters=iterations)
    return _unit(_essential(res.x[0], res.x[1])), mx.isfinite(res.cost)
