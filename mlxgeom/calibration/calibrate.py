"""``calibrate_camera``: intrinsics, distortion and board poses of many cameras at once, like ``cv2.calibrateCamera``.

Zhang's closed form (:mod:`mlxgeom.calibration.zhang`) starts one Levenberg-Marquardt per
camera (:func:`mlxgeom.solve.lm_loop`) over ``x = (theta, poses)``: the intrinsics vector
``theta = [fx, fy, cx, cy, skew, dist]`` (:mod:`mlxgeom.calibration.parameters`) and every
view's board-to-camera pose. The residuals are the reprojection errors of the board points
through the one projection core, :func:`mlxgeom.camera.project_points_jacobian`, whose analytic
``d_intrinsics``, ``d_dist`` and ``d_pose`` are the Jacobian; poses step on SE(3) with the
perturbation side that ``d_pose`` states (docs/conventions.md). The normal equations are
arrow-shaped and solved by :class:`mlxgeom.calibration.arrow_step.ArrowStep` (the poses
eliminated by the Schur complement). Everything is batched over the cameras, with no host sync.
The LM loop is unrolled eagerly (compiling all its iterations at once takes minutes on the CPU
backend), but each iteration is three compiled cores (linearization, step, retraction) plus the
loop's bookkeeping, and Zhang's init and the final summary are one core each.

Standard deviations as OpenCV's ``stdDeviationsIntrinsics``: the intrinsics block of the
inverse Gauss-Newton matrix at the solution (the inverse of the Schur complement) times the
residual variance ``sigma^2 = sum |r|^2 / (2 N_points - N_free)``, computed from QR factors of the
Jacobian rather than the normal equations (the rational model's near-null k1..k3 / k4..k6
direction squares to more than float32 holds; its deviations are then right to tens of percent,
the K entries' to about 1 %).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import mlx.core as mx
import numpy as np

from .. import linalg
from ..linalg.qr import qr_columns
from ..linalg.triangular import substitute
from .._checks import as_floats, broadcast_batch, cast_out, check_trailing
from .._compiled import compiled
from .._vmap import all_of, any_of
from ..camera import Camera, project_points_jacobian
from ..lie import se3_compose, se3_exp
from ..solve import RobustLoss, get_loss, lm_loop, normal_equations, weighted_cost
from .arrow_step import ArrowStep, ArrowSystem
from .parameters import ParameterLayout, parameter_layout
from .reasons import CalibrationReason
from .zhang import ZhangInit, zhang_init


# lm_loop's step test |h| <= xtol |x| compares pixels (fx) with radians and lens coefficients:
# a step of 1e-3 in k1 still matters, so stopping is left to the cost test (ftol).
_XTOL = 1e-12


class CalibrationResult(NamedTuple):
    """Per-camera result of :func:`calibrate_camera`; a tuple, so it crosses ``mx.compile``.

    Attributes:
        camera: :class:`mlxgeom.camera.Camera` batch (*) with K, dist, size (pose the identity);
            K the identity and dist 0 where not ``ok``.
        poses: (*, V, 4, 4) board-to-camera poses (``x_cam = R x_board + t``, OpenCV's rvecs/tvecs).
        rms: (*) RMS reprojection error over all points, pixels (OpenCV's return value); inf where not ok.
        view_errors: (*, V) RMS per view (OpenCV's ``perViewErrors``).
        std_intrinsics: (*, 5 + k) standard deviations of ``[fx, fy, cx, cy, skew, dist...]`` (0 for
            fixed entries; OpenCV's ``stdDeviationsIntrinsics`` without the skew entry).
        ok: (*) bool, ``reason == CalibrationReason.OK``.
        reason: (*) int32 :class:`CalibrationReason` (text: :func:`reason_text`).
        iterations: (*) int32 LM iterations run.
    """

    camera: Camera
    poses: mx.array
    rms: mx.array
    view_errors: mx.array
    std_intrinsics: mx.array
    ok: mx.array
    reason: mx.array
    iterations: mx.array


def _K(theta: mx.array) -> mx.array:
    """(*, 3, 3) from theta's first five entries [fx, fy, cx, cy, skew]."""
    fx, fy, cx, cy, s = (theta[..., i] for i in range(5))
    zero, one = mx.zeros_like(fx), mx.ones_like(fx)
    return mx.stack([fx, s, cx, zero, fy, cy, zero, zero, one], axis=-1).reshape(*fx.shape, 3, 3)


def _dist(theta: mx.array) -> mx.array | None:
    """(*, 1, k) distortion broadcast over the views, None for the pinhole model."""
    return theta[..., None, 5:] if theta.shape[-1] > 5 else None


class _Problem(NamedTuple):
    board: mx.array  # (*, V, N, 3)
    image: mx.array  # (*, V, N, 2), 0 where missing
    weight: mx.array  # (*, V, N), 1 for observed points


class _Scale(NamedTuple):
    """Per-camera column scaling of the tangent, ``h_actual = D h``: intrinsics (B, n), poses (B, V, 6)."""

    intrinsics: mx.array
    poses: mx.array


def _unit_scale(prob: _Problem, n: int) -> _Scale:
    b, v = prob.weight.shape[:2]
    return _Scale(mx.ones((b, n), dtype=prob.board.dtype), mx.ones((b, v, 6), dtype=prob.board.dtype))


def _jacobi_scale(system: ArrowSystem) -> _Scale:
    """``D = diag(A)^-1/2`` of the system at x0 (Marquardt's scaling, fixed at the start): every
    column of J D has unit norm there, so LM's isotropic damping ``mu I`` treats pixels, radians
    and lens coefficients alike (the weak k3 column would otherwise be damped ~1e6x harder)."""

    def inv_sqrt(d: mx.array) -> mx.array:
        good = all_of(mx.isfinite(d), d > 0)
        return mx.where(good, 1.0 / mx.sqrt(mx.where(good, d, 1.0)), 1.0)

    return _Scale(inv_sqrt(mx.diagonal(system.U, axis1=-2, axis2=-1)),
                  inv_sqrt(mx.diagonal(system.P, axis1=-2, axis2=-1)))


def _linearize(prob: _Problem, M: mx.array, lens: str, loss: RobustLoss | None, scale: _Scale):
    """``linearize(x)`` for :func:`lm_loop`; M (n, n) the layout's tangent map."""
    core = _linearize_core(lens, loss)

    def linearize(x):
        cost, U, W, P, g = core(*prob, M, *scale, *x)
        return cost, ArrowSystem(U, W, P), g

    return linearize


@functools.cache
def _linearize_core(lens: str, loss: RobustLoss | None):
    """One LM linearization as one compiled core per (lens, loss): eager, its ~1400 small ops
    ran one by one in each of the 31 linearizations of a call (and each distinct one is a
    kernel of its own on the GPU)."""

    @compiled
    def core(board, image, weight, M, scale_intrinsics, scale_poses, theta, poses):
        n = M.shape[-1]
        dist = _dist(theta)
        pj = project_points_jacobian(board, _K(theta)[..., None, :, :], poses, dist, lens)
        observed = weight > 0
        r = mx.where(observed[..., None], pj.pixels - image, 0.0)
        parts = [pj.d_intrinsics, pj.d_pose] if dist is None else [pj.d_intrinsics, pj.d_dist, pj.d_pose]
        J = mx.concatenate(parts, axis=-1)
        shape = (*r.shape[:-2], 2 * r.shape[-2])
        r, J = r.reshape(shape), J.reshape(*shape, n + 6)
        cost, w = weighted_cost(r, 2, loss)
        # Per view (*, V, n + 6, n + 6) in the raw parameters; the tangent map T = diag(M D, D_v)
        # (J T the tangent's Jacobian) is applied to these small matrices, not to every point's row.
        A, g = normal_equations(r, J, w * mx.repeat(weight, 2, axis=-1))
        # An observed point that left the image model (behind the camera, diverged lens) rejects the step.
        lost = mx.any(all_of(observed, ~pj.valid), axis=(-2, -1))
        cost = mx.where(lost, mx.inf, mx.sum(cost, axis=-1))
        MD = M * scale_intrinsics[:, None, :]  # (*, n, n)
        MDt = MD.swapaxes(-1, -2)
        U = linalg.matmul(MDt, linalg.matmul(mx.sum(A[..., :n, :n], axis=-3), MD))
        U = U + mx.diag((~mx.any(M != 0, axis=0)).astype(U.dtype))  # fixed entries: a unit pivot, zero gradient
        W = linalg.matmul(MDt[:, None], A[..., :n, n:]) * scale_poses[..., None, :]
        P = A[..., n:, n:] * scale_poses[..., :, None] * scale_poses[..., None, :]
        g_i = linalg.matmul(MDt, mx.sum(g[..., :n], axis=-2)[..., None])[..., 0]
        g_p = g[..., n:] * scale_poses
        return cost, U, W, P, mx.concatenate([g_i, g_p.reshape(*g_p.shape[:-2], -1)], axis=-1)

    return core


def _retract(M: mx.array, scale: _Scale):
    """``retract(x, h)`` for :func:`lm_loop`; M (n, n) the layout's tangent map."""

    def retract(x, h):
        return _retract_core(M, *scale, *x, h)

    return retract


@compiled
def _retract_core(M, scale_intrinsics, scale_poses, theta, poses, h):
    n = M.shape[-1]
    step = mx.sum(M * (h[..., None, :n] * scale_intrinsics[:, None, :]), axis=-1)
    xi = h[..., n:].reshape(*poses.shape[:-2], 6) * scale_poses
    # d_pose of project_points_jacobian is the RIGHT perturbation T <- T exp(xi) (docs/conventions.md).
    return theta + step, se3_compose(poses, se3_exp(xi))


def _initial_theta(init, image_size: mx.array, layout: ParameterLayout) -> mx.array:
    K = init.K
    fx, fy, cx, cy = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]
    if layout.fix_aspect_ratio:
        fy = 0.5 * (fx / layout.aspect_ratio + fy)
        fx = layout.aspect_ratio * fy
    if layout.fix_principal_point:  # OpenCV's principal point without an intrinsic guess
        cx, cy = 0.5 * (image_size[..., 0] - 1), 0.5 * (image_size[..., 1] - 1)
    cx, cy = mx.broadcast_to(cx, fx.shape), mx.broadcast_to(cy, fx.shape)
    dist = mx.zeros((*fx.shape, layout.num_dist), dtype=K.dtype)
    if layout.lens == "opencv" and layout.num_dist:
        held = dict(zip(layout.names, layout.fixed))
        k12 = init.radial * mx.array([0.0 if held["k1"] else 1.0, 0.0 if held["k2"] else 1.0], dtype=K.dtype)
        dist = mx.concatenate([k12, dist[..., 2:]], axis=-1)
    return mx.concatenate([mx.stack([fx, fy, cx, cy, mx.zeros_like(fx)], axis=-1), dist], axis=-1)


def _errors(px, image, weight) -> tuple[mx.array, mx.array, mx.array]:
    """Plain squared reprojection errors of the projected board ``px`` (*, V, N, 2): (sum over all
    (*), per view sum (*, V), per view count (*, V))."""
    e2 = mx.where(weight > 0, mx.sum((px - image) ** 2, axis=-1), 0.0)
    per_view = mx.sum(e2, axis=-1)
    count = mx.sum(weight, axis=-1)
    return mx.sum(per_view, axis=-1), per_view, count


def _std_intrinsics(pj, weight, M: mx.array, scale: mx.array, sq_sum: mx.array,
                    points: mx.array) -> tuple[mx.array, mx.array]:
    """``(sqrt(diag(M D S^-1 D M^T) sigma^2), ok)`` with S the Schur complement of the Gauss-Newton
    matrix in the scaled tangent, through the R factor of the pose-eliminated Jacobian: each view's
    ``[J_pose | J_intrinsics]`` is factored by QR, and the intrinsics rows of those R factors,
    stacked over the views, once more (S = R^T R). Forming S squares the Jacobian's condition
    number, which the rational and thin-prism models push past what float32 keeps. ``pj``: the
    board's projection with its Jacobians at the solution; weight (*, V, N)."""
    n, views = M.shape[-1], weight.shape[-2]
    parts = [pj.d_intrinsics] if pj.d_dist is None else [pj.d_intrinsics, pj.d_dist]
    rows = (*pj.d_pose.shape[:-3], 2 * pj.d_pose.shape[-3])
    w = mx.repeat(mx.where(pj.valid, weight, 0.0), 2, axis=-1)[..., None]
    MD = M * scale[:, None, :]
    J_int = linalg.matmul(mx.concatenate(parts, axis=-1).reshape(*rows, n), MD[:, None]) * w
    _, R = qr_columns(mx.concatenate([pj.d_pose.reshape(*rows, 6) * w, J_int], axis=-1))
    R_int = R[..., 6:, 6:].reshape(*R.shape[:-3], views * n, n)
    R = qr_columns(R_int)[1]
    live = mx.any(M != 0, axis=0)
    pivot = mx.diagonal(R, axis1=-2, axis2=-1)
    norm = mx.sqrt(mx.sum(R_int * R_int, axis=-2))
    ok = all_of(mx.all(any_of(~live, pivot > 1e-6 * norm), axis=-1), mx.all(mx.isfinite(R), axis=(-2, -1)))
    R = R + mx.diag((~live).astype(R.dtype))
    # diag(M' S^-1 M'^T) with M' = M diag(live * scale): the column sums of Z * Z, Z = R^-T M'^T.
    Mt = (M * (live * scale)[:, None, :]).swapaxes(-1, -2)
    Z = substitute(R.swapaxes(-1, -2), Mt, upper=False)
    var = mx.sum(Z * Z, axis=-2)
    dof = 2.0 * points - (mx.sum(live) + 6 * views)
    sigma2 = mx.where(dof > 0, sq_sum / mx.where(dof > 0, dof, 1.0), 0.0)
    return mx.sqrt(var * sigma2[..., None]), ok


def _summary(board, image, weight, M, scale_intrinsics, theta, poses, cost, init_ok, init_reason,
             lens: str) -> tuple[mx.array, ...]:
    """Errors, standard deviations and the not-ok placeholders at the LM solution:
    (theta, poses, rms, view_errors, std, ok, reason). Eager: once per call (~15 ms on the CPU),
    where compiled it was ~20 distinct fused kernels to build on the first call."""
    pj = project_points_jacobian(board, _K(theta)[..., None, :, :], poses, _dist(theta), lens)
    sq_sum, per_view, count = _errors(pj.pixels, image, weight)
    points = mx.sum(count, axis=-1)
    reason = mx.where(all_of(init_ok, ~mx.isfinite(cost)), int(CalibrationReason.NOT_FINITE), init_reason)
    ok = reason == int(CalibrationReason.OK)
    std, std_ok = _std_intrinsics(pj, weight, M, scale_intrinsics, sq_sum, points)
    std = mx.where(std_ok[..., None], std, 0.0)
    placeholder = mx.concatenate([mx.ones(2, dtype=theta.dtype), mx.zeros(theta.shape[-1] - 2, dtype=theta.dtype)])
    theta = mx.where(ok[..., None], theta, placeholder)
    rms = mx.where(ok, mx.sqrt(sq_sum / mx.maximum(points, 1.0)), mx.inf)
    view_errors = mx.where(ok[..., None], mx.sqrt(per_view / mx.maximum(count, 1.0)), mx.inf)
    poses = mx.where(ok[..., None, None, None], poses, mx.eye(4, dtype=poses.dtype))
    return theta, poses, rms, view_errors, mx.where(ok[..., None], std, 0.0), ok, reason.astype(mx.int32)


def _inputs(object_points: Any, image_points: Any, image_size: Any) -> tuple[_Problem, mx.array, mx.Dtype]:
    if not isinstance(image_size, mx.array) and not np.all(np.asarray(image_size, dtype=np.float64) > 0):
        raise ValueError(f"image_size: expected [width, height] > 0 pixels, got {np.asarray(image_size).tolist()}")
    (obj, img, size), out = as_floats(object_points, image_points, image_size,
                                      names=("object_points", "image_points", "image_size"))
    check_trailing(obj, (None, None, 3), "object_points")
    check_trailing(img, (None, None, 2), "image_points")
    check_trailing(size, (2,), "image_size")
    if obj.shape[-3:-1] != img.shape[-3:-1]:
        raise ValueError(f"image_points: expected (*, V, N, 2) with (V, N) = {tuple(obj.shape[-3:-1])} as in "
                         f"object_points, got {tuple(img.shape)}")
    batch = broadcast_batch(obj.shape[:-3], img.shape[:-3], size.shape[:-1],
                            names=("object_points", "image_points", "image_size"))
    views, n = obj.shape[-3:-1]
    if views == 0 or n == 0:
        raise ValueError(f"object_points: expected (*, V, N, 3) with at least one view and one point, "
                         f"got {tuple(obj.shape)}")
    obj = mx.broadcast_to(obj, (*batch, views, n, 3))
    img = mx.broadcast_to(img, (*batch, views, n, 2))
    size = mx.broadcast_to(size, (*batch, 2))
    observed = all_of(mx.all(mx.isfinite(img), axis=-1), mx.all(mx.isfinite(obj), axis=-1))
    prob = _Problem(mx.where(observed[..., None], obj, 0.0), mx.where(observed[..., None], img, 0.0),
                    observed.astype(obj.dtype))
    return prob, size, out


def calibrate_camera(
    object_points: Any,
    image_points: Any,
    image_size: Any,
    *,
    model: str = "opencv5",
    fix: Sequence[str] = ("skew",),
    aspect_ratio: float = 1.0,
    loss: RobustLoss | str | None = None,
    loss_scale: float = 1.0,
    max_iters: int = 30,
) -> CalibrationResult:
    """Calibrate cameras from views of a planar board, all cameras at once on the device.

    One problem per camera (the leading batch dims): Zhang's closed-form initialisation, then
    one Levenberg-Marquardt over the intrinsics, the distortion and every view's pose (module
    docstring). Views or points may be missing: non-finite image points are ignored.

    Args:
        object_points: (*, V, N, 3) board points in the board plane z = 0 (e.g.
            :func:`mlxgeom.calibration.board_points`), broadcast over the cameras.
        image_points: (*, V, N, 2) their detected pixels (NaN for a missing point).
        image_size: (*, 2) or (2,) ``[width, height]`` in pixels, > 0 (checked when given as a list,
            tuple or numpy array; an ``mx.array`` is not read back to the host).
        model: lens model, ``"pinhole"``, ``"opencv4"``, ``"opencv5"`` (OpenCV's default),
            ``"opencv8"`` (``CALIB_RATIONAL_MODEL``), ``"opencv12"`` (``+ CALIB_THIN_PRISM_MODEL``),
            ``"opencv14"`` (``+ CALIB_TILTED_MODEL``) or ``"fisheye"`` (Kannala-Brandt k1..k4).
        fix: parameters held fixed (:mod:`mlxgeom.calibration.parameters` lists the names and
            the OpenCV flags they mirror); default ``("skew",)`` as OpenCV.
        aspect_ratio: fx / fy held with ``"aspect_ratio"`` in ``fix``.
        loss, loss_scale: robust loss on each point's squared error (None, a
            :class:`mlxgeom.solve.RobustLoss` or its name, e.g. ``"huber"``, scale in pixels).
        max_iters: LM iterations (static; converged cameras are frozen).

    Returns:
        :class:`CalibrationResult`; ``ok`` False with a ``reason`` for degenerate view sets
        (fewer than 3 usable views, boards all parallel) instead of a wrong calibration.

    Example:
        >>> from mlxgeom.calibration import synthetic_views
        >>> obj, img, K, dist, poses = synthetic_views(num_views=12, noise=0.2)
        >>> res = calibrate_camera(obj, img, [640, 480])
        >>> bool(mx.allclose(res.camera.K, K, atol=5.0)), res.ok.item(), res.rms.item() < 0.3
        (True, True, True)
    """
    layout = parameter_layout(model, fix, aspect_ratio)
    if max_iters < 0:
        raise ValueError(f"max_iters: expected >= 0, got {max_iters}")
    prob, size, out = _inputs(object_points, image_points, image_size)
    batch = prob.weight.shape[:-2]
    # One flat camera axis inside: lm_loop's masks then always have a batch dim (MLX 0.32
    # segfaults on reshape() of a 0-d array, which a scalar batch would hit).
    flat = _Problem(*(a.reshape(-1, *a.shape[len(batch):]) for a in prob))
    res = _calibrate(flat, size.reshape(-1, 2), layout, get_loss(loss, loss_scale), max_iters)
    cam = res.camera
    K, dist, size = (cast_out(a.reshape((*batch, *a.shape[1:])), out) for a in (cam.K, cam.dist, cam.size))
    camera = Camera(K, dist=dist, size=size, model=layout.lens)
    fields = [a.reshape((*batch, *a.shape[1:])) for a in res[1:]]
    return CalibrationResult(camera, *(cast_out(a, out) if a.dtype in (mx.float32, mx.float64) else a
                                       for a in fields))


def _zhang(board, image, size, weight, fix_skew: bool) -> tuple[mx.array, ...]:
    """:func:`zhang_init`, eager: its ~2900 small ops run once per call (~50 ms on the CPU), where
    compiled they were ~120 distinct fused kernels, two minutes of g++ on the first call."""
    return tuple(zhang_init(board, image, size, weight, fix_skew))


def _calibrate(prob: _Problem, size: mx.array, layout: ParameterLayout, loss: RobustLoss | None,
               max_iters: int) -> CalibrationResult:
    """:func:`calibrate_camera` on checked inputs with one flat camera axis (B,)."""
    init = ZhangInit(*_zhang(prob.board, prob.image, size, prob.weight, bool(layout.fixed[4])))
    x0 = (_initial_theta(init, size, layout), init.poses)
    M = mx.array(layout.tangent, dtype=prob.board.dtype)
    scale = _jacobi_scale(_linearize(prob, M, layout.lens, loss, _unit_scale(prob, layout.size))(x0)[1])
    res = lm_loop(_linearize(prob, M, layout.lens, loss, scale), x0, _retract(M, scale), prob.weight.shape[:1],
                  solve_step=ArrowStep(), max_iters=max_iters, xtol=_XTOL)
    theta, poses, *fields = _summary(*prob, M, scale.intrinsics, *res.x, res.cost, init.ok,
                                     init.reason, layout.lens)
    camera = Camera(_K(theta), dist=theta[..., 5:], size=size, model=layout.lens)
    return CalibrationResult(camera, poses, *fields, res.iterations)
