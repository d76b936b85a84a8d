"""Batched Levenberg-Marquardt on vector spaces and manifolds.

Many independent problems are solved at once: problem ``b`` has parameters ``x[b]``
and residuals ``r[b] = residual_fn(x)[b]`` that depend on ``x[b]`` only. Each problem
keeps its own damping ``mu`` and its own convergence mask; converged problems are frozen
with ``mx.where`` while the others go on. The loop runs a fixed, static number of
iterations, so there is no host synchronisation and the whole solve can be wrapped in
``mx.compile``.

Algorithm: Madsen, Nielsen, Tingleff, "Methods for Non-Linear Least Squares Problems",
2nd ed., IMM DTU 2004, Algorithm 3.16: ``(A + mu I) h = -g`` with ``A = J^T W J``,
``g = J^T W r``; gain ratio ``rho = (F(x) - F(x_new)) / (0.5 h^T (mu h - g))``; on
success ``mu *= max(1/3, 1 - (2 rho - 1)^3)``, ``nu = 2``, else ``mu *= nu``,
``nu *= 2``; ``mu_0 = tau max_i A_ii``. Stopping tests (their eq. 3.15-3.16):
``||g||_inf <= gtol``, ``||h|| <= xtol (||x|| + xtol)``, plus an accepted step that
lowers the cost by less than ``ftol * F``. Robust losses enter through IRLS weights
``W = rho'(||r_i||^2)`` (Triggs et al. 2000, sec. 4.3).

Gradients: the iterations are unrolled, so ``mx.grad`` of the solution with respect to
anything the residuals close over follows the iterates; at a converged fixed point this
equals the implicit-function-theorem derivative. Damping, acceptance and convergence
decisions carry no gradient.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, NamedTuple, Protocol, Union

import mlx.core as mx
from mlx.utils import tree_map

from .. import linalg
from .._checks import as_float, cast_out
from .._vmap import all_of
from .losses import RobustLoss, get_loss
from .normal_equations import normal_equations, weighted_cost

Retract = Callable[[Any, mx.array], Any]
JacobianFn = Callable[[mx.array], mx.array]
#: ``x -> (cost (*batch), system, g (*batch, n))``: cost and linear system at x (dense: A (*batch, n, n)).
LinearizeFn = Callable[[Any], tuple[mx.array, Any, mx.array]]


class LMStatus(enum.IntEnum):
    """Per-problem outcome codes stored in :attr:`LMResult.status`."""

    FAILED = -1  #: the initial cost was not finite: x0 is returned untouched
    MAX_ITERS = 0  #: still improving when the iteration budget ran out
    GRADIENT = 1  #: ``||g||_inf <= gtol``
    STEP = 2  #: ``||h|| <= xtol (||x|| + xtol)``
    COST = 3  #: an accepted step lowered the cost by less than ``ftol * F``


class LMResult(NamedTuple):
    """Result of :func:`levenberg_marquardt` and :func:`lm_loop`; every field is batched like the problems.

    Attributes:
        x: (*batch, *param) solution (a tuple of such arrays where x0 was one).
        cost: (*batch) final cost ``0.5 sum_i rho(||r_i||^2)``.
        initial_cost: (*batch) cost at x0.
        iterations: (*batch) int32, iterations run before the problem converged.
        converged: (*batch) bool, status > 0.
        status: (*batch) int32 :class:`LMStatus` codes.
        damping: (*batch) final ``mu``.
        hessian: (*batch, n, n) Gauss-Newton matrix ``J^T W J`` at the solution (its
            inverse times the residual variance is the parameter covariance); with a custom
            :class:`StepSolver`, the final system it was given.
    """

    x: mx.array
    cost: mx.array
    initial_cost: mx.array
    iterations: mx.array
    converged: mx.array
    status: mx.array
    damping: mx.array
    hessian: mx.array


def vector_retract(x: mx.array, delta: mx.array) -> mx.array:
    """Retraction of a vector space: ``x + delta``, x and delta (*, n).

    >>> vector_retract(mx.array([1.0, 2.0]), mx.array([0.5, -1.0])).tolist()
    [1.5, 1.0]
    """
    return x + delta


def _leaves(x: Any) -> list[mx.array]:
    return list(x) if isinstance(x, (tuple, list)) else [x]


def batched_jacobian(residual_fn: Callable[[Any], mx.array], x: Any, dof: int,
                     batch_shape: tuple[int, ...], retract: Retract = vector_retract) -> tuple[mx.array, mx.array]:
    """Residuals and Jacobian of independent problems by forward-mode autodiff.

    ``J[..., :, k] = d/dt residual_fn(retract(x, t e_k))`` at ``t = 0``: since problem b
    depends only on x[b], one JVP with the same one-hot tangent for every problem gives
    column k of all the Jacobians; the ``dof`` JVPs run as one ``mx.vmap``-ed pass.

    Args:
        residual_fn: x -> (*batch, m).
        x: (*batch, *param), or a tuple of such arrays.
        dof: tangent dimension n.
        batch_shape: the problems' batch shape.
        retract: (x, delta (*batch, n)) -> x'.

    Returns:
        ``(r, J)``: (*batch, m) and (*batch, m, n).

    Example:
        >>> import mlx.core as mx
        >>> r, J = batched_jacobian(lambda x: x * x, mx.array([[1.0, 2.0]]), 2, (1,))
        >>> J
        array([[[2, 0],
                [0, 4]]], dtype=float32)
    """
    dtype = _leaves(x)[0].dtype
    zero = mx.zeros((*batch_shape, dof), dtype=dtype)
    eye = mx.eye(dof, dtype=dtype).reshape(dof, *([1] * len(batch_shape)), dof)
    tangents = mx.broadcast_to(eye, (dof, *batch_shape, dof))

    def through_retract(d: mx.array) -> mx.array:
        return residual_fn(retract(x, d))

    def column(t: mx.array) -> mx.array:
        return mx.jvp(through_retract, [zero], [t])[1][0]

    # vmap over the tangents runs the dof JVPs as one vectorised pass. (A Python loop of
    # mx.jvp calls also works eagerly, but under mx.compile with se3_exp retractions it
    # hits an MLX 0.32.4 compile error, IndexError "_Map_base::at".)
    jac = mx.vmap(column, in_axes=0, out_axes=-1)(tangents)
    return through_retract(zero), jac


def _finite_cost(cost: mx.array) -> mx.array:
    return mx.where(mx.isfinite(cost), cost, mx.inf)


class StepSolver(Protocol):
    """How :func:`lm_loop` solves the damped system; ``system`` is whatever ``linearize`` returns.

    Every leaf of ``system`` carries the batch dims first, (*batch, ...) (the loop selects per
    problem with ``mx.where`` through the tree). :class:`DenseStep` is the default one:

    >>> step: StepSolver = DenseStep()
    >>> step.max_diagonal(mx.array([[[4.0, 1.0], [1.0, 3.0]]])).tolist()
    [4.0]
    """

    def __call__(self, system: Any, g: mx.array, mu: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """``(h (*batch, n), ok (*batch), predicted (*batch))``: the step of the damped system
        ``(A + mu D) h = -g``, where it is usable, and the model decrease ``L(0) - L(h)``."""
        ...

    def max_diagonal(self, system: Any) -> mx.array:
        """(*batch) largest diagonal entry of A (for ``mu_0 = tau max_i A_ii``)."""
        ...


class DenseStep:
    """The dense step: system A (*batch, n, n), ``(A + mu I) h = -g`` by
    :func:`mlxgeom.linalg.solve_spd_ex`; ``predicted = 0.5 h^T (mu h - g)`` (MNT 2004, eq. 3.14).

    >>> A = mx.array([[[2.0, 0.0], [0.0, 2.0]]])
    >>> h, ok, predicted = DenseStep()(A, mx.array([[2.0, 4.0]]), mx.array([0.0]))
    >>> h.tolist(), ok.tolist(), predicted.tolist(), DenseStep().max_diagonal(A).tolist()
    ([[-1.0, -2.0]], [True], [5.0], [2.0])
    """

    def __call__(self, system: mx.array, g: mx.array, mu: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        a, n = system, system.shape[-1]
        finite = all_of(mx.all(mx.isfinite(a), axis=(-2, -1)), mx.all(mx.isfinite(g), axis=-1), mx.isfinite(mu))
        # Double where: non-finite systems are replaced by I h = 0 before the solve.
        eye = mx.eye(n, dtype=a.dtype)
        a_s = mx.where(finite[..., None, None], a + mu[..., None, None] * eye, eye)
        g_s = mx.where(finite[..., None], g, 0.0)
        h, ok = linalg.solve_spd_ex(a_s, -g_s)
        ok = all_of(ok, finite, mx.all(mx.isfinite(h), axis=-1))
        h = mx.where(ok[..., None], h, 0.0)
        hs, gs = mx.stop_gradient(h), mx.stop_gradient(g)
        return h, ok, 0.5 * mx.sum(hs * (mu[..., None] * hs - gs), axis=-1)

    def max_diagonal(self, system: mx.array) -> mx.array:
        """(*batch) largest diagonal entry of A (*batch, n, n)."""
        return mx.max(mx.diagonal(system, axis1=-2, axis2=-1), axis=-1)


def _param_norm(x: Any, batch_ndim: int) -> mx.array:
    leaves = [mx.stop_gradient(v) for v in _leaves(x)]
    return mx.sqrt(sum(mx.sum(v * v, axis=tuple(range(batch_ndim, v.ndim))) for v in leaves))


def _select(mask: mx.array, a: Any, b: Any) -> Any:
    """``where(mask, a, b)`` on every leaf of a tree whose leaves start with mask's (batch) dims."""
    # (mx.array.reshape() with no arguments crashes MLX 0.32, hence the explicit shape tuple.)
    return tree_map(lambda u, v: mx.where(mask.reshape(mask.shape + (1,) * (u.ndim - mask.ndim)), u, v), a, b)


def _tolerances(dtype: mx.Dtype, xtol: float | None, ftol: float | None) -> tuple[float, float]:
    f64 = dtype == mx.float64
    return (1e-10 if f64 else 1e-6) if xtol is None else xtol, (1e-14 if f64 else 1e-7) if ftol is None else ftol


def lm_loop(linearize: LinearizeFn, x0: Any, retract: Retract, batch_shape: tuple[int, ...], *,
            solve_step: StepSolver | None = None, cost_fn: Callable[[Any], mx.array] | None = None,
            max_iters: int = 20, tau: float = 1e-3, gtol: float = 0.0, xtol: float | None = None,
            ftol: float | None = None) -> LMResult:
    """THE Levenberg-Marquardt loop, on a callback that returns the cost and the linear system,
    ``linearize(x) -> (F(x), system, g = J^T W r)``.

    ``x`` is an array or a tuple of arrays (e.g. ``(poses, points)``), every leaf with the batch
    dims first. ``solve_step`` (a :class:`StepSolver`, default :class:`DenseStep` with
    ``system = A = J^T W J`` (*batch, n, n)) turns ``(system, g, mu)`` into the flat step h
    (*batch, n), and ``retract(x, h)`` applies it. Without ``cost_fn``, ``linearize`` runs once at
    x0 and once per iteration at the trial point ``retract(x, h)``: an accepted step keeps the
    trial's ``(F, system, g)`` for the next iteration, so no separate cost pass and no final pass
    for the Hessian are needed. That needs residuals that stay finite at any trial point (a
    rejected trial still sits in the backward graph, behind a zero cotangent, and 0 * inf is NaN).
    With ``cost_fn`` (``x -> F(x)``), trial points are only scored, without gradient, and
    ``linearize`` runs at the accepted points: one pass more per iteration, safe for any
    residuals. Gradients flow through ``linearize`` (the unrolled iterations).

    Args:
        linearize: ``x -> (cost (*batch), system, g (*batch, n))``, problem b depending on x[b] only.
        x0: (*batch, *param) array or tuple of such arrays, in the compute dtype (float32/float64).
        retract: ``(x, h (*batch, n)) -> x'``.
        batch_shape: the problems' batch shape.
        solve_step: the damped-system solver; default :class:`DenseStep`.
        cost_fn: optional ``x -> cost (*batch)`` for scoring trial points (see above).
        max_iters, tau, gtol, xtol, ftol: as in :func:`levenberg_marquardt`.

    Returns:
        :class:`LMResult` (``hessian`` is the final ``system``).

    Example:
        >>> import mlx.core as mx
        >>> lin = lambda x: (0.5 * mx.sum((x - 3.0) ** 2, -1), mx.broadcast_to(mx.eye(1), (2, 1, 1)), x - 3.0)
        >>> res = lm_loop(lin, mx.array([[1.0], [5.0]]), vector_retract, (2,))
        >>> [round(v, 4) for v in res.x[:, 0].tolist()], res.converged.tolist()
        ([3.0, 3.0], [True, True])
    """
    if max_iters < 0:
        raise ValueError(f"max_iters: expected >= 0, got {max_iters}")
    step = DenseStep() if solve_step is None else solve_step
    x = x0
    dtype = _leaves(x)[0].dtype
    xtol, ftol = _tolerances(dtype, xtol, ftol)
    bnd = len(batch_shape)
    cost_out, system, g = linearize(x)
    initial_cost = cost_out
    cost = mx.stop_gradient(_finite_cost(cost_out))
    failed = ~mx.isfinite(cost)
    diag_max = step.max_diagonal(system)
    mu = mx.stop_gradient(tau * mx.where(all_of(mx.isfinite(diag_max), diag_max > 0), diag_max, 1.0))
    nu = mx.full(batch_shape, 2.0, dtype=dtype)
    status = mx.where(failed, int(LMStatus.FAILED), int(LMStatus.MAX_ITERS)).astype(mx.int32)
    iterations = mx.zeros(batch_shape, dtype=mx.int32)
    eps = 2.2e-16 if dtype == mx.float64 else 1.2e-7

    for it in range(max_iters):
        active = status == int(LMStatus.MAX_ITERS)
        if cost_fn is not None and it > 0:
            cost_out, system, g = linearize(x)
        g_small = mx.max(mx.abs(mx.stop_gradient(g)), axis=-1) <= gtol
        h, h_ok, predicted = step(system, g, mu)
        h_small = all_of(h_ok, mx.sqrt(mx.sum(mx.stop_gradient(h) ** 2, axis=-1))
                         <= xtol * (_param_norm(x, bnd) + xtol))
        x_new = retract(x, h)
        if cost_fn is None:
            cost_out_new, system_new, g_new = linearize(x_new)
            cost_new = _finite_cost(mx.stop_gradient(cost_out_new))
        else:
            cost_new = _finite_cost(mx.stop_gradient(cost_fn(x_new)))
        actual = cost - cost_new
        gain = actual / mx.where(predicted > 0, predicted, 1.0)
        accept = all_of(active, h_ok, ~h_small, ~g_small, predicted > 0, gain > 0, mx.isfinite(cost_new))
        cost_small = all_of(accept, actual <= ftol * cost + eps * eps)
        x = _select(accept, x_new, x)
        cost = mx.where(accept, cost_new, cost)
        if cost_fn is None:
            cost_out, system, g = _select(accept, (cost_out_new, system_new, g_new), (cost_out, system, g))
        shrink = mx.maximum(1.0 / 3.0, 1.0 - (2.0 * mx.minimum(gain, 1.0) - 1.0) ** 3)
        reject = all_of(active, ~accept)
        mu = mx.where(accept, mu * shrink, mx.where(reject, mx.minimum(mu * nu, 1e30), mu))
        nu = mx.where(accept, 2.0, mx.where(reject, mx.minimum(2.0 * nu, 2.0**20), nu))
        iterations = iterations + active.astype(mx.int32)
        new_status = mx.where(g_small, int(LMStatus.GRADIENT),
                              mx.where(h_small, int(LMStatus.STEP),
                                       mx.where(cost_small, int(LMStatus.COST), int(LMStatus.MAX_ITERS))))
        status = mx.where(active, new_status, status).astype(mx.int32)

    if cost_fn is not None and max_iters > 0:
        cost_out, system, g = linearize(x)
    return LMResult(x=x, cost=cost_out, initial_cost=initial_cost, iterations=iterations,
                    converged=status > 0, status=status, damping=mu, hessian=system)


def levenberg_marquardt(residual_fn: Callable[[mx.array], mx.array], x0: Any, *,
                        jacobian: Union[str, JacobianFn] = "autodiff", loss: Union[RobustLoss, str, None] = None,
                        loss_scale: float = 1.0, block_size: int = 1, retract: Retract | None = None,
                        dof: int | None = None, max_iters: int = 20, tau: float = 1e-3, gtol: float = 0.0,
                        xtol: float | None = None, ftol: float | None = None) -> LMResult:
    """Solve a batch of independent non-linear least-squares problems by Levenberg-Marquardt.

    Minimises ``F_b(x_b) = 0.5 sum_i rho(||r_{b,i}||^2)`` for every problem b, with the
    residual vector of problem b cut into consecutive blocks ``r_{b,i}`` of ``block_size``
    entries (2 for reprojection errors) and ``rho`` the robust ``loss`` (plain squares by
    default). Parameters are updated as ``x <- retract(x, h)`` with ``h`` in the tangent
    space (*batch, dof). For poses use the RIGHT update ``T <- T exp(h)``, e.g.
    ``retract=lambda T, h: lie.se3_compose(T, lie.se3_exp(h))`` with ``dof=6``.

    The number of iterations is static (``max_iters``): no host synchronisation happens
    and the whole call can be compiled with ``mx.compile``. Problems that converge early
    are frozen. Non-finite residuals or singular systems reject the step for that problem
    only; a problem whose initial cost is not finite gets status ``FAILED`` and keeps x0.

    Args:
        residual_fn: ``x (*batch, *param) -> r (*batch, m)``; problem b's residuals must
            depend on x[b] only. Any arrays it closes over are differentiable inputs.
        x0: (*batch, *param) initial parameters; with the default vector retraction,
            (*batch, n). float32/float64 kept, float16/bfloat16 solved in float32 and x
            returned in their dtype, integers promoted to float32, complex -> TypeError.
        jacobian: ``"autodiff"`` (``dof`` forward-mode passes, see :func:`batched_jacobian`)
            or a callable ``x -> J (*batch, m, dof)``, the derivative of the residuals with
            respect to ``h`` at ``h = 0`` of ``residual_fn(retract(x, h))``.
        loss: None, a :class:`RobustLoss` or its name (``"huber"``, ``"cauchy"`` ...).
        loss_scale: scale ``c`` when ``loss`` is given by name.
        block_size: residual entries per robust block; m must be a multiple of it.
        retract: ``(x, h) -> x'``; default vector addition.
        dof: tangent dimension; required with ``retract``, else x0.shape[-1].
        max_iters: static iteration count.
        tau: initial damping ``mu_0 = tau max_i A_ii`` (MNT 2004 suggest 1e-6 for a good
            x0, 1e-3 otherwise).
        gtol, xtol, ftol: stopping tolerances (see module docstring); ``xtol``/``ftol``
            default to ``1e-6``/``1e-7`` in float32 and ``1e-10``/``1e-14`` in float64.

    Returns:
        :class:`LMResult`.

    Example:
        >>> import mlx.core as mx
        >>> res = levenberg_marquardt(lambda x: x * x - 2.0, mx.array([[1.0], [3.0]]))
        >>> [round(v, 4) for v in res.x[:, 0].tolist()], res.converged.tolist()
        ([1.4142, 1.4142], [True, True])
    """
    x, out_dtype = as_float(x0, "x0")
    if retract is None:
        if x.ndim < 1:
            raise ValueError(f"x0: expected shape (*, n), got {tuple(x.shape)}")
        retract, dof = vector_retract, x.shape[-1] if dof is None else dof
    if dof is None or dof < 1:
        raise ValueError("dof: give the tangent dimension (e.g. 6 for SE(3)) when a retract function is used")
    if not callable(jacobian) and jacobian != "autodiff":
        raise ValueError(f"jacobian: expected 'autodiff' or a callable, got {jacobian!r}")
    loss_obj = get_loss(loss, loss_scale)
    r = residual_fn(x)
    if r.ndim < 1 or r.shape[-1] % block_size:
        raise ValueError(f"residual_fn: expected residuals of shape (*batch, m) with m a multiple of "
                         f"block_size={block_size}, got {tuple(r.shape)}")
    batch_shape = tuple(r.shape[:-1])
    if tuple(x.shape[:len(batch_shape)]) != batch_shape:
        raise ValueError(f"x0: expected batch shape {batch_shape} (from the residuals), got {tuple(x.shape)}")

    def linearize(xc: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        if callable(jacobian):
            rc, jac = residual_fn(xc), jacobian(xc)
        else:
            rc, jac = batched_jacobian(residual_fn, xc, dof, batch_shape, retract)
        cost, w = weighted_cost(rc, block_size, loss_obj)
        return (cost, *normal_equations(rc, jac, w))

    def cost_fn(xc: mx.array) -> mx.array:
        return weighted_cost(residual_fn(xc), block_size, loss_obj)[0]

    # User residuals may be non-finite at a rejected trial point: score trials without gradient.
    res = lm_loop(linearize, x, retract, batch_shape, cost_fn=cost_fn, max_iters=max_iters,
                  tau=tau, gtol=gtol, xtol=xtol, ftol=ftol)
    return res._replace(**{k: cast_out(getattr(res, k), out_dtype)
                           for k in ("x", "cost", "initial_cost", "damping", "hessian")})
