"""The named results of the homography estimators (tuples: they cross ``mx.compile`` and ``mx.grad``)."""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx


class HomographyResult(NamedTuple):
    """Per-pair output of a homography fit; a tuple, so it crosses ``mx.compile`` and ``mx.grad``.

    Attributes:
        H: (*, 3, 3) homography mapping ``src`` to ``dst`` (``dst ~ H @ [x, y, 1]``), scaled so
            ``H[..., 2, 2] == 1``; the identity where ``ok`` is False.
        inliers: (*, N) bool, correspondences whose reprojection error ``|dst - pi(H src)|`` is at
            most ``threshold`` pixels; all False where ``ok`` is False.
        ok: (*) bool, False for pairs with fewer than 4 usable points, a degenerate configuration
            (collinear / duplicate points), too few inliers, or a non-finite / singular estimate.
        num_inliers: (*) int32, ``inliers.sum(-1)``.
        residual: (*) RMS reprojection error in pixels over the inliers (0 where there are none).
        trials: (*) int32, RANSAC trials the adaptive rule ``log(1 - p) / log(1 - w^4)`` (H&Z Alg. 4.6)
            asks for at the final inlier ratio ``w``, capped at ``max_trials``; 0 for non-RANSAC methods.
    """

    H: mx.array
    inliers: mx.array
    ok: mx.array
    num_inliers: mx.array
    residual: mx.array
    trials: mx.array


class RefinedHomography(NamedTuple):
    """Result of :func:`mlxgeom.homography.refine_homography`.

    Attributes:
        H: (*, 3, 3) refined homography with ``H[2, 2] = 1`` (identity where not ok).
        ok: (*) bool, False for degenerate input or a non-finite fit.
        rms: (*) weighted root-mean-square point error in pixels (averaged over both directions
            for the symmetric error).
    """

    H: mx.array
    ok: mx.array
    rms: mx.array


class ExactHomography(NamedTuple):
    """Result of :func:`mlxgeom.homography.homography_from_4_points`.

    Attributes:
        H: (*, 3, 3) with ``H[2, 2] = 1`` (identity where not ok).
        ok: (*) bool, False where three source or three target points are (nearly) collinear.
    """

    H: mx.array
    ok: mx.array
