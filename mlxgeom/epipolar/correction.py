"""Optimal two-view correction: the closest correspondences that satisfy ``p2^T F p1 = 0`` exactly.

Minimise ``|p1 - q1|^2 + |p2 - q2|^2`` subject to ``q2^T F q1 = 0`` (the geometric error of
Hartley and Sturm, "Triangulation", CVIU 68(2), 1997). OpenCV's ``correctMatches`` solves
Hartley and Sturm's degree-6 polynomial per point in float64 with a host root finder; here the
same minimiser comes from Lindstrom's iteration ("Triangulation made easy", CVPR 2010, sec. 3):
at the optimum the corrections are ``d1 = lam S F^T q2``, ``d2 = lam S F q1`` (S = [I2 | 0]),
and each step solves the constraint exactly for lam along the current normals (a quadratic,
taken by its small root in the cancellation-free form ``c / (b + sqrt(b^2 - a c))``). Two steps
are Lindstrom's ``niter2``; the default three reach the minimiser to ~1e-10 px^2 of cost even at
10 px of noise (tests). Branch-free, a few dozen flops per point per step, differentiable.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

from .. import linalg
from .._checks import as_floats, broadcast_batch, cast_out, check_trailing
from .._vmap import all_of


class CorrectedMatches(NamedTuple):
    """Result of :func:`correct_matches`: ``x1``, ``x2`` (*, N, 2) corrected pixels (the inputs
    where not valid) and ``valid`` (*, N) (finite, and the constraint's quadratic has a real root)."""

    x1: mx.array
    x2: mx.array
    valid: mx.array


def matrix_and_matches(m: Any, x1: Any, x2: Any, name: str) -> tuple[mx.array, mx.array, mx.array, mx.Dtype]:
    """Convert a (*, 3, 3) matrix and matches (*, N, 2) to one compute dtype; ValueError naming
    the input whose shape is wrong or when x1 and x2 have different N."""
    (m, p1, p2), out = as_floats(m, x1, x2, names=(name, "x1", "x2"))
    check_trailing(m, (3, 3), name)
    check_trailing(p1, (None, 2), "x1")
    check_trailing(p2, (None, 2), "x2")
    if p1.shape[-2] != p2.shape[-2]:
        raise ValueError(f"x1 and x2 must have the same number of points N, got {tuple(p1.shape)} and "
                         f"{tuple(p2.shape)}")
    return m, p1, p2, out


def _normalise(f: mx.array, p1: mx.array, p2: mx.array) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """Shift each image's points by their mean and scale both by one factor s (the problem is
    invariant under that), so float32 sees O(1) numbers; returns F', points, and s."""
    finite = mx.all(all_of(mx.isfinite(p1), mx.isfinite(p2)), axis=-1, keepdims=True)
    cnt = mx.maximum(mx.sum(finite, axis=-2, keepdims=True), 1)
    m1 = mx.sum(mx.where(finite, p1, 0.0), axis=-2, keepdims=True) / cnt
    m2 = mx.sum(mx.where(finite, p2, 0.0), axis=-2, keepdims=True) / cnt
    spread = mx.sum(mx.where(finite, mx.abs(p1 - m1) + mx.abs(p2 - m2), 0.0), axis=(-2, -1), keepdims=True) / (4 * cnt)
    s = mx.where(spread > 0, spread, 1.0)
    # p = s q + m in each image: F' = T2^T F T1 with T = [[s, 0, m_x], [0, s, m_y], [0, 0, 1]].
    sc = s[..., 0, 0]
    one, zero = mx.ones_like(sc), mx.zeros_like(sc)
    t1, t2 = (mx.stack([mx.stack([sc, zero, m[..., 0, 0]], -1), mx.stack([zero, sc, m[..., 0, 1]], -1),
                        mx.stack([zero, zero, one], -1)], -2) for m in (m1, m2))
    fn = linalg.matmul(linalg.matmul(t2.swapaxes(-1, -2), f), t1)
    norm2 = mx.sum(fn * fn, axis=(-2, -1), keepdims=True)
    nonzero = norm2 > 0
    fn = fn * mx.where(nonzero, mx.rsqrt(mx.where(nonzero, norm2, 1.0)), 0.0)  # F = 0: no inf in the VJP
    return fn, (p1 - m1) / s, (p2 - m2) / s, (m1, m2, s)


def _step(f: mx.array, q1: mx.array, q2: mx.array, p1: mx.array, p2: mx.array, c: mx.array):
    """One Lindstrom step from the current estimates q (normals there) for the original points p."""
    g = [[f[..., i, j][..., None] for j in range(3)] for i in range(3)]
    n1 = [g[0][k] * q2[..., 0] + g[1][k] * q2[..., 1] + g[2][k] for k in range(2)]  # S F^T q2
    n2 = [g[k][0] * q1[..., 0] + g[k][1] * q1[..., 1] + g[k][2] for k in range(2)]  # S F q1
    a = sum(n2[i] * g[i][j] * n1[j] for i in range(2) for j in range(2))
    b = 0.5 * (n1[0] * (g[0][0] * p2[..., 0] + g[1][0] * p2[..., 1] + g[2][0])
               + n1[1] * (g[0][1] * p2[..., 0] + g[1][1] * p2[..., 1] + g[2][1])
               + n2[0] * (g[0][0] * p1[..., 0] + g[0][1] * p1[..., 1] + g[0][2])
               + n2[1] * (g[1][0] * p1[..., 0] + g[1][1] * p1[..., 1] + g[1][2]))
    disc = b * b - a * c
    real, pos = disc >= 0, disc > 0
    den = b + mx.sign(b) * mx.where(pos, mx.sqrt(mx.where(pos, disc, 1.0)), 0.0)  # double where: finite VJP at 0
    nz = mx.abs(den) > 0
    lam = mx.where(nz, c / mx.where(nz, den, 1.0), 0.0)
    q1 = p1 - lam[..., None] * mx.stack(n1, -1)
    q2 = p2 - lam[..., None] * mx.stack(n2, -1)
    return q1, q2, all_of(real, nz)


def correct_matches(F: Any, x1: Any, x2: Any, iterations: int = 3) -> CorrectedMatches:
    """Optimally corrected correspondences (like ``cv2.correctMatches``).

    Moves each pair ``(x1, x2)`` the least (sum of squared pixel distances) onto a pair that
    satisfies the epipolar constraint ``x2^T F x1 = 0`` exactly, with Lindstrom's iteration
    (module docstring). It agrees with OpenCV's Hartley-Sturm polynomial solution to ~1e-4 px in
    float32 on matches with 0.5-2 px of noise; with larger noise OpenCV's root finder can stop
    short of the minimiser, and this never has the larger cost (tests, float64).

    Args:
        F: (*, 3, 3) fundamental matrices (any scale), ``x2^T F x1 = 0``.
        x1, x2: (*, N, 2) pixels in image 1 and image 2 (batch dims broadcast with F's).
        iterations: static number of steps (>= 1; 2 is Lindstrom's niter2).

    Returns:
        :class:`CorrectedMatches` ``(x1, x2, valid)``.

    Example:
        >>> import mlx.core as mx
        >>> F = mx.array([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # rectified: y1 = y2
        >>> res = correct_matches(F, mx.array([[10.0, 4.0]]), mx.array([[3.0, 6.0]]))
        >>> res.x1.tolist(), res.x2.tolist()
        ([[10.0, 5.0]], [[3.0, 5.0]])
    """
    f, p1, p2, out = matrix_and_matches(F, x1, x2, "F")
    if iterations < 1:
        raise ValueError(f"iterations: expected >= 1, got {iterations}")
    batch = broadcast_batch(f.shape[:-2], p1.shape[:-2], p2.shape[:-2], names=("F", "x1", "x2"))
    n = p1.shape[-2]
    f = mx.broadcast_to(f, (*batch, 3, 3))
    p1, p2 = mx.broadcast_to(p1, (*batch, n, 2)), mx.broadcast_to(p2, (*batch, n, 2))
    fn, u1, u2, (m1, m2, s) = _normalise(f, p1, p2)
    h1 = mx.concatenate([u1, mx.ones_like(u1[..., :1])], -1)
    h2 = mx.concatenate([u2, mx.ones_like(u2[..., :1])], -1)
    c = mx.sum(h2[..., :, :, None] * fn[..., None, :, :] * h1[..., :, None, :], axis=(-2, -1))  # x2^T F x1
    q1, q2 = u1, u2
    for _ in range(iterations):
        q1, q2, real = _step(fn, q1, q2, u1, u2, c)
    finite = all_of(mx.all(all_of(mx.isfinite(q1), mx.isfinite(q2)), axis=-1),
                    mx.all(mx.isfinite(fn), axis=(-2, -1))[..., None])
    valid = all_of(real, finite)
    c1 = mx.where(valid[..., None], q1 * s + m1, p1)
    c2 = mx.where(valid[..., None], q2 * s + m2, p2)
    return CorrectedMatches(cast_out(c1, out), cast_out(c2, out), valid)
