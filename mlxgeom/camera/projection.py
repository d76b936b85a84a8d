"""Functional core: project / unproject points, (un)distort pixels, pixel grids, projection Jacobians.

Conventions (OpenCV / COLMAP): ``pose`` is world-to-camera, ``x_cam = R x_world + t``; the
camera looks along +z, x right, y down; pixel centres are at integer coordinates. K is upper
triangular and its skew K[0, 1] is applied (``u = fx x'' + s y'' + cx``; ``cv2.projectPoints``
ignores it, so OpenCV parity needs s = 0). ``depth`` is the camera-frame z, not the ray length.

Batching: points are (*, N, 3) (a single (3,) point is also accepted); the camera arrays
K (*, 3, 3), pose (*, 4, 4) and dist (*, k) have batch dims that broadcast against the
points' dims before N (one camera against (N, 3), 64 cameras (64, 3, 3) against (N, 3) giving
(64, N, 2), or B cameras against (B, N, 3)).

Value problems are masks, not exceptions: ``valid`` is False for points with
``z <= min_depth``, for cameras with fx <= 0 or fy <= 0, for non-finite results (NaN inputs
stay in their own entries) and for failed undistortion solves. Invalid entries hold finite
placeholders (or NaN where the input was NaN); their gradients are finite.

Accuracy (tests against OpenCV in float64, 4K camera f ~ 3000 px): float32 projections
within 2e-3 px for every distortion variant (measured ~4e-4 px), float32 undistortion
within 2e-3 px (measured ~5e-4 px); float64 agrees with ``cv2.projectPoints`` to 1e-12 px
for every model, 14 coefficients included (the tilt angles' sin and cos go through
``lie``'s float64-accurate ``sin_cos``: MLX's own are float32-accurate on the CPU).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import mlx.core as mx

from .._checks import as_floats, broadcast_batch, cast_out, check_trailing
from .._compiled import compiled
from .._cuda import fast_path
from .._vmap import all_of
from . import projection_cuda
from .distortion import (
    Distorted, check_newton, check_opencv_coeffs, distort_opencv, newton_tol, undistort_opencv,
)
from .fisheye import check_fisheye_coeffs, distort_fisheye, undistort_fisheye
from .intrinsics import check_K, focal_ok

# The lens models: the coefficient-count check and the distortion (with its Jacobians) of each.
_LENSES = {"opencv": (check_opencv_coeffs, distort_opencv), "fisheye": (check_fisheye_coeffs, distort_fisheye)}
MODELS = tuple(_LENSES)
MIN_DEPTH = 1e-6


def _check_model(model: str, dist: mx.array | None) -> None:
    if model not in _LENSES:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    if dist is None:
        return
    if dist.ndim < 1:
        raise ValueError(f"dist: expected shape (*, k), got {tuple(dist.shape)}")
    _LENSES[model][0](dist.shape[-1])


_OPTIONAL = frozenset({"pose", "dist", "K_new", "size"})


def _inputs(**named: Any) -> tuple[list[mx.array | None], mx.Dtype]:
    """The inputs in order, the non-None ones converted to one compute dtype (None only for the
    optional pose, dist, K_new and size)."""
    for k, v in named.items():
        if v is None and k not in _OPTIONAL:
            raise TypeError(f"{k}: expected a real numeric array, got None")
    keys = [k for k, v in named.items() if v is not None]
    arrays, out = as_floats(*[named[k] for k in keys], names=keys)
    conv = dict(zip(keys, arrays))
    return [conv.get(k) for k in named], out


def _check_camera(K: mx.array, pose: mx.array | None, dist: mx.array | None, model: str) -> tuple[int, ...]:
    check_K(K)
    if pose is not None and (pose.ndim < 2 or pose.shape[-2:] != (4, 4)):
        raise ValueError(f"pose: expected shape (*, 4, 4), got {tuple(pose.shape)}")
    _check_model(model, dist)
    given = [(n, a.shape[:-k]) for n, a, k in (("K", K, 2), ("pose", pose, 2), ("dist", dist, 1)) if a is not None]
    return broadcast_batch(*(b for _, b in given), names=[n for n, _ in given])


def _coeffs(dist: mx.array | None) -> list[mx.array]:
    if dist is None:
        return []
    return [dist[..., i, None] for i in range(dist.shape[-1])]


def _distort(x: mx.array, y: mx.array, dist: mx.array | None, model: str, jacobian: bool) -> Distorted:
    # No coefficients: the pinhole, which the OpenCV model gives for an empty list.
    return _LENSES[model if dist is not None else "opencv"][1](x, y, _coeffs(dist), jacobian)


def _undistort(x: mx.array, y: mx.array, dist: mx.array | None, model: str, iterations: int, tol: float | None):
    if model == "fisheye" and dist is not None:
        return undistort_fisheye(x, y, _coeffs(dist), iterations, tol)
    return undistort_opencv(x, y, _coeffs(dist), iterations, tol)


def _intrinsics(K: mx.array) -> tuple[mx.array, ...]:
    """(fx, fy, cx, cy, s) each (*c, 1), and the (*c, 1) focal-ok mask."""
    params = tuple(K[..., i, j, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2), (0, 1)))
    return params + (focal_ok(K)[..., None],)


def _rotate(pose: mx.array | None, X: mx.array, Y: mx.array, Z: mx.array, transpose: bool = False):
    """R p (or R^T p) with per-camera entries broadcast over the N axis, elementwise (no TF32)."""
    if pose is None:
        return X, Y, Z
    e = [[(pose[..., j, i] if transpose else pose[..., i, j])[..., None] for j in range(3)] for i in range(3)]
    return tuple(e[i][0] * X + e[i][1] * Y + e[i][2] * Z for i in range(3))


class Projection(NamedTuple):
    """``pixels`` (*, N, 2), ``depth`` (*, N) camera-frame z, ``valid`` (*, N) bool."""

    pixels: mx.array
    depth: mx.array
    valid: mx.array


class ProjectionJacobian(NamedTuple):
    """Projection plus analytic Jacobians of the pixels (rows u, v).

    ``d_points`` (*, N, 2, 3) w.r.t. the world point; ``d_pose`` (*, N, 2, 6) w.r.t. the RIGHT
    se(3) perturbation ``T <- T exp(xi)``, ``xi = [rho, phi]`` (the library's one convention:
    ``d x_cam / d xi = [R, -R [X]_x]`` for the world point X, so the rho block is OpenCV's
    ``dp/dt`` times R); ``d_intrinsics`` (*, N, 2, 5) w.r.t.
    ``[fx, fy, cx, cy, skew]``; ``d_dist`` (*, N, 2, k) w.r.t. the distortion coefficients.
    """

    pixels: mx.array
    depth: mx.array
    valid: mx.array
    d_points: mx.array
    d_pose: mx.array
    d_intrinsics: mx.array
    d_dist: mx.array


def project_points(points_world: Any, K: Any, pose: Any = None, dist: Any = None, model: str = "opencv",
                   min_depth: float = MIN_DEPTH) -> Projection:
    """Project world points to pixels through pinhole cameras with optional lens distortion.

    Args:
        points_world: (*, N, 3) or (3,).
        K: (*, 3, 3) intrinsics (skew applied).
        pose: (*, 4, 4) world-to-camera (x_cam = R x + t), or None for the identity.
        dist: (*, k) OpenCV coefficients (k in 4, 5, 8, 12, 14) or, with ``model="fisheye"``,
            (*, 4) Kannala-Brandt k1..k4; None for no distortion.
        model: ``"opencv"`` or ``"fisheye"``.
        min_depth: points with camera z <= min_depth are flagged invalid.

    Returns:
        :class:`Projection` ``(pixels (*, N, 2), depth (*, N), valid (*, N))``.

    Example:
        >>> K = mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
        >>> px, z, ok = project_points(mx.array([[0.1, 0.2, 2.0]]), K)
        >>> px.tolist(), ok.tolist()
        ([[55.0, 50.0]], [True])
    """
    return _project(points_world, K, pose, dist, model, min_depth, jacobian=False)


def project_points_jacobian(points_world: Any, K: Any, pose: Any = None, dist: Any = None,
                            model: str = "opencv", min_depth: float = MIN_DEPTH) -> ProjectionJacobian:
    """:func:`project_points` plus analytic Jacobians (see :class:`ProjectionJacobian`).

    Example:
        >>> K = mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
        >>> J = project_points_jacobian(mx.array([[0.0, 0.0, 2.0]]), K)
        >>> J.d_points.shape, J.d_points[0, 0, 0].item()
        ((1, 2, 3), 50.0)
    """
    return _project(points_world, K, pose, dist, model, min_depth, jacobian=True)


def _project(points_world, K, pose, dist, model, min_depth, jacobian):
    (points, K, pose, dist), out = _inputs(points_world=points_world, K=K, pose=pose, dist=dist)
    check_trailing(points, (3,), "points_world")
    points, single = (points[None], True) if points.ndim == 1 else (points, False)
    cam_batch = _check_camera(K, pose, dist, model)
    broadcast_batch(cam_batch, points.shape[:-2], names=("camera", "points_world"))
    if not jacobian:
        cameras = _given(pose, dist)
        if projection_cuda.enabled([points, K, *cameras], dist, model, ("opencv", "fisheye")):
            pixels, depth, valid = _project_fast(pose is not None, dist is not None, float(min_depth), model)(
                points, K, *cameras)
            valid = valid > 0
        else:
            pixels, depth, valid = _project_values(points, K, pose, dist, model, min_depth)
        if single:
            pixels, depth, valid = pixels[..., 0, :], depth[..., 0], valid[..., 0]
        return Projection(cast_out(pixels, out), cast_out(depth, out), valid)
    f = _forward(points, K, pose, dist, model, min_depth, jacobian=True)
    jac = _jacobians(f, pose, dist)
    res = ProjectionJacobian(f.pixels, f.depth, f.valid, *jac)
    res = ProjectionJacobian(*(cast_out(r, out) if r.dtype != mx.bool_ else r for r in res))
    if single:
        res = ProjectionJacobian(res.pixels[..., 0, :], res.depth[..., 0], res.valid[..., 0],
                                 *(r[..., 0, :, :] for r in res[3:]))
    return res


class _Forward(NamedTuple):
    pixels: mx.array
    depth: mx.array
    valid: mx.array
    normalized: tuple[mx.array, mx.array]
    iz: mx.array
    distorted: Distorted
    focal: tuple[mx.array, mx.array, mx.array]
    points_world: tuple[mx.array, mx.array, mx.array]


def _forward(points, K, pose, dist, model, min_depth, jacobian) -> _Forward:
    """The projection of checked points (*, N, 3), with the intermediates its Jacobians reuse."""
    X, Y, Z = points[..., 0], points[..., 1], points[..., 2]
    xc, yc, zc = X, Y, Z
    if pose is not None:
        xc, yc, zc = _rotate(pose, X, Y, Z)
        xc, yc, zc = (c + pose[..., i, 3, None] for i, c in enumerate((xc, yc, zc)))
    front = zc > min_depth
    iz = 1.0 / mx.where(front, zc, 1.0)
    x, y = xc * iz, yc * iz
    d = _distort(x, y, dist, model, jacobian)
    fx, fy, cx, cy, s, fok = _intrinsics(K)
    u = fx * d.x + s * d.y + cx
    v = fy * d.y + cy
    valid = all_of(front, d.ok, fok, mx.isfinite(u), mx.isfinite(v))
    pixels = mx.broadcast_to(mx.stack([u, v], axis=-1), (*valid.shape, 2))
    depth = mx.broadcast_to(zc, valid.shape)
    return _Forward(pixels, depth, valid, (x, y), iz, d, (fx, fy, s), (X, Y, Z))


def _project_values(points: mx.array, K: mx.array, pose: mx.array | None = None, dist: mx.array | None = None,
                    model: str = "opencv", min_depth: float = MIN_DEPTH) -> Projection:
    """The elementwise projection core that every projection of the library goes through
    (``Camera``, PnP, triangulation, the RANSAC models, the CUDA kernel's reference):
    :func:`project_points` on arrays already checked and converted, in pure mx (no kernel
    dispatch, so ``mx.vmap`` and forward-mode autodiff pass through it), compiled."""
    return Projection(*_projected(points, K, pose, dist, model, min_depth))


@compiled
def _projected(points, K, pose, dist, model, min_depth):
    return _forward(points, K, pose, dist, model, min_depth, jacobian=False)[:3]


def _given(pose: mx.array | None, dist: mx.array | None) -> list[mx.array]:
    """The camera arrays a fast path takes after K: those that are not None."""
    return [c for c in (pose, dist) if c is not None]


def _taken(rest: tuple[mx.array, ...], has_pose: bool, has_dist: bool) -> tuple[mx.array | None, mx.array | None]:
    """(pose, dist) back from :func:`_given`'s list."""
    return (rest[0] if has_pose else None), (rest[-1] if has_dist else None)


@functools.cache
def _project_fast(has_pose: bool, has_dist: bool, min_depth: float, model: str):
    """:func:`projection_cuda.project` on (points, K[, pose][, dist]), valid as 1.0 / 0.0,
    differentiated as the pure path (:func:`mlxgeom._cuda.fast_path`)."""

    def kernel(points, K, *rest):
        return projection_cuda.project(points, K, *_taken(rest, has_pose, has_dist), min_depth, model)

    def pure(points, K, *rest):
        pixels, depth, valid = _project_values(points, K, *_taken(rest, has_pose, has_dist), model, min_depth)
        return pixels, depth, mx.where(valid, 1.0, 0.0)

    return fast_path(kernel, pure, lambda *args: True)


def _jacobians(f: _Forward, pose, dist):
    (x, y), iz, d, shape = f.normalized, f.iz, f.distorted, f.valid.shape
    fx, fy, s = f.focal
    j00, j01, j10, j11 = d.jac
    a = ((fx * j00 + s * j10, fx * j01 + s * j11), (fy * j10, fy * j11))
    # d pixel / d x_cam = A [[1/z, 0, -x/z], [0, 1/z, -y/z]]
    P = [(ai0 * iz, ai1 * iz, -(ai0 * x + ai1 * y) * iz) for ai0, ai1 in a]
    if pose is not None:
        Rt = [[pose[..., i, j, None] for j in range(3)] for i in range(3)]
        d_points = [tuple(sum(Pi[k] * Rt[k][j] for k in range(3)) for j in range(3)) for Pi in P]
    else:
        d_points = P
    # Right perturbation: T exp(xi) X = T (X + rho + phi x X), so d x_cam = R [I | -[X]_x] xi and
    # d pixel / d xi = [D | -D [X]_x] with D = d pixel / d X.
    X, Y, Z = f.points_world
    d_pose = [(d0, d1, d2, -d1 * Z + d2 * Y, d0 * Z - d2 * X, -d0 * Y + d1 * X) for d0, d1, d2 in d_points]
    zero, one = mx.zeros_like(d.x), mx.ones_like(d.x)
    d_intr = [(d.x, zero, one, zero, d.y), (zero, d.y, zero, one, zero)]
    d_dist = [[fx * du + s * dv for du, dv in d.jac_coeffs], [fy * dv for _, dv in d.jac_coeffs]]

    def stack(rows, m):
        if m == 0:
            return mx.zeros((*shape, 2, 0), dtype=d.x.dtype)
        return mx.stack([mx.stack([mx.broadcast_to(e, shape) for e in row], axis=-1) for row in rows], axis=-2)

    k = 0 if dist is None else dist.shape[-1]
    return stack(d_points, 3), stack(d_pose, 6), stack(d_intr, 5), stack(d_dist, k)


def normalize_pixels(u: mx.array, v: mx.array, K: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """``(x, y, focal_ok)``: K^-1 [u, v, 1] of pixel coordinates u, v (*, N) for upper-triangular
    K (*, 3, 3), with a safe denominator (the projection core's inverse pinhole, used by PnP and
    triangulation as well)."""
    fx, fy, cx, cy, s, fok = _intrinsics(K)
    ifx, ify = 1.0 / mx.where(fok, fx, 1.0), 1.0 / mx.where(fok, fy, 1.0)
    y = (v - cy) * ify
    x = (u - cx - s * y) * ifx
    return x, y, fok


def _check_pixels(pixels: mx.array, name: str = "pixels") -> tuple[mx.array, bool]:
    check_trailing(pixels, (2,), name)
    single = pixels.ndim == 1
    return (pixels[None] if single else pixels), single


class Unprojection(NamedTuple):
    """``points`` (*, N, 3) world points, ``points_cam`` (*, N, 3), ``valid`` (*, N) bool."""

    points: mx.array
    points_cam: mx.array
    valid: mx.array


def unproject_points(pixels: Any, depth: Any, K: Any, pose: Any = None, dist: Any = None, model: str = "opencv",
                     return_valid: bool = False, iterations: int = 10, tol: float | None = None):
    """Lift pixels with camera-frame depth z back to world points (inverse of :func:`project_points`).

    Distortion is removed by :func:`undistort_points`' fixed-iteration Newton solve.

    Args:
        pixels: (*, N, 2) or (2,).
        depth: (*, N) camera-frame z (broadcasts against pixels[..., 0]).
        K, pose, dist, model: as in :func:`project_points`.
        return_valid: also return the mask (undistortion converged, fx, fy > 0, finite).
        iterations, tol: as in :func:`undistort_points`.

    Returns:
        world points (*, N, 3), or :class:`Unprojection` ``(points, points_cam, valid)``
        when ``return_valid``.

    Example:
        >>> K = mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
        >>> X = unproject_points(mx.array([[55.0, 50.0]]), mx.array([2.0]), K)
        >>> [round(c, 4) for c in X[0].tolist()]
        [0.1, 0.2, 2.0]
    """
    check_newton(iterations, tol)
    (px, z, K, pose, dist), out = _inputs(pixels=pixels, depth=depth, K=K, pose=pose, dist=dist)
    px, single = _check_pixels(px)
    cam_batch = _check_camera(K, pose, dist, model)
    if single and z.ndim >= 1:
        z = z[..., None]
    pt_batch = broadcast_batch(px.shape[:-1], z.shape, names=("pixels (*, N)", "depth (*, N)"))
    broadcast_batch(cam_batch, pt_batch[:-1], names=("camera", "pixels"))
    cameras = _given(pose, dist)
    if projection_cuda.enabled([px, z, K, *cameras], dist, model):
        world, cam, valid = _unproject_fast(pose is not None, dist is not None, iterations, tol)(px, z, K, *cameras)
        valid = valid > 0
    else:
        world, cam, valid = _unproject_values(px, z, K, pose, dist, model, iterations, tol)
    res = Unprojection(cast_out(world, out), cast_out(cam, out), valid)
    if single:
        res = Unprojection(res.points[..., 0, :], res.points_cam[..., 0, :], res.valid[..., 0])
    return res if return_valid else res.points


@compiled
def _unproject_values(px, z, K, pose, dist, model, iterations, tol):
    """(world points, camera-frame points, valid) of checked inputs, in pure mx, compiled."""
    xd, yd, fok = normalize_pixels(px[..., 0], px[..., 1], K)
    und = _undistort(xd, yd, dist, model, iterations, tol)
    xc, yc = und.x * z, und.y * z
    zc = mx.broadcast_to(z, xc.shape)
    cam = mx.stack([xc, yc, zc], axis=-1)
    if pose is not None:
        rel = [c - pose[..., i, 3, None] for i, c in enumerate((xc, yc, zc))]
        world = mx.stack(_rotate(pose, *rel, transpose=True), axis=-1)
    else:
        world = cam
    valid = all_of(und.converged, fok, mx.all(mx.isfinite(world), axis=-1))
    return world, cam, valid


@functools.cache
def _unproject_fast(has_pose: bool, has_dist: bool, iterations: int, tol: float | None):
    """:func:`projection_cuda.unproject` on (pixels, depth, K[, pose][, dist]), valid as 1.0 / 0.0,
    differentiated as the pure path."""

    def kernel(px, z, K, *rest):
        return projection_cuda.unproject(px, z, K, *_taken(rest, has_pose, has_dist), iterations,
                                         newton_tol(mx.float32, tol))

    def pure(px, z, K, *rest):
        world, cam, valid = _unproject_values(px, z, K, *_taken(rest, has_pose, has_dist), "opencv", iterations, tol)
        return world, cam, mx.where(valid, 1.0, 0.0)

    return fast_path(kernel, pure, lambda *args: True)


def undistort_points(pixels: Any, K: Any, dist: Any = None, model: str = "opencv", K_new: Any = None,
                     iterations: int = 10, tol: float | None = None) -> tuple[mx.array, mx.array]:
    """Remove lens distortion from pixels (like ``cv2.undistortPoints`` / ``cv2.fisheye.undistortPoints``).

    A fixed number of Newton steps with closed-form 2x2 solves runs on the device for every
    point; the last step is differentiable (implicit-function gradients).

    Args:
        pixels: (*, N, 2) distorted pixels.
        K: (*, 3, 3); dist: (*, k) as in :func:`project_points`.
        K_new: (*, 3, 3) or None. None returns normalized coordinates (x, y) = (X/Z, Y/Z)
            (OpenCV with P empty); otherwise pixels of the ideal pinhole camera K_new (OpenCV's P).
        iterations: Newton steps (static), an integer >= 0.
        tol: residual bound (normalized units, relative to 1 + |target|) for ``converged``,
            >= 0; default (None) 16 eps of the dtype.

    Returns:
        ``(points (*, N, 2), converged (*, N) bool)``.

    Example:
        >>> K = mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
        >>> p, ok = undistort_points(mx.array([[60.0, 40.0]]), K, mx.array([0.1, 0.0, 0.0, 0.0]))
        >>> round(p[0, 0].item(), 4), ok.tolist()
        (0.0999, [True])
    """
    check_newton(iterations, tol)
    (px, K, dist, K_new), out = _inputs(pixels=pixels, K=K, dist=dist, K_new=K_new)
    px, single = _check_pixels(px)
    cam_batch = _check_camera(K, None, dist, model)
    if K_new is not None:
        check_K(K_new, "K_new")
        cam_batch = broadcast_batch(cam_batch, K_new.shape[:-2], names=("camera", "K_new"))
    broadcast_batch(cam_batch, px.shape[:-2], names=("camera", "pixels"))
    pts, ok = _undistorted(px, K, dist, model, K_new, iterations, tol)
    pts = cast_out(pts, out)
    return (pts[..., 0, :], ok[..., 0]) if single else (pts, ok)


def _undistorted(px, K, dist, model, K_new, iterations, tol):
    """(points, converged) of :func:`undistort_points` on checked inputs, in pure mx (only the
    repeated Newton step is compiled: the rest, compiled, costs more g++ on the first call than it saves)."""
    xd, yd, fok = normalize_pixels(px[..., 0], px[..., 1], K)
    und = _undistort(xd, yd, dist, model, iterations, tol)
    x, y, ok = und.x, und.y, all_of(und.converged, fok)
    if K_new is not None:
        fx, fy, cx, cy, s, nok = _intrinsics(K_new)
        x, y, ok = fx * x + s * y + cx, fy * y + cy, all_of(ok, nok)
    pts = mx.stack([x, y], axis=-1)
    return pts, mx.broadcast_to(ok, pts.shape[:-1])


def distort_points(points: Any, K: Any, dist: Any = None, model: str = "opencv",
                   K_new: Any = None) -> tuple[mx.array, mx.array]:
    """Apply lens distortion: the inverse of :func:`undistort_points`.

    Args:
        points: (*, N, 2) normalized coordinates (K_new None) or ideal pixels of K_new.
        K: (*, 3, 3) intrinsics of the distorted camera; dist, model as in :func:`project_points`.
        K_new: (*, 3, 3) or None.

    Returns:
        ``(pixels (*, N, 2) distorted pixels of K, valid (*, N))`` (valid is False only for
        the tilt model's points at infinity, non-finite results and fx, fy <= 0).

    Example:
        >>> K = mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
        >>> px, ok = distort_points(mx.array([[0.1, 0.0]]), K, mx.array([0.1, 0.0, 0.0, 0.0]))
        >>> round(px[0, 0].item(), 3)
        60.01
    """
    (pts, K, dist, K_new), out = _inputs(points=points, K=K, dist=dist, K_new=K_new)
    pts, single = _check_pixels(pts, "points")
    cam_batch = _check_camera(K, None, dist, model)
    x, y = pts[..., 0], pts[..., 1]
    nok = True
    if K_new is not None:
        check_K(K_new, "K_new")
        cam_batch = broadcast_batch(cam_batch, K_new.shape[:-2], names=("camera", "K_new"))
        x, y, nok = normalize_pixels(x, y, K_new)
    broadcast_batch(cam_batch, pts.shape[:-2], names=("camera", "points"))
    d = _distort(x, y, dist, model, False)
    fx, fy, cx, cy, s, fok = _intrinsics(K)
    u, v = fx * d.x + s * d.y + cx, fy * d.y + cy
    ok = all_of(d.ok, fok, nok, mx.isfinite(u), mx.isfinite(v))
    px = mx.stack([u, v], axis=-1)
    px, ok = cast_out(px, out), mx.broadcast_to(ok, px.shape[:-1])
    return (px[..., 0, :], ok[..., 0]) if single else (px, ok)


def pixel_grid(height: int, width: int, dtype: mx.Dtype = mx.float32) -> mx.array:
    """(height, width, 2) pixel-centre coordinates ``[u, v] = [column, row]`` (OpenCV convention).

    Example:
        >>> pixel_grid(2, 3)[1, 2].tolist()
        [2.0, 1.0]
    """
    if height < 0 or width < 0:
        raise ValueError(f"pixel_grid: height and width must be >= 0, got {height}, {width}")
    u = mx.broadcast_to(mx.arange(width, dtype=dtype)[None, :], (height, width))
    v = mx.broadcast_to(mx.arange(height, dtype=dtype)[:, None], (height, width))
    return mx.stack([u, v], axis=-1)


class Rays(NamedTuple):
    """``origins`` (*, N, 3), unit ``directions`` (*, N, 3) in the world frame, ``valid`` (*, N)."""

    origins: mx.array
    directions: mx.array
    valid: mx.array


def pixel_rays(pixels: Any, K: Any, pose: Any = None, dist: Any = None, model: str = "opencv",
               return_valid: bool = False, iterations: int = 10, tol: float | None = None):
    """World-frame rays through pixels: origins at the camera centre, unit directions.

    Returns:
        ``(origins, directions)`` each (*, N, 3), or :class:`Rays` with ``valid`` when
        ``return_valid``.

    Example:
        >>> K = mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
        >>> o, d = pixel_rays(mx.array([[50.0, 40.0]]), K)
        >>> d.tolist()
        [[0.0, 0.0, 1.0]]
    """
    (px, K, pose, dist), out = _inputs(pixels=pixels, K=K, pose=pose, dist=dist)
    px, single = _check_pixels(px)
    ones = mx.ones(px.shape[:-1], dtype=px.dtype)
    un = unproject_points(px, ones, K, None, dist, model, True, iterations, tol)
    cam = un.points_cam
    dirs = cam / mx.sqrt(mx.sum(cam * cam, axis=-1, keepdims=True))  # z = 1: the norm is >= 1
    if pose is not None:
        _check_camera(K, pose, dist, model)
        dirs = mx.stack(_rotate(pose, dirs[..., 0], dirs[..., 1], dirs[..., 2], transpose=True), axis=-1)
        t = pose[..., :3, 3]
        center = -mx.stack([sum(pose[..., j, i] * t[..., j] for j in range(3)) for i in range(3)], axis=-1)
        origins = center[..., None, :]
    else:
        origins = mx.zeros((1, 3), dtype=dirs.dtype)
    origins = mx.broadcast_to(origins, dirs.shape)
    valid = all_of(un.valid, mx.all(mx.isfinite(dirs), axis=-1))
    if single:
        origins, dirs, valid = origins[..., 0, :], dirs[..., 0, :], valid[..., 0]
    res = Rays(cast_out(origins, out), cast_out(dirs, out), valid)
    return res if return_valid else (res.origins, res.directions)
