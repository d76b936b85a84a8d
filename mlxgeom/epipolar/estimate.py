"""``find_fundamental_matrix`` and ``find_essential_matrix``: the batched front ends (like OpenCV's)."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

from .._checks import as_floats, broadcast_batch, cast_out
from .._vmap import all_of
from ..homography._common import check_correspondences, safe_div
from .distances import sampson_sq
from .five_point import five_point
from .models import ransac_essential, ransac_fundamental
from .fundamental import denormalize_f, eight_point, hartley_pair, unit_frobenius
from .pose import _normalised
from .result import EssentialResult, FundamentalResult
from .seven_point import seven_point

_F_METHODS = ("8point", "7point", "ransac")
_E_METHODS = ("5point", "ransac")


def _flatten(x1: mx.array, x2: mx.array, w: mx.array):
    """(B, N, 2), (B, N, 2), (B, N) views with non-finite points dropped (weight 0, coordinates 0)."""
    batch, n = x1.shape[:-2], x1.shape[-2]
    b = math.prod(batch)  # explicit: MLX cannot infer -1 when N = 0
    x1, x2, w = x1.reshape(b, n, 2), x2.reshape(b, n, 2), w.reshape(b, n)
    valid = all_of(w > 0, mx.all(mx.isfinite(x1), -1), mx.all(mx.isfinite(x2), -1))
    return mx.where(valid[..., None], x1, 0), mx.where(valid[..., None], x2, 0), mx.where(valid, w, 0), valid, batch


def _score(sq: mx.array, valid: mx.array, thr2: mx.array, ok: mx.array):
    """Inliers (*, N), their count (*) and the RMS distance over them (*) from squared distances (*, N);
    none where not ``ok`` (*) (as homography and PnP results)."""
    inliers = all_of(valid, sq <= thr2[..., None], ok[..., None])
    count = mx.sum(inliers.astype(mx.int32), -1)
    rms = mx.sqrt(safe_div(mx.sum(mx.where(inliers, sq, 0), -1), count.astype(sq.dtype), count > 0))
    return inliers, count, rms


def _check_options(method: str, methods: tuple[str, ...], threshold: float, confidence: float, max_trials: int) -> None:
    if method not in methods:
        raise ValueError(f"method must be one of {methods}, got {method!r}")
    if max_trials < 1 or max_trials != int(max_trials) or not 0 < confidence < 1 or not threshold > 0:
        raise ValueError(f"need an integer max_trials >= 1, 0 < confidence < 1 and threshold > 0, got {max_trials}, "
                         f"{confidence}, {threshold}")


def _placeholder(m: mx.array, ok: mx.array) -> mx.array:
    """The identity where not ok (finite, recognisably not an estimate)."""
    return mx.where(ok[..., None, None], m, mx.broadcast_to(mx.eye(3, dtype=m.dtype), m.shape))


def _minimal(x1: mx.array, x2: mx.array, w: mx.array, valid: mx.array, solver, thr2: mx.array, scale):
    """Candidates of a minimal solver on all N (= sample size) points, scored as a batch of K models.

    ``scale`` None: pixels, Hartley-normalised for the solver (F); else normalised coordinates and the
    focal length (B) that turns their distances into pixels (E). ``thr2`` (B) in squared pixels.
    """
    xn1, xn2, norm = hartley_pair(x1, x2, w) if scale is None else (x1, x2, None)
    models, ok = solver(xn1, xn2)  # (B, K, 3, 3), (B, K)
    if norm is not None:
        models = unit_frobenius(denormalize_f(models, norm))
    ok = all_of(ok, mx.all(valid, -1, keepdims=True))
    sq = sampson_sq(models[:, :, None], x1[:, None], x2[:, None])  # (B, K, N)
    if scale is not None:
        sq = sq * (scale * scale)[:, None, None]
    inliers, count, rms = _score(sq, valid[:, None], thr2[:, None], ok)
    return _placeholder(models, ok), inliers, ok, count, rms


def find_fundamental_matrix(
    x1: Any, x2: Any, weights: Any | None = None, *, method: str = "8point", threshold: float = 3.0,
    confidence: float = 0.999, max_trials: int = 1000, min_inliers: int = 15, key: mx.array | None = None,
) -> FundamentalResult:
    """Estimate fundamental matrices ``x2^T F x1 = 0`` for a batch of image pairs, on the device.

    Methods (batched over the leading axes, no host sync, ``mx.compile``-able, differentiable):

    - ``"8point"``: Hartley-normalised eight-point algorithm over all points of positive weight
      (weighted least squares, rank 2 enforced; H&Z Alg. 11.1), like ``cv2.FM_8POINT``.
    - ``"7point"``: exactly 7 points; the up-to-3 real solutions of ``det(F1 + a F2) = 0``
      (H&Z sec. 11.1.2), like ``cv2.FM_7POINT``, returned on a candidate axis: ``F`` (*, 3, 3, 3)
      and ``inliers`` (*, 3, N), ``ok`` / ``num_inliers`` / ``residual`` (*, 3).
    - ``"ransac"``: seven-point hypotheses drawn with ``mx.random`` from ``key``, MSAC-scored by the
      Sampson distance in the one driver :func:`mlxgeom.solve.ransac`, refit on the inliers by the
      eight-point algorithm (like ``cv2.FM_RANSAC``).

    F is in pixel units, in the input's dtype: far from the origin (|x| ~ 1e4 px) its entries span
    ``|x|^2 : |x| : 1``, so a float32 F, even the exact one rounded, keeps the epipolar constraint
    only to about ``eps |x|^2 / spread`` pixels (~0.01-0.3 px there; tests). Shift such coordinates
    towards the origin or use float64.

    Args:
        x1, x2: (*, N, 2) pixels of image 1 and image 2; batch dims broadcast.
        weights: optional (*, N) non-negative weights; 0 (or a non-finite point) drops a match.
        threshold: inlier threshold on the Sampson distance, pixels.
        confidence: RANSAC confidence for the adaptive trial count.
        max_trials: RANSAC samples per pair (static: all are solved and scored; ``trials`` reports
            how many the adaptive rule would have needed).
        min_inliers: RANSAC pairs with fewer final inliers are not ``ok`` (random matches fit some
            model with ~10 of 100 points within 1 px, so a few more are needed to tell a model from chance).
        key: ``mx.random.key`` for RANSAC; default ``mx.random.key(0)``.

    Returns:
        :class:`FundamentalResult` ``(F, inliers, ok, num_inliers, residual, trials)``.

    Example:
        >>> import mlx.core as mx
        >>> X = mx.array([[0.0, 0, 4], [1, -1, 5], [-1, 1, 6], [1, 1, 4], [-1, -0.5, 5], [0.5, 0, 7],
        ...               [0, 1, 5], [-0.5, -1, 4], [0.3, 0.6, 6]])
        >>> X2 = X + mx.array([1.0, 0.2, 0.1])  # the second camera moved sideways
        >>> x1, x2 = X[:, :2] / X[:, 2:] * 100 + 50, X2[:, :2] / X2[:, 2:] * 100 + 50
        >>> res = find_fundamental_matrix(x1, x2)
        >>> res.ok.item(), res.residual.item() < 1e-3
        (True, True)
    """
    _check_options(method, _F_METHODS, threshold, confidence, max_trials)
    a, b, w, out = check_correspondences(x1, x2, weights, names=("x1", "x2"))
    if method == "7point" and a.shape[-2] != 7:
        raise ValueError(f"method='7point' needs x1, x2 of shape (*, 7, 2), got {tuple(a.shape)}")
    a, b, w, valid, batch = _flatten(a, b, w)
    n = a.shape[1]
    thr2 = mx.full((a.shape[0],), threshold * threshold, dtype=a.dtype)
    if method == "7point":
        f, inliers, ok, count, rms = _minimal(a, b, w, valid, seven_point, thr2, None)
        k = (3,)
    else:
        if method == "ransac":
            f, ok, trials = ransac_fundamental(a, b, w, threshold, confidence=confidence, max_trials=max_trials,
                                               key=mx.random.key(0) if key is None else key, min_inliers=min_inliers)
        else:
            f, ok = eight_point(a, b, w)
            ok = all_of(ok, mx.sum(valid.astype(mx.int32), -1) >= 8)
        inliers, count, rms = _score(sampson_sq(f[:, None], a, b), valid, thr2, ok)
        f = _placeholder(f, ok)
        k = ()
    trials = trials if method == "ransac" else mx.zeros(count.shape, mx.int32)
    return FundamentalResult(
        F=cast_out(f.reshape(batch + k + (3, 3)), out), inliers=inliers.reshape(batch + k + (n,)),
        ok=ok.reshape(batch + k), num_inliers=count.reshape(batch + k), residual=cast_out(rms.reshape(batch + k), out),
        trials=trials.reshape(batch + k),
    )


def _normalised_and_focal(x: mx.array, camera: Any, names: tuple[str, str]) -> tuple[mx.array, mx.array, mx.array]:
    """Undistorted ``K^-1`` coordinates (*, N, 2), whether they are usable (*, N), and the mean focal (*)."""
    y, ok = _normalised(camera, x, names)
    (k,), _ = as_floats(getattr(camera, "K", camera), names=("camera",))
    k = k.astype(x.dtype)
    return y, ok, 0.5 * (k[..., 0, 0] + k[..., 1, 1])


def find_essential_matrix(
    x1: Any, x2: Any, camera1: Any, camera2: Any | None = None, weights: Any | None = None, *,
    method: str = "ransac", threshold: float = 1.0, confidence: float = 0.999, max_trials: int = 1000,
    min_inliers: int = 15, key: mx.array | None = None,
) -> EssentialResult:
    """Estimate essential matrices ``y2^T E y1 = 0`` for a batch of image pairs, on the device.

    Pixels are undistorted and normalised (``y = K^-1 x``) with each image's camera (lens
    distortion honoured), then:

    - ``"5point"``: exactly 5 points; the up-to-10 solutions of the five-point problem
      (Nister 2004, :mod:`.five_point`) on a candidate axis: ``E`` (*, 10, 3, 3), ``inliers``
      (*, 10, N), ``ok`` / ``num_inliers`` / ``residual`` (*, 10).
    - ``"ransac"``: five-point hypotheses MSAC-scored by the Sampson distance in the one driver
      :func:`mlxgeom.solve.ransac`, refit on the inliers by the normalised eight-point algorithm
      projected onto the essential manifold, then refined on the manifold (``E = [t]_x R``, 5
      degrees of freedom) by :func:`mlxgeom.solve.lm_loop` (like ``cv2.findEssentialMat``).

    Args:
        x1, x2: (*, N, 2) pixels of image 1 and image 2.
        camera1: :class:`mlxgeom.camera.Camera` or K (*, 3, 3) of image 1; camera2 of image 2
            (None: the same camera).
        weights: optional (*, N) non-negative weights.
        threshold: inlier threshold on the Sampson distance in pixels; it is divided by the mean
            focal length ``(fx1 + fy1 + fx2 + fy2) / 4`` to compare with normalised distances.
        confidence, max_trials, min_inliers, key: as in :func:`find_fundamental_matrix`.

    Returns:
        :class:`EssentialResult` ``(E, inliers, ok, num_inliers, residual, trials)``.

    Example:
        >>> import mlx.core as mx
        >>> X = mx.array([[0.0, 0, 4], [1, -1, 5], [-1, 1, 6], [1, 1, 4], [-1, -0.5, 5]])
        >>> x1 = X[:, :2] / X[:, 2:] * 100 + 50
        >>> X2 = X + mx.array([1.0, 0.0, 0.0])
        >>> x2 = X2[:, :2] / X2[:, 2:] * 100 + 50
        >>> K = mx.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]])
        >>> res = find_essential_matrix(x1, x2, K, method="5point")
        >>> res.E.shape, res.ok.any().item()
        ((10, 3, 3), True)
    """
    _check_options(method, _E_METHODS, threshold, confidence, max_trials)
    a, b, w, out = check_correspondences(x1, x2, weights, names=("x1", "x2"))
    if method == "5point" and a.shape[-2] != 5:
        raise ValueError(f"method='5point' needs x1, x2 of shape (*, 5, 2), got {tuple(a.shape)}")
    y1, conv1, f1 = _normalised_and_focal(a, camera1, ("x1", "camera1"))
    y2, conv2, f2 = _normalised_and_focal(b, camera1 if camera2 is None else camera2,
                                          ("x2", "camera1" if camera2 is None else "camera2"))
    n = a.shape[-2]
    full = broadcast_batch(y1.shape[:-2], y2.shape[:-2], w.shape[:-1], names=("x1 / camera1", "x2 / camera2", "weights"))
    y1, y2 = mx.broadcast_to(y1, full + (n, 2)), mx.broadcast_to(y2, full + (n, 2))
    w = mx.where(mx.broadcast_to(all_of(conv1, conv2), full + (n,)), mx.broadcast_to(w, full + (n,)), 0)
    focal = mx.broadcast_to(0.5 * (f1 + f2), full).reshape(-1)
    y1, y2, w, valid, batch = _flatten(y1, y2, w)
    thr2 = mx.full((y1.shape[0],), threshold * threshold, dtype=y1.dtype)
    if method == "5point":
        e, inliers, ok, count, rms = _minimal(y1, y2, w, valid, five_point, thr2, focal)
        k = (10,)
        trials = mx.zeros(count.shape, mx.int32)
    else:
        e, ok, trials = ransac_essential(y1, y2, w, threshold / focal, confidence=confidence, max_trials=max_trials,
                                         key=mx.random.key(0) if key is None else key, min_inliers=min_inliers)
        inliers, count, rms = _score(sampson_sq(e[:, None], y1, y2) * (focal * focal)[:, None], valid, thr2, ok)
        e = _placeholder(e, ok)
        k = ()
    return EssentialResult(
        E=cast_out(e.reshape(batch + k + (3, 3)), out), inliers=inliers.reshape(batch + k + (n,)),
        ok=ok.reshape(batch + k), num_inliers=count.reshape(batch + k), residual=cast_out(rms.reshape(batch + k), out),
        trials=trials.reshape(batch + k),
    )
