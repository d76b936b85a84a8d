"""Robust losses for iteratively reweighted least squares.

Each loss maps a squared residual norm ``s = ||r||^2 >= 0`` to ``rho(s)``, normalised so
that ``rho(s) ~ s`` and ``rho'(s) ~ 1`` near zero (the convention of Triggs, McLauchlan,
Hartley, Fitzgibbon, "Bundle Adjustment -- A Modern Synthesis", 2000, sec. 3.3 and 4.3,
and of Ceres). The cost of a problem is ``0.5 * sum_i rho(s_i)``. Gauss-Newton with robust
losses solves the reweighted normal equations ``J^T W J h = -J^T W r`` with the IRLS
weights ``w_i = rho'(s_i)`` (Triggs et al. sec. 4.3, dropping the ``rho''`` term).

``scale`` (written ``c``) is the residual norm where the loss starts to down-weight:
inliers with ``||r|| << c`` are treated as plain least squares.

Example:
    >>> import mlx.core as mx
    >>> loss = Huber(1.0)
    >>> loss.weight(mx.array([0.25, 4.0]))
    array([1, 0.5], dtype=float32)
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx


@dataclass(frozen=True)
class RobustLoss:
    """Base class: ``rho(s)`` and IRLS weight ``rho'(s)`` of squared norms ``s`` (*), elementwise.

    >>> s, losses = mx.array([0.0, 1.0, 100.0]), (Huber(), Cauchy(), Tukey(), SoftL1(), GemanMcClure())
    >>> [[round(v, 3) for v in loss.rho(s).tolist()] for loss in losses]
    [[0.0, 1.0, 19.0], [0.0, 0.693, 4.615], [0.0, 0.333, 0.333], [0.0, 0.828, 18.1], [0.0, 0.5, 0.99]]
    >>> [[round(v, 3) for v in loss.weight(s).tolist()] for loss in losses]
    [[1.0, 1.0, 0.1], [1.0, 0.5, 0.01], [1.0, 0.0, 0.0], [1.0, 0.707, 0.1], [1.0, 0.25, 0.0]]
    """

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not float(self.scale) > 0.0:
            raise ValueError(f"{type(self).__name__}: scale must be > 0, got {self.scale}")

    def __call__(self, s: mx.array) -> mx.array:
        return self.rho(s)

    def rho(self, s: mx.array) -> mx.array:
        """Loss value (*) of squared norms s (*)."""
        raise TypeError("RobustLoss is abstract: use Huber, Cauchy, Tukey, SoftL1 or GemanMcClure")

    def weight(self, s: mx.array) -> mx.array:
        """IRLS weight rho'(s) (*), in [0, 1]."""
        raise TypeError("RobustLoss is abstract: use Huber, Cauchy, Tukey, SoftL1 or GemanMcClure")


@dataclass(frozen=True)
class Huber(RobustLoss):
    """Huber: ``s`` for ``s <= c^2``, else ``2 c sqrt(s) - c^2``; weight ``min(1, c / sqrt(s))``.

    Elementwise on s (*); examples of every loss: :class:`RobustLoss`.
    """

    def rho(self, s: mx.array) -> mx.array:
        c2 = self.scale**2
        outer = s > c2
        # Double where: sqrt is evaluated only at s > c^2 so its gradient stays finite.
        s_out = mx.where(outer, s, c2)
        return mx.where(outer, 2.0 * self.scale * mx.sqrt(s_out) - c2, s)

    def weight(self, s: mx.array) -> mx.array:
        c2 = self.scale**2
        outer = s > c2
        s_out = mx.where(outer, s, c2)
        return mx.where(outer, self.scale / mx.sqrt(s_out), mx.ones_like(s))


@dataclass(frozen=True)
class Cauchy(RobustLoss):
    """Cauchy (Lorentzian): ``c^2 log(1 + s / c^2)``; weight ``1 / (1 + s / c^2)``.

    Elementwise on s (*); examples of every loss: :class:`RobustLoss`.
    """

    def rho(self, s: mx.array) -> mx.array:
        c2 = self.scale**2
        return c2 * mx.log1p(s / c2)

    def weight(self, s: mx.array) -> mx.array:
        return 1.0 / (1.0 + s / self.scale**2)


@dataclass(frozen=True)
class Tukey(RobustLoss):
    """Tukey biweight: ``c^2/3 (1 - (1 - s/c^2)^3)`` for ``s <= c^2``, else ``c^2/3``, elementwise on s (*).

    The weight ``(1 - s/c^2)^2`` is exactly zero beyond ``c``: gross outliers stop
    contributing, but the cost is not convex, so start close to the solution.
    """

    def rho(self, s: mx.array) -> mx.array:
        c2 = self.scale**2
        u = mx.maximum(1.0 - s / c2, 0.0)
        return (c2 / 3.0) * (1.0 - u * u * u)

    def weight(self, s: mx.array) -> mx.array:
        u = mx.maximum(1.0 - s / self.scale**2, 0.0)
        return u * u


@dataclass(frozen=True)
class SoftL1(RobustLoss):
    """Soft L1 (pseudo-Huber): ``2 c^2 (sqrt(1 + s / c^2) - 1)``; weight ``1 / sqrt(1 + s / c^2)``.

    Elementwise on s (*); examples of every loss: :class:`RobustLoss`.
    """

    def rho(self, s: mx.array) -> mx.array:
        # 2 c^2 (sqrt(1 + u) - 1) = 2 s / (sqrt(1 + u) + 1): no cancellation for small s.
        return 2.0 * s / (mx.sqrt(1.0 + s / self.scale**2) + 1.0)

    def weight(self, s: mx.array) -> mx.array:
        return mx.rsqrt(1.0 + s / self.scale**2)


@dataclass(frozen=True)
class GemanMcClure(RobustLoss):
    """Geman-McClure: ``c^2 s / (c^2 + s)``; weight ``c^4 / (c^2 + s)^2``.

    Elementwise on s (*); examples of every loss: :class:`RobustLoss`.
    """

    def rho(self, s: mx.array) -> mx.array:
        c2 = self.scale**2
        return c2 * s / (c2 + s)

    def weight(self, s: mx.array) -> mx.array:
        c2 = self.scale**2
        q = c2 / (c2 + s)
        return q * q


def squared_loss(s: mx.array) -> mx.array:
    """Plain least squares, ``rho(s) = s`` for s (*) (the default of the solvers).

    >>> squared_loss(mx.array([2.0])).tolist()
    [2.0]
    """
    return s


_BY_NAME = {"huber": Huber, "cauchy": Cauchy, "tukey": Tukey, "soft_l1": SoftL1, "geman_mcclure": GemanMcClure}


def get_loss(loss: RobustLoss | str | None, scale: float = 1.0) -> RobustLoss | None:
    """Resolve ``None``, a loss object or a name (``"huber"``, ``"cauchy"``, ``"tukey"``,
    ``"soft_l1"``, ``"geman_mcclure"``; ``"linear"`` means none) to a loss object or None.

    >>> get_loss("cauchy", 2.0)
    Cauchy(scale=2.0)
    """
    if loss is None or isinstance(loss, RobustLoss):
        return loss
    if isinstance(loss, str):
        if loss == "linear":
            return None
        if loss in _BY_NAME:
            return _BY_NAME[loss](scale)
    raise ValueError(f"loss: expected None, a RobustLoss or one of {sorted(_BY_NAME)} or 'linear', got {loss!r}")
