"""Batched Perspective-n-Point: EPnP / DLT initialisation and Levenberg-Marquardt refinement.

Conventions: poses are world-to-camera, ``x_cam = R x_world + t`` (OpenCV, COLMAP);
``rvec`` is the axis-angle of R (``cv2.Rodrigues``); pixels follow ``u = fx x/z + s y/z + cx``,
``v = fy y/z + cy`` with K's skew ``s``. Lens distortion of a ``camera.Camera`` argument is removed
from the pixels first (``camera.undistort_points``); with a plain K pixels must be undistorted.
The refinement steps internally on the left, ``T <- exp(h) T`` (the per-point sums of its normal
equations, mirrored by the CUDA kernel, are simplest in the camera frame); what is returned follows
the library's one convention: the covariance is that of the RIGHT perturbation ``T exp(xi)``,
``xi = [rho, phi]``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Union

import mlx.core as mx

from .. import lie, linalg
from .._checks import as_floats, broadcast_batch, cast_out, check_batch, check_trailing
from .._compiled import eager
from .._cuda import fast_path
from .._vmap import all_of, any_of
from ..linalg.products import _unpack_symmetric
from ..camera import projection
from ..homography._common import safe_sqrt
from . import _pnp_init, _point_sums, pnp_cuda
from ..solve import RobustLoss, get_loss, lm_loop

_MIN_POINTS = {"epnp": 4, "iterative": 4, "dlt": 6}


class PnPResult(NamedTuple):
    """Result of :func:`solve_pnp` / :func:`solve_pnp_ransac`, batched like the problems.

    Attributes:
        pose: (*, 4, 4) world-to-camera.
        rvec: (*, 3) axis-angle of R (as ``cv2.solvePnP``).
        tvec: (*, 3) translation.
        ok: (*) bool: enough non-coplanar points, a finite pose, every used point in
            front of the camera, and (EPnP) no reflection that explains the image markedly
            better than every rotation (depths that noise mirrored on a small, distant object
            are mirrored back, as OpenCV does).
            Where False, pose is the identity and the errors are inf.
        reprojection_error: (*) RMS pixel distance over the used points.
        covariance: (*, 6, 6) covariance of the right perturbation ``xi = [rho, phi]`` in
            ``T exp(xi)``, ``sigma^2 (J^T J)^-1`` with ``sigma^2 = sum r^2 / (2 n - 6)``
            (inf where J^T J is singular or not ok).
        inliers: (*, N) bool, the points used (the mask, or RANSAC's inliers); all False where
            ok is False.
        converged: (*) bool, the LM refinement met its stopping test within ``max_iters``
            (:attr:`LMResult.converged`); True without refinement, False where ok is False.
            ``ok`` does not require it: like ``cv2.solvePnP``, whose LM also stops after a fixed
            budget, the pose after the last iteration is returned. False means "still moving":
            flat, ill-conditioned problems (small, distant, noisy objects) may need 20-30
            iterations. :func:`solve_pnp_ransac` sets it to ``ok`` (its refits are kept on
            their MSAC score, not on convergence).
    """

    pose: mx.array
    rvec: mx.array
    tvec: mx.array
    ok: mx.array
    reprojection_error: mx.array
    covariance: mx.array
    inliers: mx.array
    converged: mx.array


def undistorted(camera_or_k: Any, pixels: Any, mask: Any = None) -> tuple[Any, Any, Any]:
    """``(K, pixels, mask)``: a Camera's pixels with its lens distortion removed
    (``camera.undistort_points`` with ``K_new = K``) and ``mask`` (None or (*, N)) and-ed with where
    that converged; plain K (or no distortion) passes the pixels and ``mask`` through."""
    dist = getattr(camera_or_k, "dist", None)
    if not hasattr(camera_or_k, "K") or dist is None or dist.shape[-1] == 0:
        return getattr(camera_or_k, "K", camera_or_k), pixels, mask
    from .. import camera

    model = getattr(camera_or_k, "model", "opencv")
    und, conv = camera.undistort_points(pixels, camera_or_k.K, dist, model, K_new=camera_or_k.K)
    return camera_or_k.K, und, conv if mask is None else all_of(mx.array(mask).astype(mx.bool_), conv)


def normalize_pixels(pixels: mx.array, k: mx.array) -> mx.array:
    """Normalised image coordinates (*, N, 2) = first two entries of ``K^-1 [u, v, 1]``."""
    x, y, _ = projection.normalize_pixels(pixels[..., 0], pixels[..., 1], k)
    return mx.stack([x, y], axis=-1)


def reprojection_residuals(pose: mx.array, pw: mx.array, pixels: mx.array, k: mx.array) -> mx.array:
    """Pixel residuals ``project(K, pose, pw) - pixels`` (*, N, 2) of poses (*, 4, 4), points
    pw (*, N, 3), pixels (*, N, 2) and K (*, 3, 3), through the pinhole projection core
    (``camera.projection._project_values``); finite placeholders for points behind the camera.

    >>> pw, k = mx.array([[0.0, 0.0, 5.0], [1.0, 0.0, 5.0]]), mx.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    >>> reprojection_residuals(mx.eye(4), pw, mx.array([[320.0, 240.0], [420.0, 241.0]]), k).tolist()
    [[0.0, 0.0], [0.0, -1.0]]
    """
    for a, trailing, name in ((pose, (4, 4), "pose"), (pw, (3,), "pw"), (pixels, (2,), "pixels"), (k, (3, 3), "k")):
        check_trailing(a, trailing, name)
    _check_problem_batch(pose, pw, pixels, k)
    return projection._project_values(pw, k, pose).pixels - pixels


def _check_problem_batch(pose: mx.array, pw: mx.array, pixels: mx.array, k: mx.array, w: mx.array | None = None) -> None:
    """Poses and K against the points' batch, then the points, pixels (and weights) (*, N) together."""
    weights = [] if w is None else [("w", w, 1)]
    check_batch(("pose", pose, 2), ("pw", pw, 2), ("pixels", pixels, 2), ("k", k, 2), *weights)
    check_batch(("pw", pw, 1), ("pixels", pixels, 1), *[(n, a, 0) for n, a, _ in weights])


def reprojection_errors(pose: mx.array, pw: mx.array, pixels: mx.array, k: mx.array) -> mx.array:
    """Squared pixel errors (*, N) of :func:`reprojection_residuals`, +inf for points the camera
    does not see (behind it, or not finite)."""
    proj = projection._project_values(pw, k, pose)
    e2 = mx.sum(mx.square(proj.pixels - pixels), axis=-1)
    return mx.where(all_of(proj.valid, ~mx.isnan(e2)), e2, mx.inf)


def pnp_blocks(pw: mx.array, pixels: mx.array, w: mx.array, blocks: int | None = None) -> mx.array:
    """Rows X, Y, Z, u, v, w of points (*, N, 3), pixels (*, N, 2) and weights (*, N) in blocks
    (P, 6, *, M) (:func:`_point_sums.split_points`), cut once per solve."""
    rows = [pw[..., 0], pw[..., 1], pw[..., 2], pixels[..., 0], pixels[..., 1], w]
    return _point_sums.split_points(rows, blocks)


def _point_terms(pose: mx.array, k: mx.array, loss: RobustLoss | None, X: mx.array, Y: mx.array, Z: mx.array,
                 U: mx.array, V: mx.array, w: mx.array) -> list[mx.array]:
    """The 21 + 6 + 1 per-point terms of ``A``'s upper triangle, ``g`` and the cost, from rows
    (*, M) of the points, pixels and weights."""
    pc = [pose[..., i, 0, None] * X + pose[..., i, 1, None] * Y + pose[..., i, 2, None] * Z + pose[..., i, 3, None]
          for i in range(3)]
    # Ignored points are zeroed before any product so no overflow (or NaN gradient) reaches A.
    # Points at or behind the camera plane keep a finite residual; ok flags them later.
    iz = mx.where(w > 0, 1.0 / mx.where(mx.abs(pc[2]) > 1e-12, pc[2], 1e-12), 0.0)
    x, y = pc[0] * iz, pc[1] * iz
    fx, sk, cx, fy, cy = (k[..., i, j, None] for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2)))
    ru = fx * x + sk * y + cx - U
    rv = fy * y + cy - V
    sq = w * (ru * ru + rv * rv)
    c = w if loss is None else w * loss.weight(sq)

    # Row entries (ju_a, jv_a): ju = [fx, s] . [jx, jy], jv = fy jy with jx = [1/z, 0, -x/z,
    # -xy, 1 + x^2, -y], jy = [0, 1/z, -y/z, -(1 + y^2), xy, x]; jv_0 = 0 (None).
    jac = [(fx * iz, None), (sk * iz, fy * iz), (-(fx * x + sk * y) * iz, -fy * y * iz),
           (-(fx * (x * y) + sk * (1.0 + y * y)), -fy * (1.0 + y * y)),
           (fx * (1.0 + x * x) + sk * (x * y), fy * (x * y)), (sk * x - fx * y, fy * x)]
    terms = [c * (ua * ub if va is None else ua * ub + va * vb) for a, (ua, va) in enumerate(jac) for ub, vb in jac[a:]]
    terms += [c * (ua * ru if va is None else ua * ru + va * rv) for ua, va in jac]
    terms.append(0.5 * (sq if loss is None else loss.rho(sq)))
    return terms


@functools.cache
def _point_totals(loss: RobustLoss | None) -> Callable[[mx.array, mx.array, mx.array], mx.array]:
    """``(pose, k, points) -> `` the sums (*, 28) over the points of :func:`_point_terms`;
    one warp per problem on CUDA (:mod:`pnp_cuda`)."""
    def pure(pose: mx.array, k: mx.array, points: mx.array) -> mx.array:
        return _point_sums.sum_blocks(lambda *rows: _point_terms(pose, k, loss, *rows), points)

    return fast_path(lambda pose, k, points: pnp_cuda.point_totals(pose, k, points, loss), pure,
                     lambda pose, k, points: pnp_cuda.enabled(pose, k, points, loss))


def _pnp_normal_equations(pose: mx.array, points: mx.array, k: mx.array,
                          loss: RobustLoss | None) -> tuple[mx.array, mx.array, mx.array]:
    """Cost (*), ``A = J^T W J`` (*, 6, 6) and ``g = J^T W r`` (*, 6) of the reprojection
    errors, summed per point without forming J, over the point blocks (P, 6, *, M) of
    :func:`pnp_blocks`.

    J is the derivative for the left update ``exp(h) T``, h = [rho, phi]: with p = T pw in the
    camera frame, dp/dh = [I, -[p]x], and the normalised projection gives the rows
    [1/z, 0, -x/z, -xy, 1 + x^2, -y] and [0, 1/z, -y/z, -(1 + y^2), xy, x] (x, y = p / z; the
    first three divided by z as written), then the 2x2 block of K.

    With ``s_i = w_i ||r_i||^2`` and the IRLS weight ``c_i = w_i rho'(s_i)``, every entry is
    an elementwise product of contiguous rows, reduced over the points (exact float32), one
    block at a time (:func:`_point_sums.sum_blocks`).
    """
    total = _point_totals(loss)(pose, k, points)
    return total[..., 27], _unpack_symmetric(total[..., :21], 6), total[..., 21:27]


def refine_pnp(pose: mx.array, pw: mx.array, pixels: mx.array, k: mx.array, w: mx.array, *,
               loss: Union[RobustLoss, str, None] = None, loss_scale: float = 2.0, max_iters: int = 10):
    """LM refinement of world-to-camera poses (*, 4, 4) on reprojection errors (left update) of
    points pw (*, N, 3), pixels (*, N, 2), K (*, 3, 3) and weights w (*, N).

    Returns the :class:`LMResult` (its ``x`` is the refined (*, 4, 4) pose). Points with
    ``w == 0`` do not contribute. The LM runs in units of the points' RMS distance from the
    camera at ``pose`` (translation and rotation steps of one size for its damping and step
    test); ``x`` and ``hessian`` are in the caller's units, ``damping`` is the scaled problem's. The normal equations are summed per point
    (:func:`_pnp_normal_equations`), one pass over the points per iteration.

    >>> from mlxgeom import lie
    >>> pw = mx.array([[0., 0, 5], [1, 0, 6], [0, 1, 5.5], [1, 1, 4], [-1, 0.5, 6.5], [0.3, -1, 5]])
    >>> k = mx.array([[500., 0, 320], [0, 500, 240], [0, 0, 1]])
    >>> uv = pw[:, :2] / pw[:, 2:] * 500 + mx.array([320., 240])
    >>> res = refine_pnp(lie.se3_exp(mx.array([0.05, -0.02, 0.1, 0.01, 0.02, -0.01])), pw, uv, k, mx.ones(6))
    >>> res.converged.item(), bool(mx.abs(res.x - mx.eye(4)).max() < 1e-4)
    (True, True)
    """
    _check_problem_batch(pose, pw, pixels, k, w)
    loss_obj = get_loss(loss, loss_scale)
    length = _length_scale(pose, pw, w)
    # Loop-invariant: cut into blocks once, every per-point row contiguous.
    points = pnp_blocks(pw / length[..., None, None], pixels, w)

    def linearize(p: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        return _pnp_normal_equations(p, points, k, loss_obj)

    left_retract = lambda p, h: lie.se3_compose(lie.se3_exp(h), p)  # noqa: E731
    res = lm_loop(linearize, _scaled_translation(pose, 1.0 / length), left_retract, tuple(pose.shape[:-2]),
                  max_iters=max_iters, tau=1e-4)
    # Back to the caller's units: t = L t_unit, and J's translation columns are 1 / L of the unit problem's.
    inv = mx.where(mx.arange(6) < 3, (1.0 / length)[..., None], 1.0)
    return res._replace(x=_scaled_translation(res.x, length), hessian=res.hessian * inv[..., :, None] * inv[..., None, :])


def _scaled_translation(pose: mx.array, s: mx.array) -> mx.array:
    """The (*, 4, 4) pose with its translation times s (*)."""
    col = mx.where(mx.arange(4) == 3, s[..., None], 1.0)  # (*, 4): [1, 1, 1, s]
    return pose * mx.where((mx.arange(4) < 3)[:, None], col[..., None, :], 1.0)


def _length_scale(pose: mx.array, pw: mx.array, w: mx.array) -> mx.array:
    """RMS distance (*) of the used points from the camera at ``pose`` (1 where undefined): the
    unit in which :func:`refine_pnp` solves, so that translation and rotation steps are of one
    size for LM's damping ``mu I`` and its step test ``|h| <= xtol |x|`` at any distance."""
    pc = linalg.matmul(pw, pose[..., :3, :3].swapaxes(-1, -2)) + pose[..., None, :3, 3]
    ms = mx.sum(w * mx.sum(pc * pc, axis=-1), axis=-1) / mx.maximum(mx.sum(w, axis=-1), 1.0)
    good = all_of(mx.isfinite(ms), ms > 0)
    return mx.stop_gradient(mx.sqrt(mx.where(good, ms, 1.0)))


def _covariance(hessian: mx.array, sq_sum: mx.array, n_used: mx.array) -> mx.array:
    eye = mx.broadcast_to(mx.eye(6, dtype=hessian.dtype), hessian.shape)
    finite = mx.all(mx.isfinite(hessian), axis=(-2, -1))
    h_safe = mx.where(finite[..., None, None], hessian, eye)
    inv, ok = linalg.solve_spd_ex(h_safe, eye)
    sigma2 = sq_sum / mx.maximum(2.0 * n_used - 6.0, 1.0)
    ok = all_of(ok, finite, mx.all(mx.isfinite(inv), axis=(-2, -1)))
    return mx.where(ok[..., None, None], sigma2[..., None, None] * inv, mx.inf)


@eager()
def _finish(pose: mx.array, ok: mx.array, pw: mx.array, pixels: mx.array, k: mx.array, w: mx.array,
            hessian: mx.array | None, inliers: mx.array, out: mx.Dtype, converged: mx.array | None = None) -> PnPResult:
    """Cheirality and finiteness checks, identity on failure, errors, rvec/tvec, covariance. Once per
    call, so its cores run eagerly (the rotation log alone was ~18 fused kernels to compile)."""
    in_front = mx.all(any_of(projection._project_values(pw, k, pose).depth > 0, w == 0),
                      axis=-1)
    ok = all_of(ok, in_front, mx.all(mx.isfinite(pose), axis=(-2, -1)))
    eye4 = mx.eye(4, dtype=pose.dtype)
    pose = mx.where(ok[..., None, None], pose, eye4)
    res = reprojection_residuals(pose, pw, pixels, k)
    sq = mx.sum(w * mx.sum(res * res, axis=-1), axis=-1)
    n_used = mx.sum(w, axis=-1)
    # Double where (safe_sqrt): an exact fit has RMS 0 and gradient 0 (sqrt's derivative is infinite there).
    rms = mx.where(ok, safe_sqrt(sq / mx.maximum(n_used, 1.0)), mx.inf)
    if hessian is None:
        hessian = _pnp_normal_equations(pose, pnp_blocks(pw, pixels, w), k, None)[1]
    # The LM's system is for the left step h = Ad(T) xi: Cov(xi) = Ad(T^-1) Cov(h) Ad(T^-1)^T.
    ad = lie.se3_adjoint(lie.se3_inverse(pose))
    cov = linalg.matmul(linalg.matmul(ad, _covariance(hessian, sq, n_used)), ad.swapaxes(-1, -2))
    cov = mx.where(all_of(ok[..., None, None], mx.all(mx.isfinite(cov), axis=(-2, -1), keepdims=True)), cov, mx.inf)
    rvec = lie.so3_log(pose[..., :3, :3])
    return PnPResult(*(cast_out(a, out) for a in (pose, rvec, pose[..., :3, 3])), ok,
                     cast_out(rms, out), cast_out(cov, out), all_of(inliers, ok[..., None]),
                     ok if converged is None else all_of(ok, converged))


def _prepare(points_3d: Any, pixels: Any, camera_or_k: Any, mask: Any):
    k, pixels, mask = undistorted(camera_or_k, pixels, mask)
    (pw, uv, k), out = as_floats(points_3d, pixels, k, names=("points_3d", "pixels", "K"))
    check_trailing(pw, (None, 3), "points_3d")
    check_trailing(uv, (None, 2), "pixels")
    check_trailing(k, (3, 3), "K")
    if pw.shape[-2] != uv.shape[-2]:
        raise ValueError(f"points_3d (*, N, 3) and pixels (*, N, 2) must have the same N, got {tuple(pw.shape)} and {tuple(uv.shape)}")
    n = pw.shape[-2]
    batch = broadcast_batch(pw.shape[:-2], uv.shape[:-2], k.shape[:-2], names=("points_3d", "pixels", "K"))
    w = mx.ones((*batch, n), dtype=pw.dtype) if mask is None else mx.array(mask).astype(pw.dtype)
    if mask is not None:
        check_trailing(w, (n,), "mask")
        batch = broadcast_batch(batch, w.shape[:-1], names=("problems", "mask"))
    pw, uv = mx.broadcast_to(pw, (*batch, n, 3)), mx.broadcast_to(uv, (*batch, n, 2))
    k, w = mx.broadcast_to(k, (*batch, 3, 3)), mx.broadcast_to(w, (*batch, n))
    # Ignored points may hold anything (NaN included): zero them so they cannot leak.
    finite = all_of(mx.all(mx.isfinite(pw), axis=-1), mx.all(mx.isfinite(uv), axis=-1))
    w = mx.where(finite, w, 0.0)
    used = (w > 0)[..., None]
    return mx.where(used, pw, 0.0), mx.where(used, uv, 0.0), k, w, out


def initial_pose(pw: mx.array, uv: mx.array, k: mx.array, w: mx.array, method: str) -> tuple[mx.array, mx.array]:
    """Closed-form pose (*, 4, 4) and ok mask from EPnP or DLT on the weighted points."""
    xn = normalize_pixels(uv, k)
    xn = mx.where((w > 0)[..., None], xn, 0.0)
    r, t, ok = (_pnp_init.dlt if method == "dlt" else _pnp_init.epnp)(pw, xn, w)
    pose = lie.se3_from_rt(r, t)
    ok = all_of(ok, mx.all(mx.isfinite(pose), axis=(-2, -1)))
    return mx.where(ok[..., None, None], pose, mx.eye(4, dtype=pose.dtype)), ok


def solve_pnp(points_3d: Any, pixels: Any, camera_or_k: Any, *, method: str = "epnp", refine: bool = True,
              mask: Any = None, loss: Union[RobustLoss, str, None] = None, loss_scale: float = 2.0,
              max_iters: int = 10) -> PnPResult:
    """Camera poses from 2D-3D correspondences, many problems at once.

    Methods: ``"epnp"`` (Lepetit et al. IJCV 2009; >= 4 non-coplanar points), ``"dlt"``
    (Hartley-Zisserman sec. 7.1; >= 6 non-coplanar points), ``"iterative"`` (EPnP, then
    always LM, like ``cv2.SOLVEPNP_ITERATIVE``). With ``refine`` (default) the closed-form
    pose is refined by :func:`mlxgeom.solve.lm_loop` on the reprojection error, optionally
    with a robust ``loss`` over pixel errors.
    Everything runs a static number of iterations on the device (compilable); gradients
    with respect to the points, pixels and K flow through the unrolled LM iterations
    (the closed-form initial pose is a constant), which at convergence equals the
    implicit-function derivative.

    Args:
        points_3d: (*, N, 3) world points.
        pixels: (*, N, 2) pixel coordinates (undistorted when a plain K is given).
        camera_or_k: K (*, 3, 3) or a ``camera.Camera`` (its ``K`` and distortion are used).
        method: ``"epnp"``, ``"dlt"`` or ``"iterative"``.
        refine: run LM after the closed form.
        mask: optional (*, N) bool/0-1 point mask (False = ignore the point).
        loss, loss_scale: robust loss (object or name) and its scale in pixels.
        max_iters: LM iterations (``converged`` says whether they sufficed).

    Returns:
        :class:`PnPResult` (``converged`` False where the LM ran out of iterations).
        Degenerate problems (too few points, coplanar points for EPnP/DLT,
        poses with points behind the camera) get ``ok == False``, the identity pose and no
        inliers; they never affect other problems.

    Example:
        >>> import mlx.core as mx
        >>> pw = mx.array([[0., 0, 5], [1, 0, 6], [0, 1, 5.5], [1, 1, 4], [-1, 0.5, 6.5], [0.3, -1, 5]])
        >>> k = mx.array([[500., 0, 320], [0, 500, 240], [0, 0, 1]])
        >>> uv = pw[:, :2] / pw[:, 2:] * 500 + mx.array([320., 240])
        >>> res = solve_pnp(pw, uv, k)
        >>> bool(res.ok), bool(mx.abs(res.pose - mx.eye(4)).max() < 1e-3)
        (True, True)
    """
    if method not in _MIN_POINTS:
        raise ValueError(f"method: expected one of {sorted(_MIN_POINTS)}, got {method!r}")
    pw, uv, k, w, out = _prepare(points_3d, pixels, camera_or_k, mask)
    batch, n = pw.shape[:-2], pw.shape[-2]
    if n < _MIN_POINTS[method]:
        # Known from shapes alone: every problem is under-determined.
        pose, ok = mx.broadcast_to(mx.eye(4, dtype=pw.dtype), (*batch, 4, 4)), mx.zeros(batch, dtype=mx.bool_)
        return _finish(pose, ok, pw, uv, k, w, None, w > 0, out)
    # The closed form is a constant for autodiff (its eigen-decompositions need no VJP).
    pose, ok = initial_pose(*(mx.stop_gradient(a) for a in (pw, uv, k, w)), method)
    hessian, converged = None, None
    if refine or method == "iterative":
        lm = refine_pnp(pose, pw, uv, k, w, loss=loss, loss_scale=loss_scale, max_iters=max_iters)
        pose, hessian, converged = lm.x, lm.hessian, lm.converged
    return _finish(pose, ok, pw, uv, k, w, hessian, w > 0, out, converged)
