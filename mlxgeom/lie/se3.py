"""SE(3): rigid motions as (*, 4, 4) homogeneous matrices, tangents xi = [rho, phi] (*, 6).

rho is the translational part, phi the rotation vector (Sophus / jaxlie / Barfoot order).
``exp(xi) = [[exp(phi), J_l(phi) rho], [0, 1]]`` (Barfoot, "State Estimation for Robotics",
2nd ed. 2024, sec. 7.1.4), so ``T p = R p + t``. Left/right Jacobians follow Barfoot's
eq. 7.85-7.86 (the Q block) with ``J_r(xi) = J_l(-xi)``; the adjoint is
``Ad(T) = [[R, hat(t) R], [0, R]]`` and ``T exp(xi) T^-1 = exp(Ad(T) xi)``.
"""

from __future__ import annotations

import mlx.core as mx

from .. import linalg
from .._compiled import compiled
from .._cuda import fast_path
from . import _scalar as sc
from . import lie_cuda, so3


def _split(xi: mx.array) -> tuple[mx.array, mx.array]:
    return xi[..., :3], xi[..., 3:]


def _rt(t: mx.array) -> tuple[mx.array, mx.array]:
    return t[..., :3, :3], t[..., :3, 3]


def _from_rt(r: mx.array, t: mx.array) -> mx.array:
    batch = mx.broadcast_shapes(r.shape[:-2], t.shape[:-1])
    top = mx.concatenate([mx.broadcast_to(r, (*batch, 3, 3)), mx.broadcast_to(t, (*batch, 3))[..., :, None]], axis=-1)
    bottom = mx.broadcast_to(mx.array([0.0, 0.0, 0.0, 1.0], dtype=top.dtype), (*top.shape[:-2], 1, 4))
    return mx.concatenate([top, bottom], axis=-2)


def _blocks(a: mx.array, b: mx.array, c: mx.array, d: mx.array) -> mx.array:
    """[[a, b], [c, d]] of (*, 3, 3) blocks -> (*, 6, 6)."""
    return mx.concatenate([mx.concatenate([a, b], axis=-1), mx.concatenate([c, d], axis=-1)], axis=-2)


def _hat(xi: mx.array) -> mx.array:
    rho, phi = _split(xi)
    top = mx.concatenate([so3._hat(phi), rho[..., :, None]], axis=-1)
    return mx.concatenate([top, mx.zeros((*top.shape[:-2], 1, 4), dtype=top.dtype)], axis=-2)


def _vee(m: mx.array) -> mx.array:
    return mx.concatenate([m[..., :3, 3], so3._vee(m[..., :3, :3])], axis=-1)


@compiled
def _exp_pure(xi: mx.array) -> mx.array:
    rho, phi = _split(xi)
    a = sc.angle_of(phi)
    b = sc.one_minus_cos_over_t2(a)
    t2 = mx.where(a.small, a.t2_small, a.t2)
    r = so3._hat_poly(1.0 - b * t2, sc.sin_over_t(a), b, phi)
    t = so3._hat_poly_apply(sc.sin_over_t(a), b, sc.t_minus_sin_over_t3(a), phi, rho)
    return _from_rt(r, t)


_exp_closed = fast_path(lie_cuda.se3_exp, _exp_pure, lie_cuda.enabled)


def _exp(xi: mx.array, method: str = "closed_form") -> mx.array:
    if method == "closed_form":
        return _exp_closed(xi)
    if method == "matrix_exp":
        return linalg.matrix_exp(_hat(xi))
    raise ValueError(f"se3_exp: method must be 'closed_form' or 'matrix_exp', got {method!r}")


@compiled
def _log_pure(m: mx.array) -> mx.array:
    r, t = _rt(m)
    phi = so3._log_pure(r)
    return mx.concatenate([so3._left_jacobian_inv_apply(phi, t), phi], axis=-1)


_log = fast_path(lie_cuda.se3_log, _log_pure, lie_cuda.enabled)


def _inverse(m: mx.array) -> mx.array:
    r, t = _rt(m)
    rt = mx.swapaxes(r, -1, -2)
    return _from_rt(rt, -so3._act(rt, t))


@compiled
def _act_pure(m: mx.array, p: mx.array) -> mx.array:
    r, t = _rt(m)
    return so3._act_pure(r, p) + t


_act = fast_path(lie_cuda.se3_act, _act_pure, lie_cuda.act_enabled)


def _adjoint(m: mx.array) -> mx.array:
    r, t = _rt(m)
    return _blocks(r, linalg.matmul(so3._hat(t), r), mx.zeros_like(r), r)


def _q_block(rho: mx.array, phi: mx.array) -> mx.array:
    """Off-diagonal block of the SE(3) left Jacobian (Barfoot 2024, eq. 7.86; Barfoot and Furgale, IEEE T-RO 30(3), 2014).

    Q = rho^/2 + C (p r + r p + p r p) + E (p p r + r p p - 3 p r p) + (E + 3F)/2 (p r p p + p p r p)
    with p = hat(phi), r = hat(rho); E, F are the series-safe coefficients of _scalar.
    """
    a = sc.angle_of(phi)
    c, e, f = sc.t_minus_sin_over_t3(a), sc.cos_rest_over_t4(a), sc.sin_rest_over_t5(a)
    p, q = so3._hat(phi), so3._hat(rho)
    mm = linalg.matmul
    pq, qp = mm(p, q), mm(q, p)
    pqp = mm(pq, p)
    c, e, g = c[..., None, None], e[..., None, None], 0.5 * (e + 3.0 * f)[..., None, None]
    return 0.5 * q + c * (pq + qp + pqp) + e * (mm(p, pq) + mm(qp, p) - 3.0 * pqp) + g * (mm(pqp, p) + mm(p, pqp))


def _jacobian(xi: mx.array, sign: float) -> mx.array:
    rho, phi = _split(sign * xi)
    j = so3._jacobian(phi, 1.0)
    return _blocks(j, _q_block(rho, phi), mx.zeros_like(j), j)


def _jacobian_inv(xi: mx.array, sign: float) -> mx.array:
    rho, phi = _split(sign * xi)
    ji = so3._jacobian_inv(phi, 1.0)
    off = -linalg.matmul(linalg.matmul(ji, _q_block(rho, phi)), ji)
    return _blocks(ji, off, mx.zeros_like(ji), ji)


def se3_hat(xi) -> mx.array:
    """(*, 6) [rho, phi] -> (*, 4, 4) ``[[hat(phi), rho], [0, 0]]``.

    >>> se3_hat(mx.arange(6.0)).shape
    (4, 4)
    """
    return so3._single(_hat, xi, (6,), "xi")


def se3_vee(m) -> mx.array:
    """Inverse of :func:`se3_hat`: (*, 4, 4) -> (*, 6) [rho, phi].

    >>> se3_vee(se3_hat(mx.arange(6.0))).tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    return so3._single(_vee, m, (4, 4), "m")


def se3_exp(xi, method: str = "closed_form") -> mx.array:
    """Pose of the twist xi = [rho, phi]: (*, 6) -> (*, 4, 4).

    ``method="closed_form"``: ``[[exp(phi), J_l(phi) rho], [0, 1]]`` with float32-safe
    Taylor branches (Barfoot 2024, eq. 7.83). ``method="matrix_exp"``:
    ``linalg.matrix_exp(se3_hat(xi))`` (slower; a cross-check).

    >>> se3_exp(mx.array([1.0, 2.0, 3.0, 0.0, 0.0, 0.0]))[:3, 3].tolist()
    [1.0, 2.0, 3.0]
    """
    return so3._single(lambda xi: _exp(xi, method), xi, (6,), "xi")


def se3_log(m) -> mx.array:
    """Twist of a pose: (*, 4, 4) -> (*, 6) [rho, phi], rotation angle in [0, pi].

    ``phi = so3_log(R)`` (stable near pi), ``rho = J_l(phi)^-1 t`` (Barfoot 2024, eq. 7.38),
    with cot(t/2) taken from the half angle so it stays finite at pi.

    >>> xi = mx.array([0.1, 0.2, 0.3, 0.4, -0.5, 0.6])
    >>> bool(mx.allclose(se3_log(se3_exp(xi)), xi, atol=1e-5))
    True
    """
    return so3._single(_log, m, (4, 4), "T")


def se3_inverse(m) -> mx.array:
    """Inverse pose ``[[R^T, -R^T t], [0, 1]]`` of (*, 4, 4).

    >>> se3_inverse(mx.eye(4)).shape
    (4, 4)
    """
    return so3._single(_inverse, m, (4, 4), "T")


def se3_compose(a, b) -> mx.array:
    """Product a b of poses (*, 4, 4) (apply b first), batch dims broadcast.

    >>> se3_compose(mx.eye(4), mx.eye(4)).shape
    (4, 4)
    """
    return so3._pair(linalg.matmul, a, b, ((4, 4), (4, 4)), ("a", "b"))


def se3_act(m, p) -> mx.array:
    """Transform points: T (*, 4, 4), p (*, 3) -> R p + t (*, 3).

    Batch dims broadcast with numpy rules; for N points per pose pass ``T[..., None, :, :]``
    against p (*, N, 3).

    >>> se3_act(mx.eye(4), mx.ones((5, 3))).shape
    (5, 3)
    """
    return so3._pair(_act, m, p, ((4, 4), (3,)), ("T", "p"))


def se3_adjoint(m) -> mx.array:
    """Adjoint (*, 4, 4) -> (*, 6, 6) ``[[R, hat(t) R], [0, R]]`` for [rho, phi] twists.

    >>> se3_adjoint(mx.eye(4)).shape
    (6, 6)
    """
    return so3._single(_adjoint, m, (4, 4), "T")


def se3_left_jacobian(xi) -> mx.array:
    """Left Jacobian (*, 6) -> (*, 6, 6) ``[[J_l(phi), Q(rho, phi)], [0, J_l(phi)]]``.

    ``exp(xi + d) ~= exp(J_l(xi) d) exp(xi)`` (Barfoot 2024, eq. 7.85-7.86).

    >>> se3_left_jacobian(mx.zeros(6)).shape
    (6, 6)
    """
    return so3._single(lambda xi: _jacobian(xi, 1.0), xi, (6,), "xi")


def se3_right_jacobian(xi) -> mx.array:
    """Right Jacobian J_r(xi) = J_l(-xi): ``exp(xi + d) ~= exp(xi) exp(J_r(xi) d)``.

    >>> se3_right_jacobian(mx.zeros(6)).shape
    (6, 6)
    """
    return so3._single(lambda xi: _jacobian(xi, -1.0), xi, (6,), "xi")


def se3_left_jacobian_inv(xi) -> mx.array:
    """J_l(xi)^-1 = [[J^-1, -J^-1 Q J^-1], [0, J^-1]] (Barfoot 2024, eq. 7.95); |phi| < 2 pi.

    >>> se3_left_jacobian_inv(mx.zeros(6)).shape
    (6, 6)
    """
    return so3._single(lambda xi: _jacobian_inv(xi, 1.0), xi, (6,), "xi")


def se3_right_jacobian_inv(xi) -> mx.array:
    """J_r(xi)^-1 = J_l(-xi)^-1; |phi| < 2 pi.

    >>> se3_right_jacobian_inv(mx.zeros(6)).shape
    (6, 6)
    """
    return so3._single(lambda xi: _jacobian_inv(xi, -1.0), xi, (6,), "xi")


def se3_from_rt(r, t) -> mx.array:
    """Pose (*, 4, 4) from R (*, 3, 3) and t (*, 3) (batch dims broadcast).

    >>> se3_from_rt(mx.eye(3), mx.ones(3))[:3, 3].tolist()
    [1.0, 1.0, 1.0]
    """
    return so3._pair(_from_rt, r, t, ((3, 3), (3,)), ("R", "t"))
