"""3x3 singular value decomposition and the nearest rotation, branch-free on any device.

Method of McAdams, Selle, Tamstorf, Teran, Sifakis, "Computing the Singular Value
Decomposition of 3x3 matrices with minimal branching and elementary floating point
operations", UW-Madison TR1690, 2011: V from a fixed-sweep Jacobi eigendecomposition of
A^T A (here with exact rotations, :mod:`.eigh`), B = A V, then a Givens QR B = U R
(their section 4). The singular values are R's diagonal, not square roots of the
eigenvalues, so small singular values keep an absolute accuracy of ~eps ||A||.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._checks import as_float, cast_out, check_square, eps
from .._vmap import all_of, batched_vmap
from .eigh import _jacobi_scalar, _rotation, _scale, _sort_ascending, default_sweeps
from .products import matmul

Entries = list[list[mx.array]]


def _givens(b: Entries, u: Entries, p: int, q: int, col: int) -> None:
    """Zero b[q][col] against b[p][col] by a rotation of rows p, q; U <- U G^T (in place)."""
    x, y = b[p][col], b[q][col]
    r = mx.sqrt(x * x + y * y)
    nz = r > 0
    rs = mx.where(nz, r, 1.0)
    c, s = mx.where(nz, x / rs, 1.0), mx.where(nz, y / rs, 0.0)
    for k in range(3):
        bp, bq = b[p][k], b[q][k]
        b[p][k], b[q][k] = c * bp + s * bq, c * bq - s * bp
        up, uq = u[k][p], u[k][q]
        u[k][p], u[k][q] = c * up + s * uq, c * uq - s * up


def _one_sided_sweep(b: Entries, v: Entries) -> None:
    """One Hestenes (one-sided Jacobi) sweep on the columns of B = A V, V <- V J (in place).

    V from the eigenvectors of A^T A is arbitrary inside clusters of singular values
    below sqrt(eps) ||A|| (A^T A cannot resolve them), so B's columns there are not
    orthogonal; rotating them by their own inner products restores orthogonality to
    eps relative to the columns (Demmel and Veselic, SIAM J. Matrix Anal. Appl. 13, 1992).
    """
    for p, q in ((0, 1), (0, 2), (1, 2)):
        dot = lambda i, j: sum(b[k][i] * b[k][j] for k in range(3))  # noqa: E731
        c, s = _rotation(dot(p, p), dot(q, q), dot(p, q))
        for mat in (b, v):
            for k in range(3):
                xp, xq = mat[k][p], mat[k][q]
                mat[k][p], mat[k][q] = c * xp - s * xq, s * xp + c * xq


def _sort_descending(keys: list[mx.array], mats: tuple[Entries, ...]) -> None:
    """Sort the three keys in descending order in place, swapping the columns of each matrix alike."""
    for i, j in ((0, 1), (1, 2), (0, 1)):
        swap = keys[i] < keys[j]
        keys[i], keys[j] = mx.where(swap, keys[j], keys[i]), mx.where(swap, keys[i], keys[j])
        for mat in mats:
            for k in range(3):
                mat[k][i], mat[k][j] = mx.where(swap, mat[k][j], mat[k][i]), mx.where(swap, mat[k][i], mat[k][j])


def _svd_batch_last(a: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """SVD of (3, 3, B) entries scaled to max |a_ij| <= 1: U (3, 3, B), s (3, B), V (3, 3, B)."""
    m = [[a[i, j] for j in range(3)] for i in range(3)]
    ata = mx.stack([mx.stack([sum(m[k][i] * m[k][j] for k in range(3)) for j in range(3)]) for i in range(3)])
    w, v = _sort_ascending(*_jacobi_scalar(ata, default_sweeps(3, a.dtype)))
    vs = [[v[i, 2 - j] for j in range(3)] for i in range(3)]  # descending singular values
    b = [[sum(m[i][k] * vs[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
    _one_sided_sweep(b, vs)
    _sort_descending([sum(b[k][j] * b[k][j] for k in range(3)) for j in range(3)], (b, vs))  # QR: large columns first
    one, zero = mx.ones_like(m[0][0]), mx.zeros_like(m[0][0])
    u = [[one if i == j else zero for j in range(3)] for i in range(3)]
    for p, q, col in ((0, 1, 0), (0, 2, 0), (1, 2, 1)):
        _givens(b, u, p, q, col)
    s = [b[i][i] for i in range(3)]
    for i in range(3):  # numpy convention: s >= 0, the sign goes to U's column
        neg = s[i] < 0
        s[i] = mx.abs(s[i])
        for k in range(3):
            u[k][i] = mx.where(neg, -u[k][i], u[k][i])
    _sort_descending(s, (u, vs))  # descending order even where A^T A ties
    stack = lambda e: mx.stack([mx.stack(row) for row in e])  # noqa: E731
    return stack(u), mx.stack(s), stack(vs)


def _svd(a: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    batch = a.shape[:-2]
    bsize = math.prod(batch)
    scale = _scale(a)
    u, s, v = _svd_batch_last((a / scale).reshape(bsize, 3, 3).transpose(1, 2, 0))
    u = u.transpose(2, 0, 1).reshape(*batch, 3, 3)
    v = v.transpose(2, 0, 1).reshape(*batch, 3, 3)
    return u, s.transpose(1, 0).reshape(*batch, 3) * scale[..., 0], v


def _safe_inverse(d: mx.array, tol: mx.array) -> mx.array:
    """1 / d off the diagonal where |d| > tol, else 0 (double where: no inf in gradients)."""
    big = all_of(mx.abs(d) > tol, ~mx.eye(3, dtype=mx.bool_))
    return mx.where(big, 1.0 / mx.where(big, d, 1.0), 0.0)


def _tolerance(s: mx.array) -> mx.array:
    return mx.maximum(8.0 * eps(s.dtype) * s[..., :1, None], mx.array(1e-30, s.dtype))


@batched_vmap
@mx.custom_function
def _svd_core(a: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    u, s, v = _svd(a)
    return u, s, v.swapaxes(-1, -2)


@_svd_core.vjp
def _svd_vjp(primals, cotangents, outputs):
    # Townsend, "Differentiating the Singular Value Decomposition" (2016), square case,
    # with s_j / (s_j^2 - s_i^2) split as (1/(s_j - s_i) + 1/(s_j + s_i)) / 2 so each part
    # can be guarded separately (equal or both-zero singular values get 0).
    u, s, vt = outputs
    gu, gs, gvt = cotangents
    v = vt.swapaxes(-1, -2)
    tol = _tolerance(s)
    fm = _safe_inverse(s[..., None, :] - s[..., :, None], tol)
    fp = _safe_inverse(s[..., None, :] + s[..., :, None], tol)
    ku = matmul(u.swapaxes(-1, -2), gu)
    kv = matmul(vt, gvt.swapaxes(-1, -2))
    inner = 0.5 * (fm + fp) * (ku - ku.swapaxes(-1, -2)) + 0.5 * (fm - fp) * (kv - kv.swapaxes(-1, -2))
    inner = inner + gs[..., :, None] * mx.eye(3, dtype=s.dtype)
    return (matmul(matmul(u, inner), vt),)


def svd3(a) -> tuple[mx.array, mx.array, mx.array]:
    """Singular value decomposition of (*, 3, 3) matrices (McAdams et al. 2011).

    ``a = u @ diag(s) @ vt`` with s descending and non-negative and u, vt orthogonal;
    as in numpy, det(u) and det(vt) may be -1 (their product has the sign of det a).
    Each matrix is scaled by its largest entry first. Accuracy (tests, vs numpy float64,
    float32): singular values and reconstruction within ~2e-6 ||A||, also for rank-1,
    rank-2, repeated and nearly singular inputs.

    Gradient: analytic VJP (Townsend 2016); pairs of equal singular values get a zero
    coupling term, so u and vt are only differentiable where s is distinct (s itself
    always is). Use :func:`project_to_so3` for U V^T, whose VJP stays well conditioned.

    Args:
        a: (*, 3, 3).

    Returns:
        ``(u, s, vt)``: (*, 3, 3), (*, 3), (*, 3, 3).

    Example:
        >>> import mlx.core as mx
        >>> u, s, vt = svd3(mx.array([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
        >>> [round(x, 5) for x in s.tolist()]
        [3.0, 2.0, 1.0]
    """
    a, out = as_float(a, "a")
    check_square(a, (3,), "a")
    return tuple(cast_out(x, out) for x in _svd_core(a))


def _det3(m: mx.array) -> mx.array:
    e = [[m[..., i, j] for j in range(3)] for i in range(3)]
    return (e[0][0] * (e[1][1] * e[2][2] - e[1][2] * e[2][1]) - e[0][1] * (e[1][0] * e[2][2] - e[1][2] * e[2][0])
            + e[0][2] * (e[1][0] * e[2][1] - e[1][1] * e[2][0]))


def _polar_factors(m: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """U' = U diag(1, 1, d), sigma = (s1, s2, d s3), V with d = sign det(U V^T)."""
    u, s, v = _svd(m)
    d = mx.where(_det3(u) * _det3(v) < 0, -1.0, 1.0).astype(m.dtype)
    flip = mx.stack([mx.ones_like(d), mx.ones_like(d), d], axis=-1)
    return u * flip[..., None, :], s * flip, v


@batched_vmap
@mx.custom_function
def _project_core(m: mx.array) -> mx.array:
    u, _, v = _polar_factors(m)
    return matmul(u, v.swapaxes(-1, -2))


@_project_core.vjp
def _project_vjp(primals, cotangent, output):
    # R = U' V^T with M = U' diag(sigma) V^T: R^T dR = V W V^T, W_ij = (P_ij - P_ji)/(sigma_i + sigma_j),
    # P = U'^T dM V (derivative of the polar factor), so gM = U' [(G - G^T) / (sigma_i + sigma_j)] V^T
    # with G = U'^T gR V. sigma_i + sigma_j >= s_i - s_3 > 0 unless the projection is not unique.
    u, sig, v = _polar_factors(primals)  # one positional argument: the array itself
    g = matmul(matmul(u.swapaxes(-1, -2), cotangent), v)
    inv = _safe_inverse(sig[..., None, :] + sig[..., :, None], _tolerance(sig))
    return (matmul(matmul(u, inv * (g - g.swapaxes(-1, -2))), v.swapaxes(-1, -2)),)


def project_to_so3(m) -> mx.array:
    """Nearest rotation to (*, 3, 3) matrices in the Frobenius norm.

    ``R = U diag(1, 1, det(U V^T)) V^T`` from :func:`svd3` (the special orthogonal
    polar factor; Horn, Hilden, Negahdaripour, JOSA A 5:1127, 1988), chosen over Horn's
    4x4 quaternion eigenproblem because its VJP below is explicit and well conditioned.
    det R = +1 also for reflections; a rotation maps to itself (to rounding).

    Gradient: custom VJP of the polar factor, ``gM = U' [(G - G^T) o 1/(sigma_i +
    sigma_j)] V^T`` with ``G = U'^T gR V``, ``U' = U diag(1, 1, d)``, ``sigma = (s1, s2,
    d s3)``. Its denominators are ~2 near a rotation, so a rotation plus noise has a
    finite, accurate gradient; it is zeroed where the nearest rotation is not unique
    (``sigma_i + sigma_j = 0``, e.g. rank < 2).

    Args:
        m: (*, 3, 3).

    Returns:
        (*, 3, 3) rotation matrices.

    Example:
        >>> import mlx.core as mx
        >>> # a reflection: the axis of the smallest singular value (y) is flipped too
        >>> r = project_to_so3(mx.array([[1.1, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, -1.0]]))
        >>> [round(x, 5) for x in mx.diagonal(r).tolist()]
        [1.0, -1.0, -1.0]
    """
    m, out = as_float(m, "m")
    check_square(m, (3,), "m")
    return cast_out(_project_core(m), out)
