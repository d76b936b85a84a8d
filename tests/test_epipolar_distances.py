"""Epipolar distances and lines against OpenCV (live) and their defining identities."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from mlxgeom.epipolar import epipolar_lines, sampson_distance, symmetric_epipolar_distance
from helpers import assert_device_safe


def _data(seed: int, n: int = 30):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 3)), rng.uniform(0, 640, (n, 2)), rng.uniform(0, 480, (n, 2))


@pytest.mark.float64
def test_sampson_distance_equals_cv2_sampson_distance():
    F, x1, x2 = _data(0)
    ours = np.array(sampson_distance(*(mx.array(a, mx.float64) for a in (F, x1, x2))))
    ref = np.array([cv2.sampsonDistance(np.r_[a, 1][:, None], np.r_[b, 1][:, None], F) for a, b in zip(x1, x2)])
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_sampson_distance_float32_within_1e5_of_opencv():
    F, x1, x2 = _data(1)
    ours = np.array(sampson_distance(*(mx.array(a, mx.float32) for a in (F, x1, x2))))
    ref = np.array([cv2.sampsonDistance(np.r_[a, 1][:, None], np.r_[b, 1][:, None], F) for a, b in zip(x1, x2)])
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())


@pytest.mark.float64
@pytest.mark.parametrize("image", [1, 2])
def test_epipolar_lines_equal_cv2_compute_correspond_epilines(image):
    F, x1, _ = _data(2)
    ours = np.array(epipolar_lines(mx.array(F, mx.float64), mx.array(x1, mx.float64), image))
    ref = cv2.computeCorrespondEpilines(x1.reshape(-1, 1, 2), image, F).reshape(-1, 3)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.float64
def test_symmetric_distance_is_sum_of_squared_point_line_distances():
    F, x1, x2 = _data(3)
    args = [mx.array(a, mx.float64) for a in (F, x1, x2)]
    l2 = np.array(epipolar_lines(args[0], args[1], 1))
    l1 = np.array(epipolar_lines(args[0], args[2], 2))
    ref = np.sum(l2 * np.c_[x2, np.ones(len(x2))], -1) ** 2 + np.sum(l1 * np.c_[x1, np.ones(len(x1))], -1) ** 2
    np.testing.assert_allclose(np.array(symmetric_epipolar_distance(*args)), ref, rtol=1e-10)


def test_distances_broadcast_a_batch_of_F_against_one_point_set():
    F, x1, x2 = _data(4)
    Fs = mx.array(np.stack([F, 2 * F, -F]), mx.float32)
    d = sampson_distance(Fs, mx.array(x1, mx.float32), mx.array(x2, mx.float32))
    assert d.shape == (3, len(x1))
    # F is defined up to scale: the distance is too
    np.testing.assert_allclose(np.array(d[1]), np.array(d[0]), rtol=1e-5)
    np.testing.assert_allclose(np.array(d[2]), np.array(d[0]), rtol=1e-5)


def test_undefined_lines_give_inf_not_nan():
    F = mx.zeros((3, 3))
    pts = mx.array([[1.0, 2.0]])
    assert np.array(sampson_distance(F, pts, pts)).tolist() == [0.0]
    F = mx.array([[0.0, 0, 0], [0, 0, 0], [0, 0, 1.0]])  # x2^T F x1 = 1, no gradient anywhere
    assert np.isinf(np.array(sampson_distance(F, pts, pts))).all()
    assert np.isinf(np.array(symmetric_epipolar_distance(F, pts, pts))).all()
    assert np.isfinite(np.array(epipolar_lines(F, pts))).all()


def test_sampson_gradient_matches_finite_differences():
    F, x1, x2 = _data(5, 5)
    args = [mx.array(a, mx.float64) for a in (F, x1, x2)]
    g = np.array(mx.grad(lambda f: sampson_distance(f, args[1], args[2]).sum())(args[0]))
    h = 1e-6
    num = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            d = np.zeros((3, 3)); d[i, j] = h
            num[i, j] = (np.array(sampson_distance(mx.array(F + d, mx.float64), args[1], args[2]).sum())
                         - np.array(sampson_distance(mx.array(F - d, mx.float64), args[1], args[2]).sum())) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match="F"):
        sampson_distance(mx.zeros((2, 3)), mx.zeros((4, 2)), mx.zeros((4, 2)))
    with pytest.raises(ValueError, match="x2"):
        sampson_distance(mx.eye(3), mx.zeros((4, 2)), mx.zeros((5, 2)))
    with pytest.raises(ValueError, match="image"):
        epipolar_lines(mx.eye(3), mx.zeros((4, 2)), image=3)


def test_distances_are_device_safe():
    rng = np.random.default_rng(6)

    def make(b):
        return [mx.array(rng.standard_normal((b, 3, 3)), mx.float32), mx.array(rng.uniform(0, 99, (b, 7, 2)), mx.float32),
                mx.array(rng.uniform(0, 99, (b, 7, 2)), mx.float32)]

    assert_device_safe(lambda f, a, b: (sampson_distance(f, a, b), symmetric_epipolar_distance(f, a, b),
                                        epipolar_lines(f, a, 1), epipolar_lines(f, b, 2)), make)


@pytest.mark.parametrize("scale", [1e-23, 1e-16, 1e20])
def test_distances_do_not_depend_on_the_scale_of_F_in_float32(scale):
    f, a, b = _data(3)
    F = mx.array(f, dtype=mx.float32)
    x1, x2 = mx.array(a, dtype=mx.float32), mx.array(b, dtype=mx.float32)
    for fn in (sampson_distance, symmetric_epipolar_distance):
        np.testing.assert_allclose(np.array(fn(F * scale, x1, x2)), np.array(fn(F, x1, x2)), rtol=1e-5)
