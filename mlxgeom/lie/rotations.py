"""Conversions between rotation matrices and quaternions, rotation vectors, Euler angles, 6D.

Quaternions are ``wxyz`` by default (``order="xyzw"`` for scipy / ROS), Hamilton
convention (scipy's), and :func:`matrix_to_quaternion` returns the representative with
w >= 0. Euler sequences are scipy's strings: upper case intrinsic ("XYZ": R = Rx Ry Rz),
lower case extrinsic ("xyz": R = Rz Ry Rx), radians.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .. import linalg
from .._checks import as_checked, cast_out
from . import _scalar as sc
from . import so3
from .._vmap import any_of
from .so3 import so3_exp as rotvec_to_matrix
from .so3 import so3_log as matrix_to_rotvec

__all__ = [
    "euler_to_matrix", "matrix_to_euler", "matrix_to_quaternion", "matrix_to_rotvec", "matrix_to_sixd",
    "quaternion_to_matrix", "rotvec_to_matrix", "sixd_to_matrix",
]

_ORDERS = ("wxyz", "xyzw")
_EULER_EPS = 1e-7  # scipy's gimbal-lock threshold on the middle angle


def _check_order(order: str) -> None:
    if order not in _ORDERS:
        raise ValueError(f"order must be 'wxyz' or 'xyzw', got {order!r}")


def _quaternion_to_matrix(q: mx.array) -> mx.array:
    # Divide by the largest |q_i| first, so |q|^2 lies in [1, 4]: the squared norm of a
    # quaternion scaled by 1e20 overflows float32 and one scaled by 1e-20 underflows to 0.
    # The rotation does not depend on the scale. The max is a stop-gradient scale: the
    # result's gradient comes through the (scale-invariant) formula below.
    m = mx.stop_gradient(mx.max(mx.abs(q), axis=-1, keepdims=True))
    big = m > 0
    q = q / mx.where(big, m, 1.0)
    # s = 2 / |q|^2 makes the formula valid for non-unit q; a zero q gives the identity.
    # Double where: 2 / max(n2, tiny) would put -2 / tiny^2 = -inf (times a zero cotangent:
    # NaN) into the gradient at q = 0.
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    n2 = mx.sum(q * q, axis=-1)
    nonzero = n2 >= mx.finfo(q.dtype).smallest_normal
    s = mx.where(nonzero, 2.0 / mx.where(nonzero, n2, 1.0), 0.0)
    xx, yy, zz, xy, xz, yz = s * x * x, s * y * y, s * z * z, s * x * y, s * x * z, s * y * z
    wx, wy, wz = s * w * x, s * w * y, s * w * z
    m = mx.stack(
        [1 - yy - zz, xy - wz, xz + wy, xy + wz, 1 - xx - zz, yz - wx, xz - wy, yz + wx, 1 - xx - yy], axis=-1
    )
    return m.reshape(*m.shape[:-1], 3, 3)


def quaternion_to_matrix(q, order: str = "wxyz") -> mx.array:
    """Rotation matrices (*, 3, 3) of quaternions (*, 4) (normalised first, as scipy does).

    Any scale works: the quaternion is divided by its largest entry before its norm is taken,
    so ``1e20 q`` and ``1e-20 q`` give the rotation of ``q`` in float32. A zero quaternion (no
    rotation defined) maps to the identity.

    >>> quaternion_to_matrix(mx.array([1.0, 0.0, 0.0, 0.0])).tolist()[0]
    [1.0, 0.0, 0.0]
    """
    _check_order(order)
    wxyz = (lambda q: q) if order == "wxyz" else (lambda q: mx.concatenate([q[..., 3:], q[..., :3]], axis=-1))
    return so3._single(lambda q: _quaternion_to_matrix(wxyz(q)), q, (4,), "q")


def matrix_to_quaternion(r, order: str = "wxyz") -> mx.array:
    """Unit quaternions (*, 4) with w >= 0 of rotation matrices (*, 3, 3).

    Shepperd's method (J. Guidance and Control 1(3), 1978; Markley, J. Guidance 31(2), 2008):
    the largest of |w|, |x|, |y|, |z| comes from a square root, the others from
    off-diagonal sums, so nothing is lost near angle pi.

    >>> matrix_to_quaternion(mx.eye(3)).tolist()
    [1.0, 0.0, 0.0, 0.0]
    """
    _check_order(order)
    ordered = (lambda q: q) if order == "wxyz" else (lambda q: mx.concatenate([q[..., 1:], q[..., :1]], axis=-1))
    return so3._single(lambda r: ordered(so3._quaternion_wxyz(r)), r, (3, 3), "R")


def _parse_seq(seq: str) -> tuple[list[int], bool]:
    if not isinstance(seq, str) or len(seq) != 3:
        raise ValueError(f"seq must be 3 axes such as 'xyz' or 'ZYX', got {seq!r}")
    intrinsic = all(c in "XYZ" for c in seq)
    if not (intrinsic or all(c in "xyz" for c in seq)):
        raise ValueError(f"seq must be all upper case (intrinsic) or all lower case (extrinsic) x/y/z, got {seq!r}")
    if seq[0] == seq[1] or seq[1] == seq[2]:
        raise ValueError(f"seq: consecutive axes must differ, got {seq!r}")
    return ["xyz".index(c) for c in seq.lower()], intrinsic


def _axis_rotation(axis: int, angle: mx.array) -> mx.array:
    s, c = sc.sin_cos(angle)
    o, one = mx.zeros_like(angle), mx.ones_like(angle)
    rows = {
        0: [one, o, o, o, c, -s, o, s, c],
        1: [c, o, s, o, one, o, -s, o, c],
        2: [c, -s, o, s, c, o, o, o, one],
    }[axis]
    m = mx.stack(rows, axis=-1)
    return m.reshape(*m.shape[:-1], 3, 3)


def euler_to_matrix(angles, seq: str) -> mx.array:
    """Rotation matrices (*, 3, 3) of Euler angles (*, 3) in radians, scipy ``from_euler``.

    "XYZ" (intrinsic): R = Rx(a0) Ry(a1) Rz(a2); "xyz" (extrinsic): R = Rz(a2) Ry(a1) Rx(a0).

    >>> R = euler_to_matrix(mx.array([0.0, 0.0, 1.5707964]), "xyz")
    >>> [round(v, 5) + 0.0 for v in R[1].tolist()]
    [1.0, 0.0, 0.0]
    """
    axes, intrinsic = _parse_seq(seq)
    angles, out = as_checked(angles, (3,), "angles")
    mats = [_axis_rotation(ax, angles[..., i]) for i, ax in enumerate(axes)]
    if not intrinsic:
        mats = mats[::-1]
    return cast_out(linalg.matmul(linalg.matmul(mats[0], mats[1]), mats[2]), out)


def _safe_atan2(y: mx.array, x: mx.array, degenerate: mx.array) -> mx.array:
    # Where the value is unused (degenerate), feed (0, 1) so the gradient stays finite.
    return mx.arctan2(mx.where(degenerate, 0.0, y), mx.where(degenerate, 1.0, x))


def _safe_hypot(a: mx.array, b: mx.array) -> mx.array:
    h2 = a * a + b * b
    zero = h2 == 0
    return mx.where(zero, 0.0, mx.sqrt(mx.where(zero, 1.0, h2)))


def _euler_from_quaternion(q: mx.array, axes: list[int], intrinsic: bool) -> mx.array:
    """Bernardes and Viollet, "Quaternion to Euler angles conversion", PLoS ONE 17(11), 2022."""
    i, j, k = axes[::-1] if intrinsic else axes
    proper = i == k
    if proper:
        k = 3 - i - j
    sign = (i - j) * (j - k) * (k - i) // 2
    w, v = q[..., 0], [q[..., 1], q[..., 2], q[..., 3]]
    if proper:
        a, b, c, d = w, v[i], v[j], v[k] * sign
    else:
        a, b, c, d = w - v[j], v[i] + v[k] * sign, v[j] + w, v[k] * sign - v[i]
    hab, hcd = _safe_hypot(a, b), _safe_hypot(c, d)
    middle = 2.0 * mx.arctan2(hcd, hab)
    near0 = mx.abs(middle) <= _EULER_EPS
    near_pi = mx.abs(middle - math.pi) <= _EULER_EPS
    half_sum = _safe_atan2(b, a, near_pi)
    half_diff = _safe_atan2(d, c, near0)
    # Slots as scipy fills them: in gimbal lock slot 0 holds the lock angle, the rest 0.
    slots = [mx.where(near0, 2.0 * half_sum, 2.0 * half_diff * (1.0 if intrinsic else -1.0)), middle, mx.zeros_like(middle)]
    regular = ~any_of(near0, near_pi)
    first_idx, third_idx = (2, 0) if intrinsic else (0, 2)
    slots[first_idx] = mx.where(regular, half_sum - half_diff, slots[first_idx])
    third = mx.where(regular, half_sum + half_diff, slots[third_idx])
    if not proper:
        third = third * sign
        slots[1] = middle - math.pi / 2
    slots[third_idx] = third
    # Wrap the outer angles to [-pi, pi); the middle one is already in range (and may be pi).
    wrap = [mx.remainder(a + math.pi, 2 * math.pi) - math.pi for a in (slots[0], slots[2])]
    return mx.stack([wrap[0], slots[1], wrap[1]], axis=-1)


def matrix_to_euler(r, seq: str) -> mx.array:
    """Euler angles (*, 3) in radians of rotation matrices (*, 3, 3), as scipy ``as_euler``.

    The outer angles lie in [-pi, pi) (the middle one in [0, pi] for proper Euler sequences such as
    "zxz", in [-pi/2, pi/2] for Tait-Bryan ones). In gimbal lock (middle angle within 1e-7
    of its limits) the third angle is set to 0, as scipy does (without its warning).
    Method: Bernardes and Viollet, PLoS ONE 17(11), 2022, on the Shepperd quaternion.

    >>> [round(v, 4) for v in matrix_to_euler(euler_to_matrix(mx.array([0.1, 0.2, 0.3]), "ZYX"), "ZYX").tolist()]
    [0.1, 0.2, 0.3]
    """
    axes, intrinsic = _parse_seq(seq)
    return so3._single(lambda r: _euler_from_quaternion(so3._quaternion_wxyz(r), axes, intrinsic), r, (3, 3), "R")


def _normalize(v: mx.array) -> mx.array:
    n2 = mx.sum(v * v, axis=-1, keepdims=True)
    return v / mx.sqrt(mx.maximum(n2, mx.finfo(v.dtype).smallest_normal))


def sixd_to_matrix(x) -> mx.array:
    """Rotation matrices (*, 3, 3) from the 6D representation (*, 6) (Zhou et al., CVPR 2019).

    x = [a1, a2] are the first two COLUMNS of R before Gram-Schmidt: b1 = a1/|a1|,
    b2 = normalise(a2 - (b1.a2) b1), b3 = b1 x b2, R = [b1 b2 b3]. (pytorch3d uses rows.)

    >>> sixd_to_matrix(mx.array([2.0, 0, 0, 1, 3, 0])).tolist()[1]
    [0.0, 1.0, 0.0]
    """
    x, out = as_checked(x, (6,), "x")
    b1 = _normalize(x[..., :3])
    a2 = x[..., 3:]
    b2 = _normalize(a2 - mx.sum(b1 * a2, axis=-1, keepdims=True) * b1)
    b3 = so3.cross(b1, b2)
    return cast_out(mx.stack([b1, b2, b3], axis=-1), out)


def matrix_to_sixd(r) -> mx.array:
    """The 6D representation (*, 6): the first two columns of R, concatenated.

    >>> matrix_to_sixd(mx.eye(3)).tolist()
    [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    """
    return so3._single(lambda r: mx.concatenate([r[..., :, 0], r[..., :, 1]], axis=-1), r, (3, 3), "R")
