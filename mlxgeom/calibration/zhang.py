"""Zhang's closed-form calibration from views of a planar board, batched on the device.

Zhang, "A flexible new technique for camera calibration", IEEE PAMI 22(11), 2000:

1. per view, the board-to-image homography ``H = lambda K [r1 r2 t]`` (the project's DLT on the
   board's (x, y); the board lies in the plane z = 0);
2. ``r1 . r2 = 0`` and ``|r1| = |r2|`` give two linear constraints per view on the image of the
   absolute conic ``B = K^-T K^-1``, ``v_12^T b = 0`` and ``(v_11 - v_22)^T b = 0`` (sec. 3.1,
   eq. 8-9); ``b`` is the null vector of the stacked system (``linalg.eigh_smallest``), K follows
   in closed form (Appendix B);
3. ``[r1 r2 t] = K^-1 H / |K^-1 h1|``, r3 = r1 x r2, projected to SO(3) (sec. 3.1, Appendix C);
4. radial distortion k1, k2 by linear least squares on the residuals of the ideal projection
   (sec. 3.3, eq. 13).

Pixels are first mapped to ``(p - size / 2) / s`` with ``s = (w + h) / 2`` so that the 6x6
system is well conditioned in float32; K is mapped back at the end. Degenerate view sets are
reported per camera (:class:`CalibrationReason`), never returned as a wrong K: fewer than 3
usable views, or a second-smallest eigenvalue of the (unit-trace) system below ``_GAP`` or below
a multiple of the homographies' own noise, which is what boards that are all parallel to each
other give (Zhang sec. 3.1, "degenerate configurations"), or a conic that is not positive definite.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx

from .. import linalg
from .._vmap import all_of
from ..homography import find_homography
from ..homography._common import safe_div
from ..lie import se3_from_rt
from .reasons import CalibrationReason

# Second-smallest eigenvalue of the unit-trace IAC system below which b is not determined. It grows
# as the 4th power of the boards' spread about fronto-parallel: on 12 synthetic views (f = 800 px,
# 640 x 480, k1 = -0.25, noise 0 or 0.2 px) with this bound and the noise one below, views tilted
# up to 0.085 rad (boards up to ~10 degrees apart) pass, up to 0.07 rad are refused, and parallel
# boards give < 1e-9. A lower bound admits sets whose Zhang start, biased by the uncorrected
# distortion, leads the refinement to a wrong K (fx 163 for 800).
_GAP = 1e-6
# ... and below this multiple of the homographies' own noise (homography_noise): parallel boards
# with pixel noise give ~2x it.
_NOISE_FACTOR = 4.0
# Weight of the zero-skew row relative to the unit-trace system (Zhang sec. 3.1: "add gamma = 0").
_SKEW_WEIGHT = 1.0
_MIN_VIEWS = 3


class ZhangInit(NamedTuple):
    """Closed-form calibration of every camera of a batch.

    Attributes:
        K: (*, 3, 3) intrinsics (the identity where not ``ok``).
        poses: (*, V, 4, 4) board-to-camera poses ``x_cam = R x_board + t``.
        radial: (*, 2) linear estimate of k1, k2 (0 where it is not determined).
        view_ok: (*, V) bool, views whose homography is usable.
        ok: (*) bool, ``reason == CalibrationReason.OK``.
        reason: (*) int32 :class:`CalibrationReason` codes.
    """

    K: mx.array
    poses: mx.array
    radial: mx.array
    view_ok: mx.array
    ok: mx.array
    reason: mx.array


def normalizing_transform(image_size: mx.array) -> tuple[mx.array, mx.array]:
    """Centre (*, 2) and scale (*) of ``p -> (p - c) / s``, ``c = size / 2``, ``s = (w + h) / 2``."""
    c = 0.5 * image_size
    s = 0.5 * (image_size[..., 0] + image_size[..., 1])
    return c, mx.where(s > 0, s, 1.0)


def _v(H: mx.array, i: int, j: int) -> mx.array:
    """Zhang's ``v_ij`` (*, 6) with ``h_i^T B h_j = v_ij^T b``, b = [B11, B12, B22, B13, B23, B33]."""
    hi, hj = [H[..., :, k] for k in (i, j)]
    return mx.stack([hi[..., 0] * hj[..., 0], hi[..., 0] * hj[..., 1] + hi[..., 1] * hj[..., 0],
                     hi[..., 1] * hj[..., 1], hi[..., 2] * hj[..., 0] + hi[..., 0] * hj[..., 2],
                     hi[..., 2] * hj[..., 1] + hi[..., 1] * hj[..., 2], hi[..., 2] * hj[..., 2]], axis=-1)


def _iac_system(H: mx.array, view_ok: mx.array, fix_skew: bool) -> mx.array:
    """Unit-trace 6x6 ``sum_views V_v^T V_v`` (*, 6, 6) of the constraints on b (Zhang eq. 9)."""
    Hn = H / mx.sqrt(mx.sum(H * H, axis=(-2, -1), keepdims=True))
    rows = [_v(Hn, 0, 1), _v(Hn, 0, 0) - _v(Hn, 1, 1)]  # (*, V, 6) each
    w = view_ok.astype(H.dtype)[..., None, None]
    m = mx.sum(w * sum(r[..., :, None] * r[..., None, :] for r in rows), axis=-3)
    tr = mx.sum(mx.diagonal(m, axis1=-2, axis2=-1), axis=-1)
    m = safe_div(m, tr[..., None, None], (tr > 0)[..., None, None])
    if fix_skew:
        m = m + _SKEW_WEIGHT * mx.array([[0.0] * 6, [0, 1.0, 0, 0, 0, 0]] + [[0.0] * 6] * 4, dtype=H.dtype)
    return m


def _intrinsics_from_iac(b: mx.array) -> tuple[mx.array, mx.array]:
    """K (*, 3, 3) from b (*, 6) (Zhang Appendix B) and a mask where B is positive definite."""
    b = b * mx.where(b[..., 0] < 0, -1.0, 1.0)[..., None]
    b11, b12, b22, b13, b23, b33 = (b[..., i] for i in range(6))
    den = b11 * b22 - b12 * b12
    good = all_of(b11 > 0, den > 0)
    v0 = safe_div(b12 * b13 - b11 * b23, den, good)
    lam = b33 - safe_div(b13 * b13 + v0 * (b12 * b13 - b11 * b23), b11, good)
    good = all_of(good, lam > 0)
    alpha = mx.sqrt(safe_div(lam, b11, good))
    beta = mx.sqrt(safe_div(lam * b11, den, good))
    gamma = safe_div(-b12 * alpha * alpha * beta, lam, good)
    u0 = safe_div(gamma * v0, beta, good) - safe_div(b13 * alpha * alpha, lam, good)
    zero, one = mx.zeros_like(alpha), mx.ones_like(alpha)
    K = mx.stack([alpha, gamma, u0, zero, beta, v0, zero, zero, one], axis=-1).reshape(*alpha.shape, 3, 3)
    good = all_of(good, mx.all(mx.isfinite(K), axis=(-2, -1)))
    eye = mx.broadcast_to(mx.eye(3, dtype=K.dtype), K.shape)
    return mx.where(good[..., None, None], K, eye), good


def intrinsics_from_homographies(H: mx.array, view_ok: mx.array, fix_skew: bool = True,
                                 noise: mx.array | float = 0.0) -> tuple[mx.array, mx.array]:
    """Intrinsics from board homographies by the image of the absolute conic (Zhang sec. 3.1).

    Args:
        H: (*, V, 3, 3) board-(x, y)-to-image homographies.
        view_ok: (*, V) bool, views to use.
        fix_skew: add Zhang's ``gamma = 0`` constraint (two views then suffice in theory).
        noise: (*) relative noise of the homographies (:func:`homography_noise`); the views are
            parallel when the system's second eigenvalue is below ``_NOISE_FACTOR`` times it.

    Returns:
        ``(K (*, 3, 3), reason (*) int32)``: reason is :class:`CalibrationReason` OK,
        TOO_FEW_VIEWS, PARALLEL_VIEWS or NO_REAL_INTRINSICS; K is the identity unless OK.

    Example:
        >>> import mlx.core as mx
        >>> from mlxgeom.lie import so3_exp
        >>> K = mx.array([[1.6, 0, 0.1], [0, 1.5, -0.05], [0, 0, 1]])  # pixels / 500, centred
        >>> R = so3_exp(mx.array([[0.3, 0.0, 0.0], [0.0, 0.3, 0.1], [0.2, -0.2, 0.0]]))
        >>> Rt = mx.concatenate([R[..., :2], mx.array([[[0.0], [0.0], [1.0]]] * 3)], axis=-1)
        >>> Kz, reason = intrinsics_from_homographies(K @ Rt, mx.ones(3, dtype=mx.bool_))
        >>> [round(v, 3) for v in (Kz[0, 0].item(), Kz[1, 1].item(), Kz[0, 2].item())], reason.item()
        ([1.6, 1.5, 0.1], 0)
    """
    gap = mx.maximum(_GAP, _NOISE_FACTOR * mx.array(noise, dtype=H.dtype))
    w, v, found = linalg.eigh_smallest(_iac_system(H, view_ok, fix_skew), k=2, iterations=3)
    K, positive = _intrinsics_from_iac(v[..., :, 0])
    determined = all_of(found, w[..., 1] > gap)
    views = mx.sum(view_ok.astype(mx.int32), axis=-1)
    reason = mx.where(views < _MIN_VIEWS, int(CalibrationReason.TOO_FEW_VIEWS),
                      mx.where(~determined, int(CalibrationReason.PARALLEL_VIEWS),
                               mx.where(~positive, int(CalibrationReason.NO_REAL_INTRINSICS),
                                        int(CalibrationReason.OK))))
    ok = (reason == int(CalibrationReason.OK))[..., None, None]
    return mx.where(ok, K, mx.eye(3, dtype=K.dtype)), reason.astype(mx.int32)


def homography_noise(image_points: mx.array, weights: mx.array, residual: mx.array, view_ok: mx.array
                     ) -> mx.array:
    """Relative noise (*) of board homographies: the mean over usable views of
    ``residual^2 / (spread^2 n)``, the fit's RMS residual over the RMS spread of the view's n
    points (*, V, N, 2) about their centroid, all in one frame; the squared relative error of
    each homography, which is the order pixel noise (and uncorrected distortion) gives the
    unit-trace IAC system's eigenvalues."""
    n = mx.sum(weights, axis=-1)
    centre = safe_div(mx.sum(weights[..., None] * image_points, axis=-2), n[..., None], (n > 0)[..., None])
    d2 = mx.sum((image_points - centre[..., None, :]) ** 2, axis=-1)
    spread2 = safe_div(mx.sum(weights * d2, axis=-1), n, n > 0)
    usable = all_of(view_ok, spread2 > 0)
    rel = safe_div(residual * residual, spread2 * n, usable)
    count = mx.sum(usable.astype(rel.dtype), axis=-1)
    return safe_div(mx.sum(mx.where(usable, rel, 0.0), axis=-1), count, count > 0)


def extrinsics_from_homographies(H: mx.array, K: mx.array) -> mx.array:
    """Board-to-camera poses (*, V, 4, 4) from homographies (*, V, 3, 3) and K (*, 3, 3).

    ``[r1 r2 t] = K^-1 H / lambda`` with ``lambda = (|K^-1 h1| + |K^-1 h2|) / 2`` and the sign
    that puts the board in front of the camera (t_z > 0), ``R = project_to_so3([r1 r2 r1 x r2])``
    (Zhang sec. 3.1 and Appendix C).

    Example:
        >>> K = mx.array([[2.0, 0, 0], [0, 2, 0], [0, 0, 1]])
        >>> extrinsics_from_homographies(K[None], K)[0, :3, 3].tolist()
        [0.0, 0.0, 1.0]
    """
    m = linalg.matmul(linalg.inv(K)[..., None, :, :], H)
    r1, r2, t = m[..., :, 0], m[..., :, 1], m[..., :, 2]
    norm = 0.5 * (mx.sqrt(mx.sum(r1 * r1, axis=-1)) + mx.sqrt(mx.sum(r2 * r2, axis=-1)))
    scale = mx.where(t[..., 2] < 0, -1.0, 1.0) / mx.where(norm > 0, norm, 1.0)
    r1, r2, t = (c * scale[..., None] for c in (r1, r2, t))
    r3 = mx.stack([r1[..., 1] * r2[..., 2] - r1[..., 2] * r2[..., 1], r1[..., 2] * r2[..., 0] - r1[..., 0] * r2[..., 2],
                   r1[..., 0] * r2[..., 1] - r1[..., 1] * r2[..., 0]], axis=-1)
    R = linalg.project_to_so3(mx.stack([r1, r2, r3], axis=-1))
    return se3_from_rt(R, t)


def radial_from_residuals(board: mx.array, image_points: mx.array, weights: mx.array, K: mx.array,
                          poses: mx.array) -> mx.array:
    """Linear least-squares k1, k2 (*, 2) of ``u_obs - u = (u - u0)(k1 r^2 + k2 r^4)`` (Zhang eq. 13).

    ``u`` is the ideal (distortion-free) projection of the board points (*, V, N, 3) through K
    (*, 3, 3) and poses (*, V, 4, 4), r the radius of its normalized coordinates; with skew,
    ``u - u0`` is ``fx x + s y``. 0 where the 2x2 system is singular.
    """
    R, t = poses[..., None, :3, :3], poses[..., None, :3, 3]
    pc = mx.sum(R * board[..., None, :], axis=-1) + t  # (*, V, N, 3)
    z = pc[..., 2]
    front = z > 0
    x, y = (safe_div(pc[..., i], z, front) for i in (0, 1))
    Kb = K[..., None, None, :, :]
    du = Kb[..., 0, 0] * x + Kb[..., 0, 1] * y
    dv = Kb[..., 1, 1] * y
    r2 = x * x + y * y
    res_u = image_points[..., 0] - (du + Kb[..., 0, 2])
    res_v = image_points[..., 1] - (dv + Kb[..., 1, 2])
    w = mx.where(front, weights, 0.0)
    flat = (*w.shape[:-2], w.shape[-2] * w.shape[-1])
    jac = [[(du * r2).reshape(flat), (du * r2 * r2).reshape(flat)],
           [(dv * r2).reshape(flat), (dv * r2 * r2).reshape(flat)]]
    A, g = linalg.gauss_newton_system(jac, [res_u.reshape(flat), res_v.reshape(flat)], w.reshape(flat))
    k, ok = linalg.solve_spd_ex(A, g)
    return mx.where(all_of(ok[..., None], mx.all(mx.isfinite(k), axis=-1, keepdims=True)), k, 0.0)


def zhang_init(object_points: mx.array, image_points: mx.array, image_size: mx.array,
               weights: mx.array, fix_skew: bool = True) -> ZhangInit:
    """Closed-form intrinsics, poses and k1, k2 of a batch of cameras (module docstring).

    Args:
        object_points: (*, V, N, 3) board points with z = 0 (only x, y are read for the homography).
        image_points: (*, V, N, 2) their pixels.
        image_size: (*, 2) ``[width, height]``.
        weights: (*, V, N) 1 for usable points, 0 for missing ones.
        fix_skew: force zero skew (OpenCV never estimates it).

    Returns:
        :class:`ZhangInit`.

    Example:
        >>> import mlx.core as mx
        >>> from mlxgeom.calibration.synthetic import synthetic_views
        >>> obj, img, K, dist, poses = synthetic_views(num_views=6, noise=0.0, seed=1, dist=())
        >>> z = zhang_init(obj, img, mx.array([640.0, 480.0]), mx.ones(img.shape[:-1]))
        >>> bool(mx.allclose(z.K, K, atol=0.5)), z.reason.item()
        (True, 0)
    """
    c, s = normalizing_transform(image_size)
    img_n = (image_points - c[..., None, None, :]) / s[..., None, None, None]
    hom = find_homography(object_points[..., :2], img_n, weights, method="dlt")
    noise = homography_noise(img_n, weights, hom.residual, hom.ok)
    Kn, reason = intrinsics_from_homographies(hom.H, hom.ok, fix_skew, noise)
    view_ok = hom.ok
    poses = extrinsics_from_homographies(hom.H, Kn)
    one, zero = mx.ones_like(s), mx.zeros_like(s)
    T_inv = mx.stack([s, zero, c[..., 0], zero, s, c[..., 1], zero, zero, one], axis=-1).reshape(*s.shape, 3, 3)
    K = linalg.matmul(T_inv, Kn)
    ok = reason == int(CalibrationReason.OK)
    K = mx.where(ok[..., None, None], K, mx.eye(3, dtype=K.dtype))
    w = weights * view_ok[..., None].astype(weights.dtype)
    radial = radial_from_residuals(object_points, image_points, w, K, poses)
    return ZhangInit(K, poses, mx.where(ok[..., None], radial, 0.0), view_ok, ok, reason)
