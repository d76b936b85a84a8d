"""correct_matches against cv2.correctMatches (Hartley-Sturm's polynomial in float64)."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest
from helpers import assert_device_safe
from test_epipolar_pose import K, _essential, _scene

from mlxgeom.epipolar import correct_matches


def _problem(seed: int, n: int, noise: float):
    rng = np.random.default_rng(seed)
    T, p1, p2 = _scene(rng, n, noise)
    F = np.linalg.inv(K).T @ _essential(T) @ np.linalg.inv(K)
    return F * rng.uniform(0.5, 5e3), p1, p2


def _cost(a, b, p1, p2):
    return ((a - p1) ** 2).sum(-1) + ((b - p2) ** 2).sum(-1)


@pytest.mark.parametrize("noise", [0.5, 2.0])
def test_matches_opencv_within_a_thousandth_of_a_pixel_in_float32(noise):
    F, p1, p2 = _problem(0, 400, noise)
    r1, r2 = (r[0] for r in cv2.correctMatches(F, p1[None], p2[None]))
    res = correct_matches(mx.array(F, mx.float32), mx.array(p1, mx.float32), mx.array(p2, mx.float32))
    assert bool(mx.all(res.valid))
    np.testing.assert_allclose(np.array(res.x1, np.float64), r1, atol=1e-3)
    np.testing.assert_allclose(np.array(res.x2, np.float64), r2, atol=1e-3)


@pytest.mark.float64
def test_is_at_least_as_optimal_as_opencv_and_satisfies_the_constraint():
    # At 10 px noise OpenCV's root finder stops short (its points move up to ~0.2 px from the
    # minimiser); ours never has a larger cost and meets x2^T F x1 = 0 to rounding.
    F, p1, p2 = _problem(1, 400, 10.0)
    r1, r2 = (r[0] for r in cv2.correctMatches(F, p1[None], p2[None]))
    res = correct_matches(mx.array(F, mx.float64), mx.array(p1, mx.float64), mx.array(p2, mx.float64))
    q1, q2 = np.array(res.x1), np.array(res.x2)
    assert np.all(_cost(q1, q2, p1, p2) <= _cost(r1, r2, p1, p2) + 1e-9)
    Fn = F / np.linalg.norm(F)
    line = np.c_[q1, np.ones(400)] @ Fn.T
    dist = np.einsum("ni,ni->n", np.c_[q2, np.ones(400)], line) / np.hypot(line[:, 0], line[:, 1])
    assert np.abs(dist).max() < 1e-9


def test_batched_pairs_broadcast_one_point_set_against_many_f():
    Fs, p1, p2 = zip(*(_problem(s, 30, 1.0) for s in range(4)))
    res = correct_matches(mx.array(np.stack(Fs), mx.float32), mx.array(np.stack(p1), mx.float32),
                          mx.array(np.stack(p2), mx.float32))
    assert res.x1.shape == (4, 30, 2) and res.valid.shape == (4, 30)
    for b in range(4):
        r1, _ = cv2.correctMatches(Fs[b], p1[b][None], p2[b][None])
        np.testing.assert_allclose(np.array(res.x1[b], np.float64), r1[0], atol=1e-3)
    one = correct_matches(mx.array(np.stack(Fs), mx.float32), mx.array(p1[0], mx.float32), mx.array(p2[0], mx.float32))
    assert one.x1.shape == (4, 30, 2)


def test_degenerate_f_and_nan_points_are_not_valid_and_leave_the_points():
    F, p1, p2 = _problem(2, 5, 1.0)
    p1[1] = np.nan
    res = correct_matches(mx.array(np.stack([np.zeros((3, 3)), F]), mx.float32), mx.array(p1, mx.float32),
                          mx.array(p2, mx.float32))
    valid = np.array(res.valid)
    assert not valid[0].any() and valid[1].tolist() == [True, False, True, True, True]
    np.testing.assert_allclose(np.array(res.x2[0]), p2, rtol=1e-6)


def test_gradients_with_respect_to_points_and_f_are_finite():
    F, p1, p2 = _problem(3, 20, 1.0)
    f, a, b = (mx.array(x, mx.float32) for x in (F, p1, p2))
    loss = lambda f, a, b: mx.sum(correct_matches(f, a, b).x1) + mx.sum(correct_matches(f, a, b).x2)  # noqa: E731
    for g in mx.grad(loss, argnums=(0, 1, 2))(f, a, b):
        assert np.all(np.isfinite(np.array(g)))
    g0 = mx.grad(loss)(mx.zeros((3, 3)), a, b)
    assert np.all(np.isfinite(np.array(g0)))


def test_stays_on_device_and_compiles_at_two_batch_sizes():
    def make(batch):
        Fs, p1, p2 = zip(*(_problem(s, 12, 1.0) for s in range(batch)))
        return tuple(mx.array(np.stack(x), mx.float32) for x in (Fs, p1, p2))

    assert_device_safe(lambda f, a, b: tuple(correct_matches(f, a, b)), make)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="F"):
        correct_matches(mx.zeros((3, 4)), mx.zeros((2, 2)), mx.zeros((2, 2)))
    with pytest.raises(ValueError, match="same number of points"):
        correct_matches(mx.eye(3), mx.zeros((2, 2)), mx.zeros((3, 2)))
