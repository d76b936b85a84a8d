"""The RANSAC/MSAC driver on a line-fitting model: recovery, adaptive trials, masks, compile, keys;
and the gradients of every estimator built on it."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mlxgeom import find_essential_matrix, find_fundamental_matrix, find_homography, solve_pnp_ransac
from mlxgeom.solve import RansacModel, adaptive_trials, ransac
from mlxgeom.solve.ransac import sample_indices
from helpers import assert_device_safe


def _normal_form(n: mx.array, p: mx.array) -> mx.array:
    """Line (a, b, c), a^2 + b^2 = 1, with normal n (*, 2) through p (*, 2)."""
    n = n / mx.sqrt(mx.maximum(mx.sum(n * n, -1, keepdims=True), 1e-30))
    return mx.concatenate([n, -mx.sum(n * p, -1, keepdims=True)], -1)


def _solver(samples, garbage_first: bool = False):
    (p,) = samples  # (B, T, 2, 2)
    d = p[..., 1, :] - p[..., 0, :]
    line = _normal_form(mx.stack([-d[..., 1], d[..., 0]], -1), p[..., 0, :])
    ok = mx.sum(d * d, -1) > 1e-12
    if not garbage_first:
        return line[:, :, None], ok[:, :, None]
    # K = 2 candidates per sample: a useless one (flagged ok) first, the real line second.
    junk = mx.broadcast_to(mx.array([0.0, 1.0, 1e3]), line.shape)
    return mx.stack([junk, line], 2), mx.stack([ok, ok], 2)


def _sq_error(lines, data):
    (p,) = data  # lines (B, H, 3), p (B, N, 2)
    return (lines[:, :, None, 0] * p[:, None, :, 0] + lines[:, :, None, 1] * p[:, None, :, 1] + lines[:, :, None, 2]) ** 2


def _refit(line, data, w):
    """Total least squares on the weighted points: the normal is the minor axis of their covariance."""
    (p,) = data
    total = mx.maximum(mx.sum(w, -1, keepdims=True), 1e-30)
    mean = mx.sum(w[..., None] * p, -2) / total
    q = p - mean[:, None]
    cxx, cyy, cxy = (mx.sum(w * a * c, -1) for a, c in ((q[..., 0], q[..., 0]), (q[..., 1], q[..., 1]),
                                                           (q[..., 0], q[..., 1])))
    theta = 0.5 * mx.arctan2(2 * cxy, cxx - cyy)  # direction of the major axis
    n = mx.stack([-mx.sin(theta), mx.cos(theta)], -1)
    return _normal_form(n, mean), mx.sum(w > 0, -1) >= 2


LINE = RansacModel(2, _solver, _sq_error, _refit)


def _lines(b: int, n: int, outlier_ratio: float, seed: int, noise: float = 0.01):
    """Points on y = m x + k (m, k per problem) with Gaussian noise, a fraction replaced by uniform outliers."""
    rng = np.random.default_rng(seed)
    m, k = rng.uniform(-2, 2, b), rng.uniform(-1, 1, b)
    x = rng.uniform(-5, 5, (b, n))
    pts = np.stack([x, m[:, None] * x + k[:, None]], -1) + noise * rng.normal(size=(b, n, 2))
    out = rng.random((b, n)) < outlier_ratio
    pts[out] = rng.uniform(-10, 10, (int(out.sum()), 2))
    truth = np.stack([m, -np.ones(b), k], -1) / np.sqrt(m * m + 1)[:, None]
    return mx.array(pts, dtype=mx.float32), truth, ~out


def _same_line(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Distance between lines in normal form, up to sign."""
    return np.minimum(np.abs(est - truth).max(-1), np.abs(est + truth).max(-1))


@pytest.mark.parametrize("n", [100, 600])  # 600 points: preemptive scoring on a subset
def test_recovers_the_line_with_half_outliers(n):
    pts, truth, inl = _lines(4, n, 0.5, seed=n)
    res = ransac(LINE, (pts,), mx.ones((4, n)), 0.05, max_trials=200)
    assert res.ok.tolist() == [True] * 4
    assert _same_line(np.array(res.model), truth).max() < 0.02
    found = np.array(res.inliers)
    assert (found & inl).sum() >= 0.95 * inl.sum() and (found & ~inl).sum() <= 0.02 * n * 4
    np.testing.assert_array_equal(np.array(res.num_inliers), found.sum(-1))


def test_picks_the_right_candidate_among_k_per_sample():
    pts, truth, _ = _lines(3, 80, 0.3, seed=3)
    model = RansacModel(2, lambda s: _solver(s, garbage_first=True), _sq_error)
    res = ransac(model, (pts,), mx.ones((3, 80)), 0.05, max_trials=64, refit_rounds=0)
    assert _same_line(np.array(res.model), truth).max() < 0.05


def test_refit_rounds_improve_on_the_minimal_sample_fit():
    pts, truth, _ = _lines(8, 200, 0.3, seed=4, noise=0.05)
    raw = ransac(LINE, (pts,), mx.ones((8, 200)), 0.15, max_trials=100, refit_rounds=0)
    lo = ransac(LINE, (pts,), mx.ones((8, 200)), 0.15, max_trials=100, refit_rounds=2)
    assert np.all(np.array(lo.score) >= np.array(raw.score) - 1e-5)
    assert _same_line(np.array(lo.model), truth).mean() < _same_line(np.array(raw.model), truth).mean()


def test_trials_are_adaptive_and_capped():
    clean, _, _ = _lines(1, 100, 0.0, seed=5)
    noise = mx.random.uniform(-10, 10, (1, 100, 2), key=mx.random.key(1))
    res = ransac(LINE, (mx.concatenate([clean, noise]),), mx.ones((2, 100)), 0.05, max_trials=300)
    assert res.trials.tolist()[0] <= 3 and res.trials.tolist()[1] == 300
    # w = 0.5, s = 2, p = 0.99: log(0.01) / log(0.75) = 16.0...
    assert adaptive_trials(mx.array([50]), mx.array([100]), 2, 0.99, 1000).tolist() == [17]


def test_too_few_points_give_not_ok_and_empty_masks():
    pts, _, _ = _lines(2, 10, 0.0, seed=6)
    w = mx.array([[1.0] + [0.0] * 9, [1.0] * 10])  # problem 0: one usable point
    res = ransac(LINE, (pts,), w, 0.05, max_trials=20)
    assert res.ok.tolist() == [False, True]
    assert not bool(mx.any(res.inliers[0])) and res.num_inliers.tolist()[0] == 0
    assert res.trials.tolist()[0] == 20


def test_zero_weight_points_are_never_sampled():
    valid = mx.array([[True, False, True, False, True, True, False, True]] * 2)
    idx = np.array(sample_indices(mx.random.key(2), valid, 3, 500))
    assert np.all(np.array(valid)[0][idx]) and np.all(np.sort(idx, -1)[..., 1:] != np.sort(idx, -1)[..., :-1])
    assert set(np.unique(idx)) == {0, 2, 4, 5, 7}


def test_reproducible_with_a_key():
    pts, _, _ = _lines(3, 50, 0.6, seed=7)
    a = ransac(LINE, (pts,), mx.ones((3, 50)), 0.05, max_trials=40, key=mx.random.key(3))
    b = ransac(LINE, (pts,), mx.ones((3, 50)), 0.05, max_trials=40, key=mx.random.key(3))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.array(x), np.array(y))


def test_threshold_per_problem():
    pts, _, _ = _lines(2, 60, 0.0, seed=8, noise=0.05)
    res = ransac(LINE, (pts,), mx.ones((2, 60)), mx.array([1e-4, 1.0]), max_trials=30, min_inliers=30)
    assert res.ok.tolist() == [False, True]


def test_compiles_at_two_batch_sizes_and_stays_on_device():
    # Small on purpose: the first compile of a graph spends its time in g++ (cached afterwards).
    def make(b: int):
        return (_lines(b, 60, 0.4, seed=b)[0],)

    def fn(pts):
        res = ransac(LINE, (pts,), mx.ones(pts.shape[:2]), 0.05, max_trials=16, refit_rounds=1)
        return tuple(res)

    assert_device_safe(fn, make)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(B, N, d\)"):
        ransac(LINE, (mx.zeros((2, 5)),), mx.ones((2, 5)), 0.1, max_trials=4)
    with pytest.raises(ValueError, match=r"weights"):
        ransac(LINE, (mx.zeros((2, 5, 2)),), mx.ones((5,)), 0.1, max_trials=4)


_K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])


def _two_views(planar: bool):
    """Points X (40, 3) and their pixels x1, x2 in two views, 0.3 px noise and a fifth of x2 outliers."""
    rng = np.random.default_rng(3)
    X = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], (40, 3))
    if planar:
        X[:, 2] = 6 + 0.3 * X[:, 0] - 0.2 * X[:, 1]
    X2 = X @ Rotation.from_rotvec(rng.normal(0, 0.15, 3)).as_matrix().T + rng.normal(0, 0.5, 3)
    x1 = (X / X[:, 2:] @ _K.T)[:, :2]
    x2 = (X2 / X2[:, 2:] @ _K.T)[:, :2] + rng.normal(0, 0.3, (40, 2))
    out = rng.random(40) < 0.2
    x2[out] = rng.uniform(0, [640, 480], (out.sum(), 2))
    return (mx.array(v, mx.float32) for v in (X, x1, x2))


_ESTIMATORS = {
    "homography": (True, lambda X, x1, x2, k: find_homography(x1, x2, method="ransac", max_trials=64).H),
    "fundamental": (False, lambda X, x1, x2, k: find_fundamental_matrix(x1, x2, method="ransac", max_trials=64).F),
    "essential": (False, lambda X, x1, x2, k: find_essential_matrix(x1, x2, k, max_trials=64).E),
    "pnp": (False, lambda X, x1, x2, k: solve_pnp_ransac(X, x2, k, num_hypotheses=64).pose),
}


@pytest.mark.parametrize("name", list(_ESTIMATORS))
def test_every_ransac_estimator_has_finite_nonzero_gradients(name):
    planar, estimate = _ESTIMATORS[name]
    X, x1, x2 = _two_views(planar)
    k = mx.array(_K, mx.float32)
    probe = mx.array(np.random.default_rng(4).standard_normal(estimate(X, x1, x2, k).shape), mx.float32)
    g = np.array(mx.grad(lambda v: mx.sum(estimate(X, x1, v, k) * probe))(x2))
    assert np.isfinite(g).all() and np.abs(g).max() > 0
