"""Closed-form PnP initialisers (EPnP and DLT) on normalised image coordinates.

Every function here takes world points ``pw`` (*, N, 3), normalised image points
``xn`` (*, N, 2) (``K^-1 [u, v, 1]``, so the camera has unit focal length) and point
weights ``w`` (*, N) in {0, 1} (0 = ignore the point), and returns ``(R, t, ok)``:
(*, 3, 3), (*, 3) world-to-camera and a (*) bool mask of the problems where the
configuration was non-degenerate. Everything is a fixed sequence of batched
elementwise ops, small products and ``linalg.eigh``/``solve_spd_ex``.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .. import linalg
from .._checks import eps
from .._cuda import fast_path
from .._vmap import all_of
from ..camera import projection
from ..solve.normal_equations import normal_equations
from ..linalg.products import _unpack_symmetric
from ..homography._common import safe_div, safe_sqrt
from . import pnp_cuda

_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
# Columns of the 6x10 matrix L for the products beta_a beta_b, in EPnP's order
# (b11, b12, b22, b13, b23, b33, b14, b24, b34, b44).
_PRODUCTS = ((0, 0), (0, 1), (1, 1), (0, 2), (1, 2), (2, 2), (0, 3), (1, 3), (2, 3), (3, 3))
# Planarity threshold on lambda_min / lambda_max of the point covariance.
_PLANAR_RATIO = {mx.float32: 1e-5, mx.float64: 1e-10}
# A reflection is needed where it fits the image with this many times less squared error than
# the best rotation (an F-test-like margin: noise alone rarely makes one fit 4x better).
_REFLECTION_EVIDENCE = 4.0
# Inverse-iteration steps for the null vectors of the normal matrices.
_ITERATIONS = 2


def _centroid(p: mx.array, w: mx.array) -> mx.array:
    n = mx.maximum(mx.sum(w, axis=-1), 1.0)[..., None]
    return mx.sum(p * w[..., None], axis=-2) / n


def _packed_moments(pw: mx.array, xn: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Centroid (*, 3) and the moments packed as (*, 4, 10) (entries i <= j): the pure-mx path."""
    c0 = _centroid(pw, w)
    d = pw - c0[..., None, :]
    h = [d[..., 0], d[..., 1], d[..., 2], None]  # None: the homogeneous 1
    x, y = xn[..., 0], xn[..., 1]
    coef = [lambda: w, lambda: w * x, lambda: w * y, lambda: w * (x * x + y * y)]

    def product(i: int, j: int) -> mx.array | None:
        return h[i] * h[j] if h[j] is not None else h[i]

    # One (*, N) product and row sum per entry, each built afresh so that it fuses alone.
    packed = mx.stack([mx.stack([mx.sum(c() if h[i] is None else c() * product(i, j), axis=-1)
                                 for i in range(4) for j in range(i, 4)], -1) for c in coef], -2)
    return c0, packed


_packed_moments_fast = fast_path(pnp_cuda.point_moments, _packed_moments, pnp_cuda.moments_enabled)


def point_moments(pw: mx.array, xn: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """The only per-point statistics EPnP and DLT need, in one pass over the points.

    Returns the weighted centroid ``c0`` (*, 3) and the moments (*, 4, 4, 4): entry ``[c]`` is
    ``sum_i c_i h_i h_i^T`` of the centred homogeneous points ``h_i = [pw_i - c0, 1]`` for the
    four weights ``c`` in ``w (1, x, y, x^2 + y^2)`` of the image points ``xn = (x, y)``.
    Both methods' normal matrices are ``sum_i c_i q_i q_i^T`` for points ``q_i = h_i T``
    affine in ``pw_i`` (EPnP's barycentric weights, DLT's scaled points), so they are
    ``T^T moments T`` with no further pass over the points.
    """
    c0, packed = _packed_moments_fast(pw, xn, w)
    return c0, _unpack_symmetric(packed, 4)


def _transformed(moments: mx.array, t: mx.array) -> mx.array:
    """``T^T moments[c] T`` (*, 4, 4, 4) for the points ``q_i = h_i T`` (T (*, 4, 4))."""
    t = t[..., None, :, :]
    return linalg.matmul(linalg.matmul(t.swapaxes(-1, -2), moments), t)


def _control_points(c0: mx.array, moments: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """EPnP control points (*, 4, 3), the map ``T`` (*, 4, 4) from the centred homogeneous
    points to their barycentric weights (``alpha_i = h_i T``) and the non-planar mask (*)."""
    n = mx.maximum(moments[..., 0, 3, 3], 1.0)
    cov = moments[..., 0, :3, :3] / n[..., None, None]
    lam, v = linalg.eigh(cov)
    lam_max = mx.maximum(lam[..., 2:], eps(c0.dtype))
    spread = lam / lam_max > _PLANAR_RATIO.get(c0.dtype, 1e-5)
    # Double where: flat directions get a dummy scale so 1/sqrt stays finite.
    scale = mx.sqrt(mx.where(spread, lam, lam_max))
    ctrl = c0[..., None, :] + (v * scale[..., None, :]).swapaxes(-1, -2)
    # coords_i = d_i V / scale; alpha_i = [1 - sum(coords_i), coords_i]
    m = v / scale[..., None, :]
    top = mx.concatenate([-mx.sum(m, axis=-1, keepdims=True), m], axis=-1)
    one = mx.broadcast_to(mx.array([1.0, 0.0, 0.0, 0.0], dtype=c0.dtype), (*top.shape[:-2], 1, 4))
    return mx.concatenate([c0[..., None, :], ctrl], axis=-2), mx.concatenate([top, one], axis=-2), mx.all(spread, axis=-1)


def _projective_normal_blocks(mom: mx.array) -> mx.array:
    """(*, 3, 3, p, p) blocks (a, b) of ``sum_i w_i (r1 r1^T + r2 r2^T)`` for the rows
    ``r1 = [1, 0, -x] (x) q_i`` and ``r2 = [0, 1, -y] (x) q_i`` from the moments (*, 4, p, p)
    of the points ``q_i`` (block (a, b) = coefficient ``[[1, 0, -x], [0, 1, -y], [-x, -y,
    x^2 + y^2]]_ab`` times ``q_i q_i^T``)."""
    s1, sx, sy, sr = (mom[..., c, :, :] for c in range(4))
    zero = mx.zeros_like(s1)
    return mx.stack([mx.stack([s1, zero, -sx], -3), mx.stack([zero, s1, -sy], -3), mx.stack([-sx, -sy, sr], -3)], -4)


def _epnp_mtm(alpha_moments: mx.array) -> mx.array:
    """``M^T M`` (*, 12, 12) of EPnP's 2N x 12 system (Lepetit et al. 2009, eq. 7)."""
    # Per point the two rows are alpha (x) [1, 0, -x] and alpha (x) [0, 1, -y], so the
    # (j, k) 3x3 block of M^T M is sum_i w_i a_ij a_ik [[1, 0, -x], [0, 1, -y], [-x, -y, x^2 + y^2]]:
    # four weighted 4x4 moment matrices of the alphas give all of it.
    b = _projective_normal_blocks(alpha_moments)  # (*, 3, 3, 4, 4) indexed (a, b, j, k)
    # unknowns are ordered (control point j, coordinate a): reorder to (j, a, k, b) -> 12 x 12
    return b.transpose(*range(b.ndim - 4), -2, -4, -1, -3).reshape(*b.shape[:-4], 12, 12)


def _shape_scale(null: mx.array) -> mx.array:
    """RMS distance (*, 4) between the four control points of each null vector (*, 4, 4, 3)."""
    sq = sum(mx.sum(mx.square(null[..., a, :] - null[..., b, :]), axis=-1) for a, b in _PAIRS)
    return mx.sqrt(mx.maximum(sq / len(_PAIRS), 1e-30))


def _l_matrix(null: mx.array) -> mx.array:
    """EPnP's L (*, 6, 10) from the four null vectors (*, 4 vectors, 4 points, 3)."""
    dv = mx.stack([null[..., a, :] - null[..., b, :] for a, b in _PAIRS], axis=-2)  # (*, 4, 6, 3)
    cols = [(1.0 if i == j else 2.0) * mx.sum(dv[..., i, :, :] * dv[..., j, :, :], axis=-1) for i, j in _PRODUCTS]
    return mx.stack(cols, axis=-1)


def _least_squares(l_sub: mx.array, rho: mx.array) -> mx.array:
    """Normal-equation least squares for the small beta systems (n <= 5), lightly regularised."""
    a, g = normal_equations(rho, l_sub, mx.ones_like(rho))
    return _damped_solve(a, g, 10.0 * eps(a.dtype))[0]


def _damped_solve(a: mx.array, g: mx.array, rel: float) -> tuple[mx.array, mx.array]:
    """``solve_spd_ex(A + (rel tr(A) + 1e-30) I, g)``: the beta systems, lightly regularised."""
    tr = mx.sum(mx.diagonal(a, axis1=-2, axis2=-1), axis=-1)
    return linalg.solve_spd_ex(a + (rel * tr + 1e-30)[..., None, None] * mx.eye(a.shape[-1], dtype=a.dtype), g)


def _columns(m: mx.array, cols: tuple[int, ...]) -> mx.array:
    return mx.stack([m[..., c] for c in cols], axis=-1)


def _beta_guesses(lmat: mx.array, rho: mx.array) -> list[mx.array]:
    """EPnP's three linearised beta estimates (N = 1, 2, 3 null vectors), each (*, 4)."""
    zero = mx.zeros_like(rho[..., 0])
    x = _least_squares(_columns(lmat, (0, 1, 3, 6)), rho)  # b11 b12 b13 b14
    sgn = mx.where(x[..., 0] < 0, -1.0, 1.0)
    b1 = safe_sqrt(sgn * x[..., 0])
    g1 = mx.stack([b1, *(safe_div(sgn * x[..., i], b1, b1 > 1e-30) for i in (1, 2, 3))], -1)
    guesses = [g1]
    for cols in ((0, 1, 2), (0, 1, 2, 3, 4)):
        x = _least_squares(_columns(lmat, cols), rho)  # b11 b12 b22 (b13 b23)
        neg = x[..., 0] < 0
        b1 = safe_sqrt(mx.where(neg, -x[..., 0], x[..., 0]))
        b2 = safe_sqrt(mx.where(neg, -x[..., 2], x[..., 2]))
        b1 = mx.where(x[..., 1] < 0, -b1, b1)
        b3 = safe_div(x[..., 3], b1, mx.abs(b1) > 1e-30) if len(cols) == 5 else zero
        guesses.append(mx.stack([b1, b2, b3, zero], -1))
    return guesses


def _refine_betas(beta: mx.array, lmat: mx.array, rho: mx.array, iters: int = 5) -> mx.array:
    """Gauss-Newton on ``||L b(beta) - rho||^2`` over the four betas (EPnP sec. 3.4).

    With ``G[:, k, j] = (1 + [k == j]) L[:, (k, j)]`` the Jacobian of ``L b(beta)`` is
    ``J = G beta`` (column k = d / d beta_k) and ``L b(beta) = J beta / 2``, so one
    (*, 6, 4, 4) table built once serves every step.
    """
    col = {p: i for i, p in enumerate(_PRODUCTS)}
    table = mx.stack([mx.stack([(2.0 if k == j else 1.0) * lmat[..., col[min(k, j), max(k, j)]] for j in range(4)], -1)
                      for k in range(4)], -2)  # (*, 6, 4 (k), 4 (j))
    for _ in range(iters):
        jac = linalg.matmul(table, beta[..., None, :, None])[..., 0]  # (*, 6, 4)
        res = 0.5 * mx.sum(jac * beta[..., None, :], axis=-1) - rho
        a, g = normal_equations(res, jac, mx.ones_like(res))
        step, ok = _damped_solve(a, -g, 1e-6)
        beta = beta + mx.where(all_of(ok[..., None], mx.all(mx.isfinite(step), -1, keepdims=True)), step, 0.0)
    return beta


def _sq_reprojection(r: mx.array, t: mx.array, pw: mx.array, xn: mx.array, w: mx.array) -> mx.array:
    """sum_i w_i ||pi(R pw_i + t) - xn_i||^2 through the projection core (unit K), 1e6 per point
    that it rejects (behind the camera)."""
    proj = projection._project_values(pw, mx.eye(3, dtype=pw.dtype), mx.concatenate([r, t[..., None]], axis=-1))
    e = mx.sum(mx.square(proj.pixels - xn), axis=-1)
    return mx.sum(w * mx.where(proj.valid, e, 1e6), axis=-1)


def _pose_candidates(beta: mx.array, null: mx.array, to_alpha: mx.array, c0: mx.array,
                     moments: mx.array) -> tuple[mx.array, mx.array]:
    """Poses of the k candidates (k, *): the absolute orientation (Kabsch/Horn, JOSA A 4:629, 1987)
    of the world points onto the camera points ``pc_i = cc^T a_i`` of the camera-frame control
    points ``cc = sum_v beta_v null_v``, without per-point work. Returns R (2k, *, 3, 3) and
    t (2k, *, 3): the k rotations, then their reflections ``R_mirror = diag(1, 1, -1) R``, each
    with ``t = mc - R mw``.

    ``H = sum_i w_i (pc_i - mc)(pw_i - mw)^T``; where ``det H > 0``, R is its nearest rotation.
    Where ``det H < 0`` the best orthogonal fit is a reflection: for a small or distant object
    the perspective cue to the sign of the depths is weak, and noise can mirror the recovered
    depths about their centroid (the weak-perspective depth reversal). R is then the nearest
    rotation to ``diag(1, 1, -1) H``, the fit of the points with their depths mirrored back
    (OpenCV's epnp.cpp negates the reflection's third row: the same matrix), and ``R_mirror``
    is that reflection; :func:`epnp` compares their reprojection errors to tell the ambiguity
    (both fit alike) from an image that only a reflection explains.

    The camera points are linear in the barycentric weights ``a_i = h_i T`` (``T`` =
    ``to_alpha``, ``h_i = [pw_i - c0, 1]``), so ``H = cc^T S`` with ``S = sum_i w_i (a_i -
    abar)(pw_i - mw)^T = T[:3]^T C`` (*, 4, 3), C the centred scatter of the points (from
    :func:`point_moments`); their centroid is ``cc^T abar``. Candidates whose points lie
    behind the camera on average are mirrored first (``cc -> -cc``).
    """
    mom = moments[..., 0, :, :]
    n = mx.maximum(mom[..., 3, 3], 1.0)[..., None]
    dbar = mom[..., :3, 3] / n
    hbar = mx.concatenate([dbar, mx.ones_like(dbar[..., :1])], axis=-1)
    abar = linalg.matmul(hbar[..., None, :], to_alpha)[..., 0, :]
    mw = c0 + dbar
    scatter = mom[..., :3, :3] - n[..., None] * dbar[..., :, None] * dbar[..., None, :]
    s = linalg.matmul(to_alpha[..., :3, :].swapaxes(-1, -2), scatter)  # (*, 4, 3)
    cc = mx.sum(beta[..., :, None, None] * null, axis=-3)  # (k, *, 4, 3)
    depth = mx.sum(abar * n * cc[..., 2], axis=-1)
    cc = mx.where((depth < 0)[..., None, None], -cc, cc)
    h = linalg.matmul(cc.swapaxes(-1, -2), s)
    flip = mx.array([[1.0], [1.0], [-1.0]], dtype=h.dtype)
    r = linalg.project_to_so3(mx.where((linalg.det(h) < 0)[..., None, None], flip * h, h))
    r = mx.concatenate([r, flip * r])
    mc = linalg.matmul(cc.swapaxes(-1, -2), abar[..., None])[..., 0]
    t = mx.concatenate([mc, mc]) - linalg.matmul(r, mw[..., None])[..., 0]
    return r, t


def epnp(pw: mx.array, xn: mx.array, w: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """EPnP (Lepetit, Moreno-Noguer, Fua, IJCV 81, 2009): 4 control points, the null space
    of the 12x12 ``M^T M`` from ``linalg.eigh``, betas from the N = 1, 2, 3 linearisations
    refined by Gauss-Newton; the candidate rotation with the least reprojection error wins.
    Needs >= 4 non-coplanar points (``ok`` is False for coplanar ones, and where a reflection
    explains the image with ``_REFLECTION_EVIDENCE`` times less squared error than every
    rotation: image points that only points behind the camera explain). Depths that noise
    mirrored on a small, distant object are mirrored back (:func:`_pose_candidates`).
    """
    c0, moments = point_moments(pw, xn, w)
    ctrl, to_alpha, spread = _control_points(c0, moments)
    mtm = _epnp_mtm(_transformed(moments, to_alpha))
    _, vecs, found = linalg.eigh_smallest(mtm, k=4, iterations=_ITERATIONS)
    null = vecs.swapaxes(-1, -2).reshape(*vecs.shape[:-2], 4, 4, 3)
    # Unit-norm null vectors of a small, distant object hold control points ~size/depth apart
    # next to O(1) ones: rescaled to one shape scale, L's columns stay comparable and the
    # regularised beta solves (10 eps tr) cannot erase the true one's in float32.
    null = null / _shape_scale(null)[..., None, None]
    lmat = _l_matrix(null)
    rho = mx.stack([mx.sum(mx.square(ctrl[..., a, :] - ctrl[..., b, :]), axis=-1) for a, b in _PAIRS], -1)
    # The three candidates run as one batch along a new leading axis (fewer, larger ops).
    beta = _refine_betas(mx.stack(_beta_guesses(lmat, rho), axis=0), lmat, rho)
    r, t = _pose_candidates(beta, null, to_alpha, c0, moments)
    k = beta.shape[0]
    err = _sq_reprojection(r[:k], t[:k], pw, xn, w)
    err = mx.where(all_of(mx.isfinite(err), mx.all(mx.isfinite(t[:k]), axis=-1)), err, mx.inf)
    best = (err[0], r[0], t[0], r[k], t[k])
    for i in range(1, k):  # the first candidate with the least error wins
        take = err[i] < best[0]
        vec, mat = take[..., None], take[..., None, None]
        best = (mx.where(take, err[i], best[0]), mx.where(mat, r[i], best[1]), mx.where(vec, t[i], best[2]),
                mx.where(mat, r[k + i], best[3]), mx.where(vec, t[k + i], best[4]))
    # Where the winner's reflection fits markedly better, the image needs one.
    floor = mx.sum(w, axis=-1) * (16.0 * eps(err.dtype)) ** 2
    proper = best[0] <= _REFLECTION_EVIDENCE * _sq_reprojection(best[3], best[4], pw, xn, w) + floor
    return best[1], best[2], all_of(spread, found, proper, mx.sum(w, axis=-1) >= 4)


def dlt(pw: mx.array, xn: mx.array, w: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """Direct linear transform for P = [R | t] (Hartley and Zisserman, 2nd ed., sec. 7.1):
    the 3x4 P is the eigenvector of the smallest eigenvalue of ``A^T A`` (12x12, world points
    centred and scaled for conditioning), then R = nearest rotation to P's left block and
    ``t`` the last column, both divided by ``cbrt(det)``. Needs >= 6 non-coplanar points.
    """
    c, moments = point_moments(pw, xn, w)
    mom = moments[..., 0, :, :]
    s = mx.sqrt((mom[..., 0, 0] + mom[..., 1, 1] + mom[..., 2, 2]) / mx.maximum(mom[..., 3, 3], 1.0))
    s = mx.where(s > 0, s, 1.0)
    # the points q_i = [(pw_i - c) / s, 1] = h_i diag(1/s, 1/s, 1/s, 1)
    inv_s = mx.stack([1.0 / s, 1.0 / s, 1.0 / s, mx.ones_like(s)], axis=-1)
    q_moments = moments * inv_s[..., None, :, None] * inv_s[..., None, None, :]
    # rows [qh, 0, -x qh] and [0, qh, -y qh]: unknowns ordered (row of P, column of P)
    b = _projective_normal_blocks(q_moments)  # (*, 3, 3, 4, 4) indexed (a, b, j, k)
    ata = b.transpose(*range(b.ndim - 4), -4, -2, -3, -1).reshape(*b.shape[:-4], 12, 12)
    _, vecs, found = linalg.eigh_smallest(ata, k=1, iterations=_ITERATIONS)
    p = vecs[..., :, 0].reshape(*vecs.shape[:-2], 3, 4)
    m_n, p4 = p[..., :3], p[..., 3]
    m = m_n / s[..., None, None]
    p4 = p4 - linalg.matmul(m, c[..., None])[..., 0]
    det = linalg.det(m)
    lam = mx.where(det < 0, -1.0, 1.0) * mx.power(mx.maximum(mx.abs(det), 1e-30), 1.0 / 3.0)
    r = linalg.project_to_so3(m / lam[..., None, None])
    t = p4 / lam[..., None]
    _, _, spread = _control_points(c, moments)
    return r, t, all_of(spread, found, mx.abs(det) > 0, mx.sum(w, axis=-1) >= 6)
