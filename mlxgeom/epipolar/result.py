"""Named results of :func:`find_fundamental_matrix` and :func:`find_essential_matrix`."""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx


class FundamentalResult(NamedTuple):
    """Per-pair output of a fundamental-matrix fit; a tuple, so it crosses ``mx.compile`` and ``mx.grad``.

    Attributes:
        F: (*, 3, 3) with ``x2^T F x1 = 0``, rank 2, unit Frobenius norm, largest-magnitude entry
            positive; the identity where ``ok`` is False. ``method="7point"``: (*, 3, 3, 3), the
            up-to-three candidates on the axis before the matrix.
        inliers: (*, N) bool (7-point: (*, 3, N)), correspondences of positive weight whose
            Sampson distance is at most ``threshold`` pixels; all False where ``ok`` is False.
        ok: (*) bool (7-point: (*, 3)), False for too few usable points, a degenerate configuration
            (a null space of dimension > 1, e.g. every point on one plane for the 8-point), too few
            RANSAC inliers, or a non-finite estimate.
        num_inliers: (*) int32 (7-point: (*, 3)); 0 where ``ok`` is False.
        residual: (*) RMS Sampson distance in pixels over the inliers (0 where there are none).
        trials: (*) int32, the adaptive RANSAC trial count (capped at ``max_trials``); 0 otherwise.
    """

    F: mx.array
    inliers: mx.array
    ok: mx.array
    num_inliers: mx.array
    residual: mx.array
    trials: mx.array


class EssentialResult(NamedTuple):
    """Per-pair output of an essential-matrix fit (see :class:`FundamentalResult` for the common fields).

    Attributes:
        E: (*, 3, 3) with ``y2^T E y1 = 0`` for normalised coordinates ``y = K^-1 x`` (undistorted),
            singular values ``(1, 1, 0) / sqrt 2`` (unit Frobenius norm); the identity where not ok.
            ``method="5point"``: (*, 10, 3, 3), the up-to-ten candidates on the axis before the matrix.
        inliers: (*, N) bool (5-point: (*, 10, N)); Sampson distance at most ``threshold`` pixels
            (distances are computed in normalised coordinates and scaled by the mean focal length);
            all False where ``ok`` is False.
        ok: (*) bool (5-point: (*, 10)).
        num_inliers: (*) int32 (5-point: (*, 10)); 0 where ``ok`` is False.
        residual: (*) RMS Sampson distance in pixels over the inliers.
        trials: (*) int32.
    """

    E: mx.array
    inliers: mx.array
    ok: mx.array
    num_inliers: mx.array
    residual: mx.array
    trials: mx.array
