"""The solver core: batched Levenberg-Marquardt, lm_loop and robust losses on toy least-squares problems."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from scipy.optimize import least_squares

from mlxgeom import lie, linalg
from mlxgeom import optim
from mlxgeom.solve import (
    Cauchy, DenseStep, GemanMcClure, Huber, LMStatus, SoftL1, Tukey, batched_jacobian, get_loss, levenberg_marquardt,
    lm_loop, normal_equations, vector_retract, weighted_cost,
)
from helpers import FLOAT_DTYPES, assert_device_safe, to_np

LOSSES = [Huber(1.5), Cauchy(1.5), Tukey(1.5), SoftL1(1.5), GemanMcClure(1.5)]


def _exp_fit_data(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y = a / (1 + b t) + c with per-problem (a, b, c), noisy.

    Rational, not exponential: MLX's float64 exp/sin on the CPU are only float32-accurate
    (measured 3.5e-7 relative), which would make a float64 comparison meaningless.
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 3.0, 25)
    truth = np.stack([rng.uniform(1, 3, batch), rng.uniform(0.5, 2, batch), rng.uniform(-1, 1, batch)], -1)
    y = truth[:, :1] / (1 + truth[:, 1:2] * t) + truth[:, 2:] + 0.01 * rng.normal(size=(batch, t.size))
    return t, y, truth


def _exp_residual(t: mx.array, y: mx.array):
    return lambda x: x[..., 0:1] / (1 + x[..., 1:2] * t) + x[..., 2:3] - y


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matches_scipy_least_squares_per_problem_in_the_input_dtype(dtype):
    t, y, truth = _exp_fit_data(6)
    x0 = np.tile([1.0, 1.0, 0.0], (6, 1))
    res = levenberg_marquardt(_exp_residual(mx.array(t, dtype=dtype), mx.array(y, dtype=dtype)),
                              mx.array(x0, dtype=dtype), max_iters=40)
    assert all(getattr(res, k).dtype == dtype for k in ("x", "cost", "initial_cost", "damping", "hessian"))
    for b in range(6):
        ref = least_squares(lambda p: p[0] / (1 + p[1] * t) + p[2] - y[b], x0[b], method="lm", xtol=1e-15, ftol=1e-15)
        np.testing.assert_allclose(to_np(res.x[b]), ref.x, atol=2e-4 if dtype == mx.float32 else 1e-8)
        np.testing.assert_allclose(float(res.cost[b]), ref.cost, rtol=1e-3)
    assert bool(mx.all(res.converged))


def test_rosenbrock_batch_converges_with_independent_damping():
    rosen = lambda x: mx.stack([10 * (x[..., 1] - x[..., 0] ** 2), 1 - x[..., 0]], -1)
    x0 = mx.array(np.random.default_rng(1).normal(size=(8, 2)) * 2, dtype=mx.float32)
    res = levenberg_marquardt(rosen, x0, max_iters=80)
    np.testing.assert_allclose(to_np(res.x), 1.0, atol=1e-3)
    assert bool(mx.all(res.converged))
    # Problems take different paths: the damping and iteration counts are per problem.
    assert len(set(np.array(res.iterations).tolist())) > 1
    assert len(set(np.round(np.log10(np.array(res.damping)), 3).tolist())) > 1


def test_nan_problem_is_flagged_and_does_not_leak():
    t, y, _ = _exp_fit_data(4)
    y[2, 3] = np.nan
    res = levenberg_marquardt(_exp_residual(mx.array(t), mx.array(y, dtype=mx.float32)), mx.ones((4, 3)), max_iters=30)
    status = np.array(res.status)
    assert status[2] == LMStatus.FAILED and not bool(res.converged[2])
    np.testing.assert_array_equal(np.array(res.x[2]), 1.0)
    good = [0, 1, 3]
    assert np.all(np.isfinite(np.array(res.x)[good])) and np.all(status[good] > 0)


def test_analytic_jacobian_matches_autodiff():
    t, y, _ = _exp_fit_data(3)
    tm, ym = mx.array(t, dtype=mx.float32), mx.array(y, dtype=mx.float32)
    fn = _exp_residual(tm, ym)

    def jac(x):
        e = 1 / (1 + x[..., 1:2] * tm)
        return mx.stack([e, -x[..., 0:1] * tm * e * e, mx.ones_like(e)], -1)

    x = mx.array([[1.0, 0.5, 0.1], [2.0, 1.0, -0.3], [0.5, 2.0, 0.0]])
    np.testing.assert_allclose(np.array(batched_jacobian(fn, x, 3, (3,))[1]), np.array(jac(x)), atol=1e-5)
    a = levenberg_marquardt(fn, mx.ones((3, 3)), jacobian=jac, max_iters=30)
    b = levenberg_marquardt(fn, mx.ones((3, 3)), max_iters=30)
    # The rational fit is flat along b in float32: compare costs tightly, parameters loosely.
    np.testing.assert_allclose(np.array(a.cost), np.array(b.cost), rtol=1e-4)
    np.testing.assert_allclose(np.array(a.x), np.array(b.x), atol=1e-3)


def test_se3_right_update_aligns_point_sets():
    """Poses on SE(3) with retract(T, d) = T exp(d): recovers T from point pairs."""
    rng = np.random.default_rng(3)
    xi = mx.array(rng.normal(size=(5, 6)) * 0.5, dtype=mx.float32)
    truth = lie.se3_exp(xi)
    p = mx.array(rng.normal(size=(5, 12, 3)), dtype=mx.float32)
    q = lie.se3_act(truth[:, None], p)
    retract = lambda T, d: lie.se3_compose(T, lie.se3_exp(d))
    res = levenberg_marquardt(lambda T: (lie.se3_act(T[:, None], p) - q).reshape(5, -1),
                              mx.broadcast_to(mx.eye(4), (5, 4, 4)), retract=retract, dof=6, max_iters=10)
    np.testing.assert_allclose(np.array(res.x), np.array(truth), atol=2e-5)
    assert bool(mx.all(res.converged))


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: type(l).__name__)
def test_loss_weight_is_derivative_and_small_residuals_are_quadratic(loss):
    s = mx.array([0.0, 1e-3, 0.5, 1.0, 2.24, 2.26, 4.0, 30.0])
    grad = mx.vmap(mx.grad(lambda v: loss.rho(v)))(s)
    np.testing.assert_allclose(np.array(grad), np.array(loss.weight(s)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss.rho(mx.array(1e-4))), 1e-4, rtol=1e-3)
    assert np.all(np.isfinite(np.array(grad)))
    w = np.array(loss.weight(s))
    assert np.all((w >= 0) & (w <= 1 + 1e-7)) and np.all(np.diff(w) <= 1e-7)


def test_loss_values_match_closed_forms():
    s, c = np.array([0.3, 9.0]), 1.5
    ref = {
        "huber": np.where(s <= c * c, s, 2 * c * np.sqrt(s) - c * c),
        "cauchy": c * c * np.log1p(s / c**2),
        "tukey": np.where(s <= c * c, c * c / 3 * (1 - (1 - s / c**2) ** 3), c * c / 3),
        "soft_l1": 2 * c * c * (np.sqrt(1 + s / c**2) - 1),
        "geman_mcclure": c * c * s / (c * c + s),
    }
    for name, val in ref.items():
        np.testing.assert_allclose(np.array(get_loss(name, c).rho(mx.array(s, dtype=mx.float32))), val, rtol=1e-5)
    with pytest.raises(ValueError):
        get_loss("l3")
    with pytest.raises(ValueError):
        Huber(0.0)


def test_robust_line_fit_ignores_outliers():
    rng = np.random.default_rng(4)
    t = np.linspace(-1, 1, 40)
    slope = rng.uniform(-2, 2, (4, 1))
    y = slope * t + 0.5 + 0.01 * rng.normal(size=(4, 40))
    y[:, ::4] += 8.0  # 25 % gross outliers
    fn = lambda x: x[..., 0:1] * mx.array(t, dtype=mx.float32) + x[..., 1:2] - mx.array(y, dtype=mx.float32)
    plain = levenberg_marquardt(fn, mx.zeros((4, 2)))
    robust = levenberg_marquardt(fn, mx.zeros((4, 2)), loss="cauchy", loss_scale=0.1, max_iters=40)
    assert np.abs(np.array(plain.x[:, 1]) - 0.5).min() > 1.0
    np.testing.assert_allclose(np.array(robust.x[:, 0]), slope[:, 0], atol=0.02)
    np.testing.assert_allclose(np.array(robust.x[:, 1]), 0.5, atol=0.02)


def test_unrolled_gradient_of_solution_matches_finite_differences():
    t = mx.array(np.linspace(0.0, 3.0, 20), dtype=mx.float32)
    y0 = 2.0 / (1 + 0.8 * np.linspace(0.0, 3.0, 20)) + 0.1 + 0.02 * np.sin(np.arange(20))

    def solution_sum(y: mx.array) -> mx.array:
        res = levenberg_marquardt(_exp_residual(t, y), mx.array([[1.5, 1.0, 0.0]]), max_iters=12, gtol=0.0, xtol=0.0, ftol=0.0)
        return mx.sum(res.x * mx.array([1.0, -2.0, 0.5]))

    y = mx.array(y0[None], dtype=mx.float32)
    g = np.array(mx.grad(solution_sum)(y))[0]
    eps = 1e-2
    fd = np.array([(float(solution_sum(y + eps * mx.array(np.eye(20)[i][None], dtype=mx.float32)))
                    - float(solution_sum(y - eps * mx.array(np.eye(20)[i][None], dtype=mx.float32)))) / (2 * eps)
                   for i in range(0, 20, 7)])
    np.testing.assert_allclose(g[::7], fd, rtol=2e-2, atol=2e-3)


def test_device_safe_and_compiles_at_two_batch_sizes_autodiff():
    rng = np.random.default_rng(5)

    def make(b: int):
        t, y, _ = _exp_fit_data(b, seed=b)
        return mx.array(t, dtype=mx.float32), mx.array(y, dtype=mx.float32)

    def fn(t, y):
        res = levenberg_marquardt(_exp_residual(t, y), mx.ones((y.shape[0], 3)), max_iters=4, loss="huber")
        # damping records accept/reject decisions between near-equal float32 costs, which the
        # fused kernels of a compiled graph may round the other way (seen on CUDA)
        return tuple(v for k, v in res._asdict().items() if k != "damping")

    assert_device_safe(fn, make)


@pytest.mark.parametrize("analytic", [False, True])
def test_device_safe_and_compiles_on_se3(analytic):
    """SE(3), right update, autodiff or the closed-form Jacobian d(T exp(d) p)/dd = R [I, -[p]x]."""
    rng = np.random.default_rng(5)

    def make(b: int):
        return (mx.array(rng.normal(size=(b, 6)), dtype=mx.float32), mx.array(rng.normal(size=(b, 10, 3)), dtype=mx.float32))

    def fn(xi, p):
        b = xi.shape[0]
        q = lie.se3_act(lie.se3_exp(xi)[:, None], p)

        def jac(T):
            rot = T[:, None, :3, :3]
            skew = lie.so3_hat(p)
            return mx.concatenate([mx.broadcast_to(rot, skew.shape), -linalg.matmul(rot, skew)], -1).reshape(b, -1, 6)

        retract = lambda T, d: lie.se3_compose(T, lie.se3_exp(d))
        res = levenberg_marquardt(lambda T: (lie.se3_act(T[:, None], p) - q).reshape(b, -1),
                                  mx.broadcast_to(mx.eye(4), (b, 4, 4)), jacobian=jac if analytic else "autodiff",
                                  retract=retract, dof=6,
                                  max_iters=4, loss="huber")
        return tuple(res)

    assert_device_safe(fn, make)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="dof"):
        levenberg_marquardt(lambda x: x.reshape(2, -1), mx.zeros((2, 4, 4)), retract=lambda x, d: x)
    with pytest.raises(ValueError, match="block_size"):
        levenberg_marquardt(lambda x: x, mx.zeros((2, 3)), block_size=2)
    with pytest.raises(TypeError):
        levenberg_marquardt(lambda x: x, np.zeros((2, 3), dtype=np.complex64))
    with pytest.raises(ValueError, match="jacobian"):
        levenberg_marquardt(lambda x: x, mx.zeros((2, 3)), jacobian="numeric")


def test_rejected_trial_points_with_nan_residuals_leave_gradients_finite():
    # From x = 1 the Gauss-Newton step for sqrt(x) = d lands at x < 0 (NaN residual): rejected.
    def solution(d):
        res = levenberg_marquardt(lambda x: mx.sqrt(x) - d[:, None], mx.ones((2, 1)), max_iters=30, tau=1e-9)
        return res.x[:, 0]

    d = mx.array([0.05, 0.3])
    np.testing.assert_allclose(np.array(solution(d)), np.array(d * d), rtol=1e-4)
    grad = mx.grad(lambda d: mx.sum(solution(d)))(d)
    np.testing.assert_allclose(np.array(grad), np.array(2 * d), rtol=1e-3)


def test_optim_keeps_reexporting_the_solver_names():
    assert optim.levenberg_marquardt is levenberg_marquardt and optim.Huber is Huber
    assert optim.Cauchy is Cauchy and optim.LMStatus is LMStatus


def _two_block_problem(b: int):
    """x = (a (b, 2), c (b, 1)) fitted to r = [a - ta, 2 (c - tc), a0 c - ta0 tc]: couples the two leaves."""
    rng = np.random.default_rng(b)
    ta, tc = mx.array(rng.normal(size=(b, 2)), dtype=mx.float32), mx.array(rng.normal(size=(b, 1)), dtype=mx.float32)

    def residual(x):
        a, c = x
        return mx.concatenate([a - ta, 2.0 * (c - tc), a[:, :1] * c - ta[:, :1] * tc], axis=-1)

    def linearize(x):
        r, J = batched_jacobian(lambda h: residual(h), x, 3, (b,), retract)
        cost, w = weighted_cost(r, 1, None)
        return (cost, *normal_equations(r, J, w))

    def retract(x, h):
        return x[0] + h[:, :2], x[1] + h[:, 2:]

    return linearize, retract, (mx.zeros((b, 2)), mx.ones((b, 1))), (ta, tc)


def test_lm_loop_solves_a_tuple_of_parameter_blocks():
    linearize, retract, x0, (ta, tc) = _two_block_problem(4)
    res = lm_loop(linearize, x0, retract, (4,), max_iters=30)
    assert isinstance(res.x, tuple) and res.x[0].shape == (4, 2) and res.x[1].shape == (4, 1)
    np.testing.assert_allclose(np.array(res.x[0]), np.array(ta), atol=1e-4)
    np.testing.assert_allclose(np.array(res.x[1]), np.array(tc), atol=1e-4)
    assert bool(mx.all(res.converged))


class _DiagonalScaledStep(DenseStep):
    """Marquardt's scaled damping (A + mu diag(A)) h = -g through the StepSolver interface; the
    system is a tuple (A, diag A) so the loop's per-problem selection walks a tree."""

    def __call__(self, system, g, mu):
        a, d = system
        h, ok, _ = super().__call__(a + (mu[:, None] * d - mu[:, None])[..., None] * mx.eye(a.shape[-1]), g, mu)
        hs = mx.stop_gradient(h)
        return h, ok, 0.5 * mx.sum(hs * (mu[:, None] * d * hs - g), axis=-1)

    def max_diagonal(self, system):
        return mx.ones(system[1].shape[:-1])


def test_lm_loop_takes_a_custom_step_solver_and_tree_system():
    linearize, retract, x0, (ta, tc) = _two_block_problem(3)

    def lin_tree(x):
        cost, a, g = linearize(x)
        return cost, (a, mx.diagonal(a, axis1=-2, axis2=-1)), g

    res = lm_loop(lin_tree, x0, retract, (3,), solve_step=_DiagonalScaledStep(), max_iters=30)
    np.testing.assert_allclose(np.array(res.x[0]), np.array(ta), atol=1e-4)
    assert isinstance(res.hessian, tuple) and bool(mx.all(res.converged))


def test_lm_loop_compiles_at_two_batch_sizes_with_tuple_parameters():
    def make(b: int):
        return _two_block_problem(b)[3]

    def fn(ta, tc):
        b = ta.shape[0]

        def linearize(x):
            r = mx.concatenate([x[0] - ta, 2.0 * (x[1] - tc)], axis=-1)
            J = mx.broadcast_to(mx.diag(mx.array([1.0, 1.0, 2.0])), (b, 3, 3))
            return (*weighted_cost(r, 1, None)[:1], *normal_equations(r, J, mx.ones_like(r)))

        res = lm_loop(linearize, (mx.zeros((b, 2)), mx.zeros((b, 1))), lambda x, h: (x[0] + h[:, :2], x[1] + h[:, 2:]),
                      (b,), max_iters=3)
        return (*res.x, res.cost, res.status)

    assert_device_safe(fn, make)


def test_vector_retract_adds():
    assert vector_retract(mx.array([1.0]), mx.array([2.0])).item() == 3.0


def test_half_precision_start_returns_every_float_field_in_its_dtype():
    res = levenberg_marquardt(lambda x: x * x - 2.0, mx.array([[1.0], [3.0]], dtype=mx.float16))
    assert all(getattr(res, k).dtype == mx.float16 for k in ("x", "cost", "initial_cost", "damping", "hessian"))
    np.testing.assert_allclose(np.array(res.x, dtype=np.float32), np.sqrt(2.0), rtol=1e-3)
