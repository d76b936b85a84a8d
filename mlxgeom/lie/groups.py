"""Classes ``SO3``, ``SE3``, ``SL3``: immutable wrappers of a batch of matrices.

Each is a ``NamedTuple`` with the single field ``matrix`` (so it crosses ``mx.grad``,
``mx.vmap`` and ``mx.compile``, which walk tuples) plus the shared verbs of
:class:`MatrixLieGroup`, written once over each group's functional core
(``so3_*``, ``se3_*``, ``sl3_*``). Design after jaxlie's ``_base.py`` and Sophus.

Perturbations are RIGHT everywhere (Sola et al., arXiv:1812.01537, eq. 25-26):
``x.rplus(d) = x @ exp(d)`` and ``x.rminus(y) = log(y^-1 @ x)``, so
``y.rplus(x.rminus(y)) == x``; optimisers update ``X <- X exp(d)``.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, NamedTuple, Sequence, TypeVar

import mlx.core as mx

from .. import linalg
from .._checks import as_checked, as_floats, cast_out, check_batch
from .._indexing import take
from . import rotations, se3, sl3, so3

G = TypeVar("G", bound="MatrixLieGroup")


class _Ops(NamedTuple):
    exp: Callable[..., mx.array]
    log: Callable[..., mx.array]
    inverse: Callable[..., mx.array]
    compose: Callable[..., mx.array]
    act: Callable[..., mx.array]
    adjoint: Callable[..., mx.array]
    left_jacobian: Callable[..., mx.array]
    right_jacobian: Callable[..., mx.array]

    @classmethod
    def of(cls, module: Any, prefix: str, **given: Callable[..., mx.array]) -> "_Ops":
        """The functional core's ``{prefix}_{verb}`` of every verb not ``given``."""
        return cls(*(given.get(v) or getattr(module, f"{prefix}_{v}") for v in cls._fields))


class MatrixLieGroup:
    """Shared verbs of the matrix Lie groups (mixin; subclasses are NamedTuples of ``matrix``).

    Class attributes: ``matrix_size`` (n of the (*, n, n) matrix), ``tangent_dim`` and
    ``_ops`` (the functional core). All batch dims broadcast with numpy rules.

    >>> x = SE3.exp(mx.array([[0.1, 0.2, 0.3, 0.4, -0.5, 0.6]]))
    >>> y = SE3.identity((1,)).rplus(x.log())
    >>> x.batch_shape, x.dtype, x.inverse().adjoint().shape, bool(mx.abs(x.rminus(y)).max() < 1e-5)
    ((1,), mlx.core.float32, (1, 6, 6), True)
    >>> SO3.left_jacobian(mx.zeros(3)).tolist() == SO3.right_jacobian(mx.zeros(3)).tolist() == mx.eye(3).tolist()
    True
    >>> mid = SE3.interpolate(SE3.identity(), SE3.exp(mx.array([2.0, 0, 0, 0, 0, 0])), 0.5)
    >>> mid.translation.tolist(), SE3(mx.stack([mid.matrix, mid.matrix])).mean().translation.tolist()
    ([1.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    """

    __slots__ = ()
    matrix: mx.array
    matrix_size: ClassVar[int]
    tangent_dim: ClassVar[int]
    _ops: ClassVar[_Ops]

    @classmethod
    def exp(cls: type[G], tangent: Any) -> G:
        """Group element exp(tangent), tangent (*, tangent_dim)."""
        return cls(cls._ops.exp(tangent))

    def log(self) -> mx.array:
        """Tangent (*, tangent_dim) with exp(log(x)) == x."""
        return self._ops.log(self.matrix)

    def inverse(self: G) -> G:
        """Group inverse, matrix (*, n, n)."""
        return type(self)(self._ops.inverse(self.matrix))

    def __matmul__(self, other: Any) -> Any:
        """``x @ y`` composes (same group); ``x @ p`` acts on points p (*, 3)."""
        if isinstance(other, MatrixLieGroup):
            if type(other) is not type(self):
                raise TypeError(f"cannot compose {type(self).__name__} with {type(other).__name__}")
            return type(self)(self._ops.compose(self.matrix, other.matrix))
        return self._ops.act(self.matrix, other)

    def adjoint(self) -> mx.array:
        """Adjoint matrix (*, tangent_dim, tangent_dim): ``x exp(d) x^-1 = exp(Ad(x) d)``."""
        return self._ops.adjoint(self.matrix)

    @classmethod
    def identity(cls: type[G], batch_shape: Sequence[int] = (), dtype: mx.Dtype = mx.float32) -> G:
        """Identity elements (*batch_shape, n, n)."""
        n = cls.matrix_size
        return cls(mx.broadcast_to(mx.eye(n, dtype=dtype), (*batch_shape, n, n)))

    @classmethod
    def left_jacobian(cls, tangent: Any) -> mx.array:
        """J_l(tangent) (*, tangent_dim, tangent_dim): ``exp(t + d) ~= exp(J_l d) exp(t)``."""
        return cls._ops.left_jacobian(tangent)

    @classmethod
    def right_jacobian(cls, tangent: Any) -> mx.array:
        """J_r(tangent) (*, tangent_dim, tangent_dim): ``exp(t + d) ~= exp(t) exp(J_r d)`` (the one
        right updates use)."""
        return cls._ops.right_jacobian(tangent)

    def rplus(self: G, delta: Any) -> G:
        """RIGHT update ``x exp(delta)``, delta (*, tangent_dim) in the local frame of x."""
        step = type(self).exp(delta)
        check_batch(("x", self.matrix, 2), ("delta", step.matrix, 2))
        return self @ step

    def rminus(self: G, other: G) -> mx.array:
        """RIGHT difference ``log(other^-1 x)`` (*, tangent_dim): ``other.rplus(x.rminus(other)) == x``."""
        check_batch(("x", self.matrix, 2), ("other", other.matrix, 2))
        return (other.inverse() @ self).log()

    @classmethod
    def interpolate(cls: type[G], a: G, b: G, t: Any) -> G:
        """Geodesic ``a exp(t log(a^-1 b))``; t scalar or (*) broadcast with the batch."""
        # Computed in the compute dtype of all three inputs, returned in their promoted dtype.
        (ma, mb, t), out = as_floats(a.matrix, b.matrix, t, names=("a", "b", "t"))
        check_batch(("a", ma, 2), ("b", mb, 2), ("t", t, 0))
        a, b = cls(ma), cls(mb)
        return cls(cast_out(a.rplus(t[..., None] * b.rminus(a)).matrix, out))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading dims of ``matrix``."""
        return tuple(self.matrix.shape[:-2])

    @property
    def dtype(self) -> mx.Dtype:
        """dtype of ``matrix``."""
        return self.matrix.dtype

    def _chordal(self: G, axis: int) -> G:
        raise ValueError(f"{type(self).__name__}.mean: method 'chordal' is not defined for this group; use 'karcher'")

    def _take(self: G, axis: int, index: int) -> G:
        return type(self)(take(self.matrix, mx.array([index]), axis=axis).squeeze(axis))

    def mean(self: G, axis: int = 0, method: str = "chordal", iterations: int = 8) -> G:
        """Mean of the elements along batch axis ``axis``: (*) with that axis removed.

        ``"chordal"``: closed-form Euclidean mean projected back to the group (SO3, SE3;
        Hartley et al., "Rotation averaging", IJCV 103, 2013). ``"karcher"``: the
        geodesic (Frechet) mean by ``iterations`` fixed steps ``m <- m exp(mean_i log(m^-1 x_i))``,
        started from the chordal mean where defined, else from the first element.
        """
        nb = len(self.batch_shape)
        if not -nb <= axis < nb:
            raise ValueError(f"mean: axis {axis} out of range for batch shape {self.batch_shape}")
        axis = axis % nb
        if method == "chordal":
            return self._chordal(axis)
        if method != "karcher":
            raise ValueError(f"mean: method must be 'chordal' or 'karcher', got {method!r}")
        try:
            m = self._chordal(axis)
        except ValueError:
            m = self._take(axis, 0)
        cls = type(self)
        for _ in range(iterations):
            expanded = cls(mx.expand_dims(m.matrix, axis))
            m = m.rplus(mx.mean(self.rminus(expanded), axis=axis))
        return m


class _InverseJacobians:
    """Closed-form inverse Jacobians (SO3, SE3)."""

    __slots__ = ()
    _inverse_jacobians: ClassVar[tuple[Callable[..., mx.array], Callable[..., mx.array]]]

    @classmethod
    def left_jacobian_inv(cls, tangent: Any) -> mx.array:
        """J_l(tangent)^-1 (closed form, |phi| < 2 pi)."""
        return cls._inverse_jacobians[0](tangent)

    @classmethod
    def right_jacobian_inv(cls, tangent: Any) -> mx.array:
        """J_r(tangent)^-1 (closed form, |phi| < 2 pi)."""
        return cls._inverse_jacobians[1](tangent)


def _so3_adjoint(r: Any) -> mx.array:
    """Ad(R) = R on so(3) (rotation vectors), with the shape check every verb makes."""
    r, out = as_checked(r, (3, 3), "R")
    return cast_out(r, out)


class _SO3(NamedTuple):
    matrix: mx.array


class SO3(_SO3, MatrixLieGroup, _InverseJacobians):
    """Batch of rotations, ``matrix`` (*, 3, 3); tangent = rotation vector (*, 3) in radians.

    Updates are RIGHT: ``R.rplus(d) = R @ SO3.exp(d)``.

    >>> R = SO3.from_rotvec(mx.array([0.0, 0.0, 0.5]))
    >>> [round(v, 5) for v in (R @ R.inverse()).log().tolist()]
    [0.0, 0.0, 0.0]
    >>> [round(v, 5) for v in R.as_rotvec().tolist()], [round(v, 5) for v in R.as_euler("xyz").tolist()]
    ([0.0, 0.0, 0.5], [0.0, 0.0, 0.5])
    >>> S = SO3.from_quaternion(R.as_quaternion())
    >>> bool(mx.abs(S.matrix - SO3.from_euler(mx.array([0.0, 0.0, 0.5]), "xyz").matrix).max() < 1e-6)
    True
    >>> bool(mx.abs(SO3.from_6d(R.as_6d()).matrix - R.matrix).max() < 1e-6), SO3.random((5,)).batch_shape
    (True, (5,))
    """

    __slots__ = ()
    matrix_size: ClassVar[int] = 3
    tangent_dim: ClassVar[int] = 3
    _ops: ClassVar[_Ops] = _Ops.of(so3, "so3", adjoint=_so3_adjoint)
    _inverse_jacobians: ClassVar[tuple] = (so3.so3_left_jacobian_inv, so3.so3_right_jacobian_inv)

    @classmethod
    def random(cls, shape: Sequence[int] = (), key: mx.array | None = None, dtype: mx.Dtype = mx.float32) -> "SO3":
        """Haar-uniform rotations (*shape, 3, 3): normalised 4D Gaussian quaternions (Shoemake,
        Graphics Gems III, 1992)."""
        q = mx.random.normal((*shape, 4), dtype=dtype, key=key)
        return cls.from_quaternion(q)

    @classmethod
    def from_quaternion(cls, q: Any, order: str = "wxyz") -> "SO3":
        """From quaternions (*, 4), ``wxyz`` (default) or ``xyzw``."""
        return cls(rotations.quaternion_to_matrix(q, order))

    def as_quaternion(self, order: str = "wxyz") -> mx.array:
        """Unit quaternions (*, 4) with w >= 0."""
        return rotations.matrix_to_quaternion(self.matrix, order)

    @classmethod
    def from_rotvec(cls, v: Any) -> "SO3":
        """From rotation vectors (*, 3) (axis * angle, = OpenCV Rodrigues vectors)."""
        return cls.exp(v)

    def as_rotvec(self) -> mx.array:
        """Rotation vectors (*, 3), angle in [0, pi]."""
        return self.log()

    @classmethod
    def from_euler(cls, angles: Any, seq: str) -> "SO3":
        """From Euler angles (*, 3) in radians; scipy sequence strings ("XYZ" intrinsic, "xyz" extrinsic)."""
        return cls(rotations.euler_to_matrix(angles, seq))

    def as_euler(self, seq: str) -> mx.array:
        """Euler angles (*, 3) in radians, as scipy ``as_euler``."""
        return rotations.matrix_to_euler(self.matrix, seq)

    @classmethod
    def from_6d(cls, x: Any) -> "SO3":
        """From the 6D representation (*, 6) (first two columns, Zhou et al. 2019)."""
        return cls(rotations.sixd_to_matrix(x))

    def as_6d(self) -> mx.array:
        """The first two columns (*, 6)."""
        return rotations.matrix_to_sixd(self.matrix)

    @classmethod
    def from_matrix(cls, m: Any, project: bool = True) -> "SO3":
        """From (*, 3, 3) matrices, projected to the nearest rotation (``linalg.project_to_so3``).

        Checking that ``m`` is a rotation would need a host sync, so the input is made one
        instead: any matrix gives a rotation (``2 * I`` gives ``I``; a rotation comes back
        equal up to rounding). ``project=False`` stores ``m`` as it is, unchecked: only for
        matrices known to be rotations (it skips a 3x3 SVD per element).

        >>> SO3.from_matrix(2 * mx.eye(3)).matrix.tolist()[0]
        [1.0, 0.0, 0.0]
        """
        m, out = as_checked(m, (3, 3), "m")
        return cls(cast_out(linalg.project_to_so3(m) if project else m, out))

    def _chordal(self, axis: int) -> "SO3":
        return SO3(linalg.project_to_so3(mx.mean(self.matrix, axis=axis)))


class _SE3(NamedTuple):
    matrix: mx.array


class SE3(_SE3, MatrixLieGroup, _InverseJacobians):
    """Batch of rigid motions, ``matrix`` (*, 4, 4); tangent xi = [rho, phi] (*, 6).

    ``T @ p = R p + t``. Updates are RIGHT: ``T.rplus(d) = T @ SE3.exp(d)``.

    >>> T = SE3.from_rt(SO3.identity(), mx.array([1.0, 2.0, 3.0]))
    >>> (T @ mx.zeros(3)).tolist(), T.translation.tolist(), T.rotation.matrix.shape
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], (3, 3))
    >>> SE3.random((2, 5)).batch_shape
    (2, 5)
    """

    __slots__ = ()
    matrix_size: ClassVar[int] = 4
    tangent_dim: ClassVar[int] = 6
    _ops: ClassVar[_Ops] = _Ops.of(se3, "se3")
    _inverse_jacobians: ClassVar[tuple] = (se3.se3_left_jacobian_inv, se3.se3_right_jacobian_inv)

    @classmethod
    def random(cls, shape: Sequence[int] = (), key: mx.array | None = None, dtype: mx.Dtype = mx.float32) -> "SE3":
        """Haar-uniform rotation and standard-normal translation, matrix (*shape, 4, 4)."""
        k1, k2 = mx.random.split(key) if key is not None else (None, None)
        return cls.from_rt(SO3.random(shape, k1, dtype), mx.random.normal((*shape, 3), dtype=dtype, key=k2))

    @classmethod
    def from_rt(cls, r: Any, t: Any) -> "SE3":
        """From rotation (SO3 or (*, 3, 3)) and translation (*, 3)."""
        return cls(se3.se3_from_rt(r.matrix if isinstance(r, SO3) else r, t))

    @property
    def rotation(self) -> SO3:
        """Rotation part as SO3, matrix (*, 3, 3)."""
        return SO3(self.matrix[..., :3, :3])

    @property
    def translation(self) -> mx.array:
        """Translation (*, 3)."""
        return self.matrix[..., :3, 3]

    @classmethod
    def from_matrix(cls, m: Any, project: bool = True) -> "SE3":
        """From (*, 4, 4): the rotation block is projected to the nearest rotation and the last
        row reset to [0, 0, 0, 1] (as :meth:`SO3.from_matrix`); ``project=False`` stores ``m``
        unchecked.

        >>> SE3.from_matrix(mx.diag(mx.array([2.0, 2.0, 2.0, 5.0]))).matrix[3].tolist()
        [0.0, 0.0, 0.0, 1.0]
        """
        m, out = as_checked(m, (4, 4), "m")
        if not project:
            return cls(m if m.dtype == out else cast_out(m, out))
        r = linalg.project_to_so3(m[..., :3, :3])
        return cls(cast_out(se3._from_rt(r, m[..., :3, 3]), out))

    def _chordal(self, axis: int) -> "SE3":
        return SE3.from_rt(SO3(self.matrix[..., :3, :3])._chordal(axis), mx.mean(self.translation, axis=axis))


class _SL3(NamedTuple):
    matrix: mx.array


class SL3(_SL3, MatrixLieGroup):
    """Batch of homographies with det 1, ``matrix`` (*, 3, 3); tangent (*, 8), Benhimane-Malis basis.

    ``H @ p`` multiplies homogeneous 3-vectors p (*, 3). Updates are RIGHT:
    ``H.rplus(d) = H @ SL3.exp(d)``. Only the Karcher mean is defined.

    >>> SL3.identity().log().tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    >>> SL3.random((4,)).batch_shape
    (4,)
    """

    __slots__ = ()
    matrix_size: ClassVar[int] = 3
    tangent_dim: ClassVar[int] = 8
    _ops: ClassVar[_Ops] = _Ops.of(sl3, "sl3")

    @classmethod
    def random(cls, shape: Sequence[int] = (), key: mx.array | None = None, dtype: mx.Dtype = mx.float32, scale: float = 0.3) -> "SL3":
        """exp of N(0, scale^2) tangents, matrix (*shape, 3, 3) (SL(3) is not compact: no uniform
        distribution)."""
        return cls.exp(scale * mx.random.normal((*shape, 8), dtype=dtype, key=key))

    @classmethod
    def from_matrix(cls, m: Any, project: bool = True) -> "SL3":
        """From (*, 3, 3), rescaled to det 1 (``m / cbrt(det m)``: a homography is defined up to
        scale); ``project=False`` stores ``m`` unchecked.

        >>> SL3.from_matrix(2 * mx.eye(3)).matrix.tolist()[0]
        [1.0, 0.0, 0.0]
        """
        m, out = as_checked(m, (3, 3), "m")
        return cls(cast_out(sl3._unit_det(m) if project else m, out))

