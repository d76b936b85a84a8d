"""Epipolar lines and the point-to-epipolar-line distances (Hartley and Zisserman, 2nd ed., sec. 11.4.3).

Convention: ``x2^T F x1 = 0`` for a correspondence ``x1`` (image 1) <-> ``x2`` (image 2) in
homogeneous pixels; ``l2 = F x1`` is the epipolar line of x1 in image 2 and ``l1 = F^T x2``
that of x2 in image 1 (OpenCV's and H&Z's convention). Both distances are *squared* pixel
distances, as ``cv2.sampsonDistance`` returns them: compare them with ``threshold ** 2``.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._checks import as_floats, broadcast_batch, cast_out, check_square, check_trailing
from .._vmap import all_of, any_of
from ..homography._common import safe_div


def _inputs(F: Any, *points: Any, names: tuple[str, ...]) -> tuple[mx.array, list[mx.array], mx.Dtype]:
    """Convert F (*, 3, 3) and point sets (*, N, 2) with one dtype; F gets a point axis for broadcasting."""
    arrays, out = as_floats(F, *points, names=("F",) + names)
    f, pts = arrays[0], arrays[1:]
    check_square(f, (3,), "F")
    for p, name in zip(pts, names):
        check_trailing(p, (None, 2), name)
    if len(pts) == 2 and pts[0].shape[-2] != pts[1].shape[-2]:
        raise ValueError(f"{names[1]}: expected shape (*, N, 2) with N = {pts[0].shape[-2]} as in {names[0]}, "
                         f"got {tuple(pts[1].shape)}")
    broadcast_batch(f.shape[:-2], *[p.shape[:-2] for p in pts], names=("F",) + names)
    # The distances do not depend on F's scale; its squares would under- or overflow float32 for
    # |F| outside ~1e-14..1e18. With m held constant the gradient is unchanged (d(F / m) = d(F)).
    m = mx.stop_gradient(mx.max(mx.abs(f), axis=(-2, -1), keepdims=True))
    f = f / mx.where(all_of(m > 0, m < mx.inf), m, 1.0)
    return f[..., None, :, :], pts, out


def _apply(f: mx.array, x: mx.array, transpose: bool) -> list[mx.array]:
    """The three entries of ``F [x, y, 1]`` (or ``F^T [x, y, 1]``), each (*, N); f is (*, 1, 3, 3)."""
    px, py = x[..., 0], x[..., 1]
    col = (lambda i, j: f[..., j, i]) if transpose else (lambda i, j: f[..., i, j])
    return [col(i, 0) * px + col(i, 1) * py + col(i, 2) for i in range(3)]


def epipolar_terms(f: mx.array, x1: mx.array, x2: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """``(x2^T F x1, |(F x1)_12|^2, |(F^T x2)_12|^2)``, each (*, N), for f (*, 1, 3, 3) and (*, N, 2) points."""
    l2 = _apply(f, x1, False)
    l1 = _apply(f, x2, True)
    e = x2[..., 0] * l2[0] + x2[..., 1] * l2[1] + l2[2]
    return e, l2[0] ** 2 + l2[1] ** 2, l1[0] ** 2 + l1[1] ** 2


def sampson_sq(f: mx.array, x1: mx.array, x2: mx.array) -> mx.array:
    """Sampson distance (*, N) for f (*, 1, 3, 3) already broadcastable; +inf where both gradients vanish."""
    e, n2, n1 = epipolar_terms(f, x1, x2)
    den = n1 + n2
    d = safe_div(e * e, den, den > 0)
    return mx.where(any_of(den > 0, e == 0), d, mx.inf)


def sampson_distance(F: Any, x1: Any, x2: Any) -> mx.array:
    """Squared Sampson distance of correspondences to F, in squared pixels (as ``cv2.sampsonDistance``).

    ``d = (x2^T F x1)^2 / ((F x1)_1^2 + (F x1)_2^2 + (F^T x2)_1^2 + (F^T x2)_2^2)``, the first-order
    approximation of the squared geometric (reprojection) error (H&Z eq. 11.9).

    Args:
        F: (*, 3, 3) fundamental (or, with normalised coordinates, essential) matrices.
        x1, x2: (*, N, 2) points in image 1 and image 2; batch dims broadcast with F's.

    Returns:
        (*, N) squared distances; +inf where both epipolar-line normals vanish and the point
        is off the line (0 where it is on it).

    Example:
        >>> import mlx.core as mx
        >>> F = mx.array([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # pure x-translation: rows match
        >>> sampson_distance(F, mx.array([[3.0, 2.0]]), mx.array([[5.0, 4.0]])).tolist()
        [2.0]
    """
    f, (a, b), out = _inputs(F, x1, x2, names=("x1", "x2"))
    return cast_out(sampson_sq(f, a, b), out)


def symmetric_epipolar_distance(F: Any, x1: Any, x2: Any) -> mx.array:
    """Squared symmetric epipolar distance, ``d(x2, F x1)^2 + d(x1, F^T x2)^2`` in squared pixels.

    ``d = (x2^T F x1)^2 (1 / ((F x1)_1^2 + (F x1)_2^2) + 1 / ((F^T x2)_1^2 + (F^T x2)_2^2))``
    (H&Z eq. 11.10; kornia's ``symmetrical_epipolar_distance`` with ``squared=True``).

    Args:
        F: (*, 3, 3); x1, x2: (*, N, 2) points of image 1 and image 2.

    Returns:
        (*, N) squared distances; +inf where a point's epipolar line is undefined (F x = 0 in
        its first two entries) and the other point is off the line.

    Example:
        >>> import mlx.core as mx
        >>> F = mx.array([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]])
        >>> symmetric_epipolar_distance(F, mx.array([[3.0, 2.0]]), mx.array([[5.0, 4.0]])).tolist()
        [8.0]
    """
    f, (a, b), out = _inputs(F, x1, x2, names=("x1", "x2"))
    e, n2, n1 = epipolar_terms(f, a, b)
    e2 = e * e
    d = safe_div(e2, n1, n1 > 0) + safe_div(e2, n2, n2 > 0)
    return cast_out(mx.where(any_of(all_of(n1 > 0, n2 > 0), e == 0), d, mx.inf), out)


def epipolar_lines(F: Any, x: Any, image: int = 1) -> mx.array:
    """Epipolar lines in the other image of points of image ``image`` (as ``cv2.computeCorrespondEpilines``).

    ``l = F x`` (lines in image 2) for ``image=1``, ``l = F^T x`` (lines in image 1) for
    ``image=2``, scaled to ``a^2 + b^2 = 1`` so that ``a u + b v + c`` is a signed distance in pixels.

    Args:
        F: (*, 3, 3); x: (*, N, 2) pixels of image ``image`` (1 or 2).

    Returns:
        (*, N, 3) lines ``(a, b, c)``; where ``a = b = 0`` (x is the epipole) the unscaled line.

    Example:
        >>> import mlx.core as mx
        >>> F = mx.array([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]])
        >>> epipolar_lines(F, mx.array([[3.0, 2.0]])).tolist()
        [[0.0, -1.0, 2.0]]
    """
    if image not in (1, 2):
        raise ValueError(f"image must be 1 or 2, got {image!r}")
    f, (p,), out = _inputs(F, x, names=("x",))
    a, b, c = _apply(f, p, image == 2)
    n2 = a * a + b * b
    s = mx.where(n2 > 0, mx.rsqrt(mx.where(n2 > 0, n2, 1)), 1)
    return cast_out(mx.stack([a * s, b * s, c * s], axis=-1), out)
