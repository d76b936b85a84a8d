"""Bundle adjustment: poses, points and (optionally) intrinsics refined by the one LM loop.

Minimises ``F = 0.5 sum_i rho(||pi(K_g(i), T_c(i), X_p(i)) - x_i||^2)`` over the world-to-camera
poses T (C, 4, 4), the points X (P, 3) and, with ``refine_intrinsics``, the intrinsics of the
camera groups g, for BAL-style observations (observation i sees point ``point_index[i]`` from
image ``camera_index[i]`` at pixel ``observations[i]``). Residuals and Jacobians come from the one
projection core (:func:`mlxgeom.camera.project_points_jacobian`); the normal equations are built
block-sparse and solved through the Schur complement (:mod:`mlxgeom.solve.sparse`), inside
:func:`mlxgeom.solve.lm_loop` (Triggs et al., "Bundle Adjustment - A Modern Synthesis", 2000).

Updates: poses ``T <- T exp(xi)`` (right perturbation, ``xi = [rho, phi]``), points ``X <- X + h``,
focal lengths as relative scales ``f = s f_0``, the principal point in pixels and the distortion
coefficients additively.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import mlx.core as mx
import numpy as np

from .. import lie
from .._checks import as_float, check_trailing
from .._compiled import eager
from .._indexing import take, take_index_values
from .._vmap import all_of, any_of
from ..camera import Camera, project_points_jacobian
from ..linalg import matmul
from ..solve.lm import lm_loop
from ..solve.losses import RobustLoss, get_loss
from ..solve.normal_equations import weighted_cost
from ..solve.sparse import BlockStructure, SchurStep, block_normal_equations, flat_gradient, resolve_linear_solver

#: Intrinsic parameters ``refine_intrinsics`` may name; True means ("focal", "distortion"). "focal" is
#: one scale of fx and fy (their ratio kept), "focal_xy" two; "distortion" all coefficients, or single
#: coefficients by OpenCV name (``OPENCV_COEFFS``, fisheye: k1..k4).
INTRINSICS = ("focal", "focal_xy", "principal_point", "distortion")
OPENCV_COEFFS = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6", "s1", "s2", "s3", "s4", "tau_x", "tau_y")


class BundleResult(NamedTuple):
    """Result of :func:`bundle_adjust`.

    Attributes:
        poses: (C, 4, 4) refined world-to-camera poses.
        points: (P, 3) refined points.
        cameras: the input :class:`~mlxgeom.camera.Camera` batch with refined K and dist (its pose
            field unchanged).
        cost: () final ``0.5 sum_i rho(||r_i||^2)`` over the valid observations.
        initial_cost: () the same at the start.
        iterations: () int32 LM iterations run.
        ok: () bool, the cost is finite and the solver converged or ran out of iterations
            while still improving.
        status: () int32 :class:`mlxgeom.solve.LMStatus` code.
        residual: (O, 2) final reprojection residuals in pixels (0 where not valid).
        valid: (O,) bool, the observation took part: finite pixel, in front of its camera at the start.
    """

    poses: mx.array
    points: mx.array
    cameras: Camera
    cost: mx.array
    initial_cost: mx.array
    iterations: mx.array
    ok: mx.array
    status: mx.array
    residual: mx.array
    valid: mx.array


class _Intrinsics:
    """Which intrinsics are refined, per camera group, as offsets q (G, di) from the start (q = 0):
    ``f = f_0 (1 + q_f)``, ``c = c_0 + q_c``, ``dist = dist_0 + q_d E`` (E selects the coefficients)."""

    def __init__(self, cameras: Camera, refine: bool | Sequence[str], num_groups: int, dtype: mx.Dtype):
        names = ("focal", "distortion") if refine is True else () if refine is False else tuple(refine)
        self.K0 = mx.broadcast_to(cameras.K, (num_groups, 3, 3)).astype(dtype)
        self.dist0 = mx.broadcast_to(cameras.dist, (num_groups, cameras.dist.shape[-1])).astype(dtype)
        k, self.model = self.dist0.shape[-1], cameras.model
        coeff_names = OPENCV_COEFFS[:k]
        bad = [n for n in names if n not in INTRINSICS and n not in coeff_names]
        if bad or ("focal" in names and "focal_xy" in names):
            raise ValueError(f"refine_intrinsics: expected True, False or names from {INTRINSICS} or of the "
                             f"{k} distortion coefficients {coeff_names} (not both focal and focal_xy), got {refine!r}")
        self.focal = 1 if "focal" in names else 2 if "focal_xy" in names else 0
        self.principal = "principal_point" in names
        self.coeffs = list(range(k)) if "distortion" in names else [i for i, n in enumerate(coeff_names) if n in names]
        self.dof = self.focal + 2 * self.principal + len(self.coeffs)
        self.select = mx.array(np.eye(k, dtype=np.float32)[self.coeffs].reshape(len(self.coeffs), k)).astype(dtype)

    def initial(self) -> mx.array:
        return mx.zeros((self.K0.shape[0], self.dof), dtype=self.K0.dtype)

    def values(self, q: mx.array) -> tuple[mx.array, mx.array]:
        """(K (G, 3, 3), dist (G, k)) at the offsets q (G, di)."""
        K, g = self.K0, self.K0.shape[0]
        zero = mx.zeros((g,), dtype=K.dtype)
        sx = sy = zero
        if self.focal:
            sx, sy = q[:, 0], q[:, self.focal - 1]
        cx = cy = zero
        if self.principal:
            cx, cy = q[:, self.focal], q[:, self.focal + 1]
        delta = mx.stack([mx.stack([K[:, 0, 0] * sx, zero, cx], -1), mx.stack([zero, K[:, 1, 1] * sy, cy], -1),
                          mx.zeros((g, 3), dtype=K.dtype)], axis=1)
        start = self.focal + 2 * self.principal
        if not self.coeffs:
            return K + delta, self.dist0
        return K + delta, self.dist0 + matmul(q[:, start:], self.select)

    def jacobian(self, d_intrinsics: mx.array, d_dist: mx.array, K0_obs: mx.array) -> mx.array:
        """(O, 2, di) d pixel / d q from the projection core's (O, 2, 5) and (O, 2, k)."""
        fx0, fy0 = K0_obs[:, None, 0, 0], K0_obs[:, None, 1, 1]
        cols = []
        if self.focal == 1:
            cols.append(d_intrinsics[..., 0] * fx0 + d_intrinsics[..., 1] * fy0)
        elif self.focal == 2:
            cols += [d_intrinsics[..., 0] * fx0, d_intrinsics[..., 1] * fy0]
        if self.principal:
            cols += [d_intrinsics[..., 2], d_intrinsics[..., 3]]
        cols += [d_dist[..., i] for i in self.coeffs]
        return mx.stack(cols, axis=-1)


def _groups(cameras: Camera, num_images: int, intrinsics_index: Any) -> tuple[int, np.ndarray]:
    """Number of intrinsics groups G and the group of each image (C,)."""
    shape = cameras.batch_shape
    if len(shape) > 1:
        raise ValueError(f"cameras: expected a () or (G,) batch, got {shape}")
    g = shape[0] if shape else 1
    if intrinsics_index is not None:
        idx = _indices(intrinsics_index, g, "intrinsics_index").reshape(-1)
        if idx.shape != (num_images,):
            raise ValueError(f"intrinsics_index: expected ({num_images},) ints in [0, {g})")
        return g, idx
    if g == 1:
        return 1, np.zeros(num_images, dtype=np.int64)
    if g != num_images:
        raise ValueError(f"cameras: a batch of {g} cameras for {num_images} poses needs intrinsics_index")
    return g, np.arange(num_images)


def _indices(values: Any, n: int, name: str) -> np.ndarray:
    """Host int64 copy of index values (any shape), each an integer in [0, n)."""
    v = np.asarray(values)
    if v.size and not (np.issubdtype(v.dtype, np.integer) or (np.issubdtype(v.dtype, np.floating)
                                                              and np.all(v == np.round(v)))):
        raise ValueError(f"{name}: expected integer indices, got {v.dtype} values such as {v.reshape(-1)[0]!r}")
    v = v.astype(np.int64)
    if v.size and (v.min() < 0 or v.max() >= n):
        raise ValueError(f"{name}: indices must lie in [0, {n}), got {v.min()}..{v.max()}")
    return v


def _mask(fix: Any, n: int, name: str) -> mx.array:
    """(n,) float mask of the free entries from None, a bool mask (n,) or an index list."""
    if fix is None:
        return mx.ones((n,))
    f = np.asarray(fix)
    if f.dtype == bool:
        if f.shape != (n,):
            raise ValueError(f"{name}: expected a ({n},) bool mask or indices, got shape {f.shape}")
        return mx.array((~f).astype(np.float32))
    free = np.ones(n, dtype=np.float32)
    free[_indices(f, n, name).reshape(-1)] = 0.0
    return mx.array(free)


def _gauge(poses: mx.array, fix_poses: Any, fix_points: Any) -> mx.array:
    """(C, 6) mask of the free pose coordinates.

    Default gauge: pose 0 fixed, and the scale through the pose farthest from it (a long baseline
    keeps the scale well determined; a short one leaves a nearly free mode that LM crawls along).
    With ``T_j <- T_j exp(xi)`` pose j's translation moves by ``R_j rho``, so the rho coordinate
    along the baseline (the largest entry of ``R_j^T t_rel``, ``t_rel`` the translation of pose j
    relative to pose 0) is held. Chosen on the device (argmax), no host sync. Where the caller fixes
    poses or points, those are the gauge.
    """
    c = poses.shape[0]
    free = mx.broadcast_to(_mask(fix_poses, c, "fix_poses")[:, None], (c, 6))
    if fix_poses is not None or fix_points is not None or c < 2:
        return free
    rel = lie.se3_compose(poses, lie.se3_inverse(poses[0]))[:, :3, 3]  # (C, 3), |t_rel| = centre distance
    far = mx.argmax(mx.sum(rel * rel, axis=-1)).astype(mx.int32)
    baseline = mx.sum(poses[far, :3, :3] * rel[far][:, None], axis=0)  # R_j^T t_rel
    held = all_of((mx.arange(c) == far)[:, None], (mx.arange(6) == mx.argmax(mx.abs(baseline)))[None, :])
    first = (mx.arange(c) == 0)[:, None]
    return mx.where(any_of(held, first), 0.0, free)


class _Problem:
    """Residuals, Jacobians and the block-sparse system of one BA problem at a state x."""

    def __init__(self, observations, groups, intr, pose_free, point_free, loss, structure, min_depth):
        self.intr = intr
        # Residuals are evaluated in the structure's row layout (observations sorted by camera, runs
        # padded with inert rows), so the normal equations need no gather; results go back by rows.slot.
        rows = structure.rows
        self.cam, self.pt = rows.camera, rows.point
        self.loss, self.structure = loss, structure
        self.min_depth = min_depth
        self.group_of_obs = take_index_values(mx.array(groups.astype(np.int32)), self.cam, 0, bound=groups.size)
        obs = observations[rows.source]
        self.finite_obs = all_of(rows.real, mx.all(mx.isfinite(obs), axis=-1))
        self.active = self.finite_obs  # narrowed to the observations valid at the start
        # Per-observation constants, gathered once rather than in every linearisation.
        self.clean_obs = mx.where(self.finite_obs[:, None], obs, 0.0)
        self.pose_free_obs = pose_free[self.cam][:, None, :]
        self.point_free_obs = point_free[self.pt][:, None, None]
        self.intr_obs = None if intr.dof else self._intrinsics_of_observations(())

    def _intrinsics_of_observations(self, x):
        """(K (O, 3, 3), dist (O, k) or None) of each observation at x."""
        K, dist = self.intr.values(x[2]) if self.intr.dof else (self.intr.K0, self.intr.dist0)
        g = self.group_of_obs
        return K[g], dist[g] if dist.shape[-1] else None

    def project(self, x):
        poses, points = x[0], x[1]
        K, d = self.intr_obs if self.intr_obs is not None else self._intrinsics_of_observations(x)
        pj = project_points_jacobian(points[self.pt][:, None, :], K, poses[self.cam], d, self.intr.model,
                                     self.min_depth)
        return pj, self.group_of_obs

    def linearize(self, x):
        pj, g = self.project(x)
        valid = all_of(pj.valid[:, 0], self.active)
        r = mx.where(valid[:, None], pj.pixels[:, 0] - self.clean_obs, 0.0)
        cost, w = weighted_cost(r.reshape(-1), 2, self.loss)
        # An observation that was valid at the start and is not any more (behind the camera) makes the
        # point unusable: the trial is rejected instead of dropping the residual.
        cost = cost + mx.where(mx.any(all_of(self.active, ~pj.valid[:, 0])), mx.inf, 0.0)
        weight = mx.where(valid, w[::2], 0.0)
        jp = mx.where(valid[:, None, None], pj.d_points[:, 0], 0.0) * self.point_free_obs
        jc = pj.d_pose[:, 0] * self.pose_free_obs
        if self.intr.dof:
            jc = mx.concatenate([jc, self.intr.jacobian(pj.d_intrinsics[:, 0], pj.d_dist[:, 0], self.intr.K0[g])], -1)
        jc = mx.where(valid[:, None, None], jc, 0.0)
        system = block_normal_equations(self.structure, jc, jp, r, weight, in_rows=True)
        return cost, system, flat_gradient(system)

    @eager()
    def retract(self, x, h):
        # C poses, once per iteration: eager ops cost less than the ~20 fused kernels se3_exp and
        # the compose would compile on the first call.
        st = self.structure
        nc = st.num_cameras * 6
        poses = lie.se3_compose(x[0], lie.se3_exp(h[:nc].reshape(-1, 6)))
        points = x[1] + h[st.reduced_size:].reshape(-1, 3)
        if not self.intr.dof:
            return poses, points
        return poses, points, x[2] + h[nc:st.reduced_size].reshape(x[2].shape)


def bundle_adjust(cameras: Camera, poses: Any, points: Any, observations: Any, *, point_index: Any,
                  camera_index: Any, intrinsics_index: Any = None, fix_poses: Any = None, fix_points: Any = None,
                  refine_intrinsics: bool | Sequence[str] = False, loss: RobustLoss | str | None = None,
                  loss_scale: float = 1.0, max_iters: int = 50, linear_solver: str = "auto",
                  pcg_iterations: int = 50, chunk: int = 5, tau: float = 1e-4, min_depth: float = 1e-6,
                  progress: Callable[[int, float], None] | None = None) -> BundleResult:
    """Bundle adjustment of world-to-camera poses, points and optionally intrinsics.

    The observation graph (``camera_index``, ``point_index``, ``intrinsics_index``, the fix
    masks) is read on the host once, like Ceres' symbolic analysis; the LM iterations run on the
    device in chunks of ``chunk`` iterations, between which the result is evaluated (bounded graph
    size, early exit once converged, ``progress`` calls). The damping carries over between chunks.
    That outer loop reads one scalar per chunk on the host, so the call itself is not for
    ``mx.compile``: every chunk's iterations run without a sync.

    Gauge: by default pose 0 is held and the scale is fixed through one translation coordinate of
    the pose farthest from it (see ``docs/bundle_adjustment.md``); with ``fix_poses`` or
    ``fix_points`` given the gauge is what the caller fixes (no automatic scale fix).

    Args:
        cameras: :class:`~mlxgeom.camera.Camera` (or ``FisheyeCamera``) with batch () (one camera
            for all images), (C,) (one per image) or (G,) with ``intrinsics_index``; any distortion.
            Their pose field is ignored.
        poses: (C, 4, 4) world-to-camera.
        points: (P, 3).
        observations: (O, 2) pixels; non-finite rows are dropped (``valid`` False).
        point_index: (O,) ints, the point of each observation.
        camera_index: (O,) ints, the image (pose) of each observation.
        intrinsics_index: (C,) ints, the camera of each image when G cameras are shared.
        fix_poses: None, (C,) bool mask or indices of poses held constant.
        fix_points: None, (P,) bool mask or indices of points held constant. Either argument given
            is the gauge (e.g. surveyed points): pose 0 and the scale are then free; with neither,
            pose 0 and one coordinate along the longest baseline are held.
        refine_intrinsics: False, True (focal and distortion, principal point kept, as COLMAP's
            default) or names from ``INTRINSICS`` and ``OPENCV_COEFFS`` (e.g. ``("focal", "k1")``
            for COLMAP's SIMPLE_RADIAL); shared cameras stay shared.
        loss: robust loss (name or :class:`~mlxgeom.solve.RobustLoss`), None for squares.
        loss_scale: its scale in pixels.
        max_iters: LM iteration budget.
        linear_solver: ``"auto"``, ``"dense"`` or ``"pcg"`` for the reduced camera system.
        pcg_iterations: PCG iterations per LM step.
        chunk: LM iterations per evaluated chunk (>= 1).
        tau: initial damping ``mu_0`` relative to Marquardt's diagonal (Ceres starts at 1e-4, the
            inverse of its initial trust-region radius 1e4).
        min_depth: points at camera depth <= min_depth are invalid.
        progress: ``(iterations_done, cost)`` called after each chunk.

    Returns:
        :class:`BundleResult`.

    Example:
        >>> import numpy as np
        >>> from mlxgeom.sfm.synthetic import synthetic_problem
        >>> p = synthetic_problem(4, 40, noise=0.5, seed=0)
        >>> res = bundle_adjust(p.cameras, p.poses, p.points, p.observations,
        ...                     point_index=p.point_index, camera_index=p.camera_index)
        >>> bool(res.ok), float(res.cost) < float(res.initial_cost)
        (True, True)
    """
    if chunk < 1 or max_iters < 0:
        raise ValueError(f"chunk: expected >= 1 and max_iters >= 0, got chunk {chunk}, max_iters {max_iters}")
    problem, step, x = _setup(cameras, poses, points, observations, point_index, camera_index, intrinsics_index,
                              fix_poses, fix_points, refine_intrinsics, get_loss(loss, loss_scale), linear_solver,
                              pcg_iterations, min_depth)
    return _run(problem, step, x, max_iters, chunk, progress, cameras, tau)


def _setup(cameras, poses, points, observations, point_index, camera_index, intrinsics_index, fix_poses, fix_points,
           refine_intrinsics, loss, linear_solver, pcg_iterations, min_depth) -> tuple[_Problem, SchurStep, tuple]:
    """Checked inputs, the host analysis of the observation graph, the step solver and the start x."""
    poses = as_float(poses, "poses")[0]
    check_trailing(poses, (4, 4), "poses")
    points = as_float(points, "points")[0].astype(poses.dtype)
    check_trailing(points, (3,), "points")
    observations = as_float(observations, "observations")[0].astype(poses.dtype)
    check_trailing(observations, (2,), "observations")
    c, p = poses.shape[0], points.shape[0]
    cam_np = _indices(camera_index, c, "camera_index").reshape(-1)
    pt_np = _indices(point_index, p, "point_index").reshape(-1)
    if cam_np.shape != (observations.shape[0],) or pt_np.shape != cam_np.shape:
        raise ValueError(f"camera_index {cam_np.shape}, point_index {pt_np.shape}: expected ({observations.shape[0]},), "
                         f"one per row of observations {tuple(observations.shape)}")
    g, groups = _groups(cameras, c, intrinsics_index)
    intr = _Intrinsics(cameras, refine_intrinsics, g, poses.dtype)
    solver = resolve_linear_solver(c * 6 + g * intr.dof, linear_solver)
    structure = BlockStructure(cam_np, pt_np, c, p, 6, groups if intr.dof else None, g, intr.dof,
                               with_pairs=solver == "dense")
    with eager():
        gauge = _gauge(poses, fix_poses, fix_points)
    problem = _Problem(observations, groups, intr, gauge, _mask(fix_points, p, "fix_points"), loss, structure,
                       min_depth)
    x = (poses, points, intr.initial()) if intr.dof else (poses, points)
    problem.active = all_of(problem.project(x)[0].valid[:, 0], problem.finite_obs)
    return problem, SchurStep(structure, solver, pcg_iterations), x


def _run(problem: _Problem, step: SchurStep, x, max_iters: int, chunk: int, progress, cameras,
         tau0: float) -> BundleResult:
    tau: Any = tau0
    done, initial_cost, res = 0, None, None
    while True:
        n = min(chunk, max_iters - done)
        res = lm_loop(problem.linearize, x, problem.retract, (), solve_step=step, max_iters=n, tau=tau)
        mx.eval(res)
        initial_cost = res.initial_cost if initial_cost is None else initial_cost
        x, done = res.x, done + int(res.iterations.item())
        if progress is not None:
            progress(done, float(res.cost.item()))
        if done >= max_iters or bool(res.converged.item()) or int(res.status.item()) < 0:
            break
        # mu_0 = tau max diag: hand the final damping on to the next chunk.
        tau = res.damping / mx.maximum(step.max_diagonal(res.hessian), 1e-30)
    pj, _ = problem.project(x)
    slot = problem.structure.rows.slot
    valid = take(problem.active, slot, axis=0)
    residual = mx.where(valid[:, None], pj.pixels[:, 0][slot] - problem.clean_obs[slot], 0.0)
    K, dist = problem.intr.values(x[2]) if problem.intr.dof else (problem.intr.K0, problem.intr.dist0)
    shape = cameras.batch_shape
    out_cams = type(cameras)(K.reshape(*shape, 3, 3), cameras.pose, dist.reshape(*shape, dist.shape[-1]), cameras.size)
    ok = all_of(mx.isfinite(res.cost), res.status >= 0)
    return BundleResult(x[0], x[1], out_cams, res.cost, initial_cost, mx.array(done, dtype=mx.int32), ok,
                        res.status, residual, valid)
