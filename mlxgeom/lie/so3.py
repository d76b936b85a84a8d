"""SO(3): rotations as (*, 3, 3) matrices, tangent vectors phi (*, 3) (radians, axis * angle).

Conventions (Sola, Deray, Atchuthan, "A micro Lie theory for state estimation in robotics",
arXiv:1812.01537; Barfoot, "State Estimation for Robotics", 2nd ed. 2024, sec. 7.1):

- ``hat(phi) p = phi x p``; ``exp(phi) = I + A hat + B hat^2`` (Rodrigues) with
  A = sin t / t, B = (1 - cos t) / t^2, t = |phi|.
- Left Jacobian: ``exp(phi + d) ~= exp(J_l(phi) d) exp(phi)``; right Jacobian:
  ``exp(phi + d) ~= exp(phi) exp(J_r(phi) d)``, ``J_r(phi) = J_l(-phi)``.
- ``log`` returns the angle in [0, pi]. It goes through a Shepperd/Markley quaternion
  (the largest of 4 candidate square roots), then ``2 atan2(|v|, w) v / |v|``: no acos of
  the trace, exact near 0 and stable at pi (peers' failures: kornia #4404, pytorch3d #188).

Batch dims broadcast with numpy rules between arguments; the products are written
elementwise (``linalg.matmul``), never as TF32 matmuls.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import linalg
from .._checks import as_checked, as_floats, cast_out, check_batch, check_trailing
from .._compiled import compiled
from .._cuda import fast_path
from . import _scalar as sc
from . import lie_cuda


def _hat(phi: mx.array) -> mx.array:
    x, y, z = phi[..., 0], phi[..., 1], phi[..., 2]
    o = mx.zeros_like(x)
    m = mx.stack([o, -z, y, z, o, -x, -y, x, o], axis=-1)
    return m.reshape(*m.shape[:-1], 3, 3)


def _vee(m: mx.array) -> mx.array:
    # Antisymmetric part, so a slightly non-skew input gives its nearest skew matrix.
    return 0.5 * mx.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]],
                          axis=-1)


def cross(a: mx.array, b: mx.array) -> mx.array:
    """a x b for (*, 3) vectors (broadcasting)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return mx.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _single(op: Any, x: Any, trailing: tuple, name: str) -> mx.array:
    """``op(x)`` of one input with the given trailing shape, in the compute dtype and cast back: the
    checks every one-argument verb of the groups shares (as :func:`_pair` for two)."""
    x, out = as_checked(x, trailing, name)
    return cast_out(op(x), out)


def _pair(op: Any, a: Any, b: Any, trailing: tuple, names: tuple[str, str]) -> mx.array:
    """``op(a, b)`` of two inputs with the given trailing shapes and broadcasting batch dims, in the
    compute dtype and cast back: the checks every two-argument verb of the groups shares."""
    (a, b), out = as_floats(a, b, names=names)
    for x, shape, name in zip((a, b), trailing, names):
        check_trailing(x, shape, name)
    check_batch((names[0], a, len(trailing[0])), (names[1], b, len(trailing[1])))
    return cast_out(op(a, b), out)


def _hat_poly(c0: mx.array, c1: Any, c2: mx.array, phi: mx.array) -> mx.array:
    """c0 I + c1 hat(phi) + c2 phi phi^T (*, 3, 3) for coefficients (*) (c1 may be a float):
    every SO(3) closed form has this shape (hat^2 = phi phi^T - t^2 I). Written entry by
    entry, one stack at the end, so that it fuses into one kernel."""
    x, y, z = phi[..., 0], phi[..., 1], phi[..., 2]
    cx, cy, cz = c2 * x, c2 * y, c2 * z
    sx, sy, sz = c1 * x, c1 * y, c1 * z
    m = mx.stack([c0 + cx * x, cx * y - sz, cx * z + sy,
                  cx * y + sz, c0 + cy * y, cy * z - sx,
                  cx * z - sy, cy * z + sx, c0 + cz * z], axis=-1)
    return m.reshape(*m.shape[:-1], 3, 3)


def _hat_poly_apply(c0: mx.array, c1: Any, c2: mx.array, phi: mx.array, v: mx.array) -> mx.array:
    """(c0 I + c1 hat(phi) + c2 phi phi^T) v (*, 3) without forming the matrix; c0, c1, c2 (*)."""
    dot = phi[..., 0] * v[..., 0] + phi[..., 1] * v[..., 1] + phi[..., 2] * v[..., 2]
    c1 = c1[..., None] if isinstance(c1, mx.array) else c1
    return c0[..., None] * v + c1 * cross(phi, v) + (c2 * dot)[..., None] * phi


@compiled
def _exp_pure(phi: mx.array) -> mx.array:
    a = sc.angle_of(phi)
    b = sc.one_minus_cos_over_t2(a)
    t2 = mx.where(a.small, a.t2_small, a.t2)
    return _hat_poly(1.0 - b * t2, sc.sin_over_t(a), b, phi)


_exp = fast_path(lie_cuda.so3_exp, _exp_pure, lie_cuda.enabled)


def _jacobian(phi: mx.array, sign: float) -> mx.array:
    # J_l = A I + B hat + C phi phi^T (Barfoot eq. 7.37 with hat^2 expanded); J_r flips hat.
    a = sc.angle_of(phi)
    return _hat_poly(sc.sin_over_t(a), sign * sc.one_minus_cos_over_t2(a), sc.t_minus_sin_over_t3(a), phi)


def _jacobian_inv_coeffs(phi: mx.array) -> tuple[mx.array, mx.array]:
    # J_l^-1 = I - hat/2 + D hat^2 = (1 - D t^2) I - hat/2 + D phi phi^T (Barfoot eq. 7.38).
    a = sc.angle_of(phi)
    d = sc.inverse_jacobian_coeff(a)
    t2 = mx.where(a.small, a.t2_small, a.t2)
    return 1.0 - d * t2, d


def _jacobian_inv(phi: mx.array, sign: float) -> mx.array:
    c0, d = _jacobian_inv_coeffs(phi)
    return _hat_poly(c0, -0.5 * sign, d, phi)


def _left_jacobian_inv_apply(phi: mx.array, v: mx.array) -> mx.array:
    c0, d = _jacobian_inv_coeffs(phi)
    return _hat_poly_apply(c0, -0.5, d, phi, v)


def _quaternion_wxyz(r: mx.array) -> mx.array:
    """Shepperd (J. Guidance 1(3), 1978) / Markley (J. Guidance 31(2), 2008): unit q, w >= 0.

    Of the four candidates 4w^2, 4x^2, 4y^2, 4z^2 (which sum to 4 for any R) the largest
    (>= 1) is the square root taken, so no branch divides by a small number. The others are
    clamped to >= 1 so that their (discarded) gradients stay finite. The pick is a chain of
    elementwise selects (the first of equal candidates wins), so it fuses under compile.
    """
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    d = (1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22)
    s = [mx.sqrt(mx.maximum(di, 1.0)) for di in d]
    k = (r21 - r12, r02 - r20, r10 - r01, r01 + r10, r02 + r20, r12 + r21)
    rows = ((s[0] * s[0], k[0], k[1], k[2]), (k[0], s[1] * s[1], k[3], k[4]),
            (k[1], k[3], s[2] * s[2], k[5]), (k[2], k[4], k[5], s[3] * s[3]))
    cands = [[c / (2 * si) for c in row] for row, si in zip(rows, s)]
    q, top = cands[0], mx.stop_gradient(d[0])
    for di, cand in zip(d[1:], cands[1:]):
        take = mx.stop_gradient(di) > top
        q = [mx.where(take, c, qc) for c, qc in zip(cand, q)]
        top = mx.maximum(top, mx.stop_gradient(di))
    q = mx.stack(q, axis=-1)
    q = mx.where(q[..., :1] < 0, -q, q)
    return q / mx.sqrt(sc.norm2(q))[..., None]


@compiled
def _log_pure(r: mx.array) -> mx.array:
    q = _quaternion_wxyz(r)
    return sc.half_angle_ratio(sc.norm2(q[..., 1:]), q[..., 0])[..., None] * q[..., 1:]


_log = fast_path(lie_cuda.so3_log, _log_pure, lie_cuda.enabled)


@compiled
def _act_pure(r: mx.array, p: mx.array) -> mx.array:
    return linalg.matmul(r, p[..., None])[..., 0]


_act = fast_path(lie_cuda.so3_act, _act_pure, lie_cuda.act_enabled)


def so3_hat(phi) -> mx.array:
    """Skew matrix of phi: (*, 3) -> (*, 3, 3), ``hat(phi) p = phi x p``.

    >>> so3_hat(mx.array([1.0, 2.0, 3.0]))[0].tolist()
    [0.0, -3.0, 2.0]
    """
    return _single(_hat, phi, (3,), "phi")


def so3_vee(m) -> mx.array:
    """Inverse of :func:`so3_hat`: (*, 3, 3) -> (*, 3), from the antisymmetric part of m.

    >>> so3_vee(so3_hat(mx.array([1.0, 2.0, 3.0]))).tolist()
    [1.0, 2.0, 3.0]
    """
    return _single(_vee, m, (3, 3), "m")


def so3_exp(phi) -> mx.array:
    """Rotation matrix of the rotation vector phi (Rodrigues): (*, 3) -> (*, 3, 3).

    phi = angle * unit axis in radians (= scipy ``Rotation.from_rotvec``, ``cv2.Rodrigues``).
    ``R = I + (sin t / t) hat + (2 sin^2(t/2) / t^2) hat^2`` with Taylor series for t < 1
    (float32 max error ~2e-7, float64 ~1e-15). Gradients are exact, also at phi = 0.

    >>> R = so3_exp(mx.array([0.0, 0.0, 1.5707964]))
    >>> [round(v, 5) + 0.0 for v in R[0].tolist()]
    [0.0, -1.0, 0.0]
    """
    return _single(_exp, phi, (3,), "phi")


def so3_log(r) -> mx.array:
    """Rotation vector of a rotation matrix: (*, 3, 3) -> (*, 3), angle in [0, pi].

    Via the Shepperd/Markley quaternion and ``2 atan2(|v|, w) v / |v|`` (series for small
    |v|/w): exact near the identity, stable near and at pi (at exactly pi the sign of the
    axis is arbitrary). Input is assumed orthonormal (the quaternion is renormalised).

    >>> [round(v, 5) for v in so3_log(so3_exp(mx.array([0.1, -0.2, 0.3]))).tolist()]
    [0.1, -0.2, 0.3]
    """
    return _single(_log, r, (3, 3), "R")


def so3_inverse(r) -> mx.array:
    """Inverse (transpose) of rotations (*, 3, 3).

    >>> so3_inverse(mx.eye(3)).shape
    (3, 3)
    """
    return _single(lambda r: mx.swapaxes(r, -1, -2), r, (3, 3), "R")


def so3_compose(a, b) -> mx.array:
    """Product a b of rotations (*, 3, 3), batch dims broadcast.

    >>> so3_compose(mx.eye(3), mx.eye(3)).shape
    (3, 3)
    """
    return _pair(linalg.matmul, a, b, ((3, 3), (3, 3)), ("a", "b"))


def so3_act(r, p) -> mx.array:
    """Rotate points: R (*, 3, 3), p (*, 3) -> R p (*, 3).

    The batch dims of R and p broadcast with numpy rules; to rotate N points per rotation
    pass ``R[..., None, :, :]`` against p (*, N, 3).

    >>> so3_act(mx.eye(3), mx.ones((5, 3))).shape
    (5, 3)
    """
    return _pair(_act, r, p, ((3, 3), (3,)), ("R", "p"))


def so3_left_jacobian(phi) -> mx.array:
    """Left Jacobian J_l(phi) (*, 3) -> (*, 3, 3): ``exp(phi + d) ~= exp(J_l d) exp(phi)``.

    ``J_l = (sin t / t) I + ((1 - cos t)/t^2) hat + ((t - sin t)/t^3) phi phi^T`` (Barfoot 2024, eq. 7.37).

    >>> so3_left_jacobian(mx.zeros(3)).tolist()[0]
    [1.0, 0.0, 0.0]
    """
    return _single(lambda phi: _jacobian(phi, 1.0), phi, (3,), "phi")


def so3_right_jacobian(phi) -> mx.array:
    """Right Jacobian J_r(phi) = J_l(-phi): ``exp(phi + d) ~= exp(phi) exp(J_r d)``.

    >>> so3_right_jacobian(mx.zeros(3)).shape
    (3, 3)
    """
    return _single(lambda phi: _jacobian(phi, -1.0), phi, (3,), "phi")


def so3_left_jacobian_inv(phi) -> mx.array:
    """J_l(phi)^-1 = I - hat/2 + (1/t^2 - cot(t/2)/(2t)) hat^2 (Barfoot 2024, eq. 7.38).

    Defined for |phi| < 2 pi (singular at 2 pi).

    >>> so3_left_jacobian_inv(mx.zeros(3)).tolist()[1]
    [0.0, 1.0, 0.0]
    """
    return _single(lambda phi: _jacobian_inv(phi, 1.0), phi, (3,), "phi")


def so3_right_jacobian_inv(phi) -> mx.array:
    """J_r(phi)^-1 = J_l(-phi)^-1 = I + hat/2 + D hat^2; defined for |phi| < 2 pi.

    >>> so3_right_jacobian_inv(mx.zeros(3)).shape
    (3, 3)
    """
    return _single(lambda phi: _jacobian_inv(phi, -1.0), phi, (3,), "phi")
