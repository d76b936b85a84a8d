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
from typing import Any, Callable, NamedTuple, Union

import mlx.core as mx

from .. import linalg
from .._checks import as_float, cast_out
from .losses import RobustLoss, get_loss

Retract = Callable[[mx.array, mx.array], mx.array]
JacobianFn = Callable[[mx.array], mx.array]
#: ``x -> (cost (*batch), A (*batch, n, n), g (*batch, n))``: cost and normal equations at x.
LinearizeFn = Callable[[mx.array], tuple[mx.array, mx.array, mx.array]]


class LMStatus(enum.IntEnum):
    """Per-problem outcome codes stored in :attr:`LMResult.status`."""

    FAILED = -1  #: the initial cost was not finite: x0 is returned untouched
    MAX_ITERS = 0  #: still improving when the iteration budget ran out
    GRADIENT = 1  #: ``||g||_inf <= gtol``
    STEP = 2  #: ``||h|| <= xtol (||x|| + xtol)``
    COST = 3  #: an accepted step lowered the cost by less than ``ftol * F``


class LMResult(NamedTuple):
    """Result of :func:`levenberg_marquardt`; every field is batched like the problems.

    Attributes:
        x: (*batch, *param) solution.
        cost: (*batch) final cost ``0.5 sum_i rho(||r_i||^2)``.
        initial_cost: (*batch) cost at x0.
        iterations: (*batch) int32, iterations run before the problem converged.
        converged: (*batch) bool, status > 0.
        status: (*batch) int32 :class:`LMStatus` codes.
        damping: (*batch) final ``mu``.
        hessian: (*batch, n, n) Gauss-Newton matrix ``J^T W J`` at the solution (its
            inverse times the residual variance is the parameter covariance).
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
    """Retraction of a vector space: ``x + delta``."""
    return x + delta


def batched_jacobian(residual_fn: Callable[[mx.array], mx.array], x: mx.array, dof: int,
                     batch_shape: tuple[int, ...], retract: Retract = vector_retract) -> tuple[mx.array, mx.array]:
    """Residuals and Jacobian of independent problems by forward-mode autodiff.

    ``J[..., :, k] = d/dt residual_fn(retract(x, t e_k))`` at ``t = 0``: since problem b
    depends only on x[b], one JVP with the same one-hot tangent for every problem gives
    column k of all the Jacobians; the ``dof`` JVPs run as one ``mx.vmap``-ed pass.

    Args:
        residual_fn: x -> (*batch, m).
        x: (*batch, *param).
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
    zero = mx.zeros((*batch_shape, dof), dtype=x.dtype)
    eye = mx.eye(dof, dtype=x.dtype).reshape(dof, *([1] * len(batch_shape)), dof)
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


def _weighted(r: mx.array, block: int, loss: RobustLoss | None) -> tuple[mx.array, mx.array]:
    """Cost (*batch) and per-residual IRLS weights (*batch, m) of residuals (*batch, m)."""
    s = mx.sum(mx.square(r.reshape(*r.shape[:-1], r.shape[-1] // block, block)), axis=-1)
    if loss is None:
        return 0.5 * mx.sum(s, axis=-1), mx.ones_like(r)
    w = mx.repeat(loss.weight(s), block, axis=-1)
    return 0.5 * mx.sum(loss.rho(s), axis=-1), w


def _finite_cost(cost: mx.array) -> mx.array:
    return mx.where(mx.isfinite(cost), cost, mx.inf)


def _normal_equations(r: mx.array, jac: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """``A = J^T W J`` (*, n, n) and ``g = J^T W r`` (*, n), summed elementwise (no TF32)."""
    wj = jac * w[..., None]
    n = jac.shape[-1]
    # One reduction per entry of the upper triangle keeps the temporaries at (*, m) instead
    # of a (*, m, n, n) broadcast, and stays exact float32 (no TF32 matmul).
    upper = {(i, j): mx.sum(wj[..., i] * jac[..., j], axis=-1) for i in range(n) for j in range(i, n)}
    a = mx.stack([upper[(min(i, j), max(i, j))] for i in range(n) for j in range(n)], axis=-1)
    g = mx.sum(wj * r[..., None], axis=-2)
    return a.reshape(*a.shape[:-1], n, n), g


def _solve_damped(a: mx.array, g: mx.array, mu: mx.array) -> tuple[mx.array, mx.array]:
    """Step h from ``(A + mu I) h = -g`` and a mask of the problems where it is usable."""
    n = a.shape[-1]
    finite = mx.all(mx.isfinite(a), axis=(-2, -1)) & mx.all(mx.isfinite(g), axis=-1) & mx.isfinite(mu)
    # Double where: non-finite systems are replaced by I h = 0 before the solve.
    eye = mx.eye(n, dtype=a.dtype)
    a_s = mx.where(finite[..., None, None], a + mu[..., None, None] * eye, eye)
    g_s = mx.where(finite[..., None], g, 0.0)
    h, ok = linalg.solve_spd_ex(a_s, -g_s)
    ok = ok & finite & mx.all(mx.isfinite(h), axis=-1)
    return mx.where(ok[..., None], h, 0.0), ok


def _param_norm(x: mx.array, batch_ndim: int) -> mx.array:
    return mx.sqrt(mx.sum(x * x, axis=tuple(range(batch_ndim, x.ndim))))


def _expand(mask: mx.array, x: mx.array) -> mx.array:
    return mask.reshape(*mask.shape, *([1] * (x.ndim - mask.ndim)))


def _tolerances(dtype: mx.Dtype, xtol: float | None, ftol: float | None) -> tuple[float, float]:
    f64 = dtype == mx.float64
    return (1e-10 if f64 else 1e-6) if xtol is None else xtol, (1e-14 if f64 else 1e-7) if ftol is None else ftol


def levenberg_marquardt_linearized(
    linearize: LinearizeFn,
    x0: mx.array,
    retract: Retract,
    batch_shape: tuple[int, ...],
    *,
    cost_fn: Callable[[mx.array], mx.array] | None = None,
    max_iters: int = 20,
    tau: float = 1e-3,
    gtol: float = 0.0,
    xtol: float | None = None,
    ftol: float | None = None,
) -> LMResult:
    """The loop of :func:`levenberg_marquardt` on a callback that returns the cost and the
    normal equations, ``linearize(x) -> (F(x), A = J^T W J, g = J^T W r)``.

    For residuals whose normal equations can be summed per residual block without forming J
    (PnP). Without ``cost_fn``, ``linearize`` runs once at x0 and once per iteration at the
    trial point ``retract(x, h)``: an accepted step keeps the trial's ``(F, A, g)`` for the
    next iteration, so no separate cost pass and no final pass for the Hessian are needed.
    That needs residuals that stay finite at any trial point (a rejected trial still sits in
    the backward graph, behind a zero cotangent, and 0 * inf is NaN). With ``cost_fn``
    (``x -> F(x)``), trial points are only scored, without gradient, and ``linearize`` runs
    at the accepted points: one pass more per iteration, safe for any residuals.
    Gradients flow through ``linearize`` (the unrolled iterations).

    Args:
        linearize: ``x (*batch, *param) -> (cost (*batch), A (*batch, n, n), g (*batch, n))``,
            problem b depending on x[b] only.
        cost_fn: optional ``x -> cost (*batch)`` for scoring trial points (see above).
        x0: (*batch, *param) in the compute dtype (float32/float64); x is returned in it.
        retract: ``(x, h (*batch, n)) -> x'``.
        batch_shape: the problems' batch shape.
        max_iters, tau, gtol, xtol, ftol: as in :func:`levenberg_marquardt`.

    Returns:
        :class:`LMResult`.

    Example:
        >>> import mlx.core as mx
        >>> lin = lambda x: (0.5 * mx.sum((x - 3.0) ** 2, -1), mx.broadcast_to(mx.eye(1), (2, 1, 1)), x - 3.0)
        >>> res = levenberg_marquardt_linearized(lin, mx.array([[1.0], [5.0]]), vector_retract, (2,))
        >>> [round(v, 4) for v in res.x[:, 0].tolist()], res.converged.tolist()
        ([3.0, 3.0], [True, True])
    """
    if max_iters < 0:
        raise ValueError(f"max_iters: expected >= 0, got {max_iters}")
    x = x0
    xtol, ftol = _tolerances(x.dtype, xtol, ftol)
    bnd = len(batch_shape)
    cost_out, a, g = linearize(x)
    initial_cost = cost_out
    cost = mx.stop_gradient(_finite_cost(cost_out))
    failed = ~mx.isfinite(cost)
    diag_max = mx.max(mx.diagonal(a, axis1=-2, axis2=-1), axis=-1)
    mu = mx.stop_gradient(tau * mx.where(mx.isfinite(diag_max) & (diag_max > 0), diag_max, 1.0))
    nu = mx.full(batch_shape, 2.0, dtype=x.dtype)
    status = mx.where(failed, int(LMStatus.FAILED), int(LMStatus.MAX_ITERS)).astype(mx.int32)
    iterations = mx.zeros(batch_shape, dtype=mx.int32)
    eps = 2.2e-16 if x.dtype == mx.float64 else 1.2e-7

    for it in range(max_iters):
        active = status == int(LMStatus.MAX_ITERS)
        if cost_fn is not None and it > 0:
            cost_out, a, g = linearize(x)
        g_small = mx.max(mx.abs(mx.stop_gradient(g)), axis=-1) <= gtol
        h, h_ok = _solve_damped(a, g, mu)
        h_small = h_ok & (mx.sqrt(mx.sum(mx.stop_gradient(h) ** 2, axis=-1))
                          <= xtol * (_param_norm(mx.stop_gradient(x), bnd) + xtol))
        x_new = retract(x, h)
        if cost_fn is None:
            cost_out_new, a_new, g_new = linearize(x_new)
            cost_new = _finite_cost(mx.stop_gradient(cost_out_new))
        else:
            cost_new = _finite_cost(mx.stop_gradient(cost_fn(x_new)))
        hs, gs = mx.stop_gradient(h), mx.stop_gradient(g)
        predicted = 0.5 * mx.sum(hs * (mu[..., None] * hs - gs), axis=-1)
        actual = cost - cost_new
        gain = actual / mx.where(predicted > 0, predicted, 1.0)
        accept = active & h_ok & ~h_small & ~g_small & (predicted > 0) & (gain > 0) & mx.isfinite(cost_new)
        cost_small = accept & (actual <= ftol * cost + eps * eps)
        x = mx.where(_expand(accept, x), x_new, x)
        cost = mx.where(accept, cost_new, cost)
        if cost_fn is None:
            cost_out = mx.where(accept, cost_out_new, cost_out)
            a = mx.where(accept[..., None, None], a_new, a)
            g = mx.where(accept[..., None], g_new, g)
        shrink = mx.maximum(1.0 / 3.0, 1.0 - (2.0 * mx.minimum(gain, 1.0) - 1.0) ** 3)
        reject = active & ~accept
        mu = mx.where(accept, mu * shrink, mx.where(reject, mx.minimum(mu * nu, 1e30), mu))
        nu = mx.where(accept, 2.0, mx.where(reject, mx.minimum(2.0 * nu, 2.0**20), nu))
        iterations = iterations + active.astype(mx.int32)
        new_status = mx.where(g_small, int(LMStatus.GRADIENT),
                              mx.where(h_small, int(LMStatus.STEP),
                                       mx.where(cost_small, int(LMStatus.COST), int(LMStatus.MAX_ITERS))))
        status = mx.where(active, new_status, status).astype(mx.int32)

    if cost_fn is not None and max_iters > 0:
        cost_out, a, g = linearize(x)
    return LMResult(x=x, cost=cost_out, initial_cost=initial_cost, iterations=iterations,
                    converged=status > 0, status=status, damping=mu, hessian=a)


def levenberg_marquardt(
    residual_fn: Callable[[mx.array], mx.array],
    x0: Any,
    *,
    jacobian: Union[str, JacobianFn] = "autodiff",
    loss: Union[RobustLoss, str, None] = None,
    loss_scale: float = 1.0,
    block_size: int = 1,
    retract: Retract | None = None,
    dof: int | None = None,
    max_iters: int = 20,
    tau: float = 1e-3,
    gtol: float = 0.0,
    xtol: float | None = None,
    ftol: float | None = None,
) -> LMResult:
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
    if max_iters < 0:
        raise ValueError(f"max_iters: expected >= 0, got {max_iters}")
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
        cost, w = _weighted(rc, block_size, loss_obj)
        return (cost, *_normal_equations(rc, jac, w))

    def cost_fn(xc: mx.array) -> mx.array:
        return _weighted(residual_fn(xc), block_size, loss_obj)[0]

    # User residuals may be non-finite at a rejected trial point: score trials without gradient.
    res = levenberg_marquardt_linearized(linearize, x, retract, batch_shape, cost_fn=cost_fn, max_iters=max_iters,
                                         tau=tau, gtol=gtol, xtol=xtol, ftol=ftol)
    return res._replace(x=cast_out(res.x, out_dtype))
