"""undistort_points / distort_points / undistort_map / remap: OpenCV parity, round trips, masks, gradients."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from helpers import CPU_ONLY_PRIMITIVES, ON_GPU, assert_device_safe, graph_primitives, to_np
from mlxgeom.camera import (
    Camera, FisheyeCamera, distort_points, pixel_rays, remap, undistort_image, undistort_map, undistort_points,
    unproject_points,
)

K4K = np.array([[3000.0, 0.0, 1919.5], [0.0, 3050.0, 1079.5], [0.0, 0.0, 1.0]])
CONVERGED = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15)


def mxa(x, dtype=mx.float32):
    return None if x is None else mx.array(np.asarray(x), dtype=dtype)


def dist_for(k: int, seed: int) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=k) * 0.03
    if k == 14:
        d[12:] = [0.02, -0.015]
    return d


def pixels_4k(n: int = 400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform([0, 0], [3839, 2159], (n, 2))


def lens_amplification(xy: np.ndarray, d: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Pixels of solution error per pixel of residual at normalized points `xy` (N, 2), in float64."""

    def pixels(p):
        return cv2.projectPoints(np.c_[p, np.ones(len(p))], np.zeros(3), np.zeros(3), K4K, d)[0][:, 0]

    J = np.stack([(pixels(xy + e) - pixels(xy - e)) / (2 * h) for e in np.eye(2) * h], axis=-1)
    return K4K[0, 0] / np.linalg.svd(J, compute_uv=False)[:, -1]


@pytest.mark.parametrize("k", (4, 5, 8, 12, 14))
def test_undistort_matches_converged_cv2_undistort_points(k):
    px, d = pixels_4k(), dist_for(k, k)
    ref = cv2.undistortPoints(px[:, None], K4K, d, criteria=CONVERGED)[:, 0]
    # where the lens model folds over, no undistorted point maps back (OpenCV's result does not either)
    back = cv2.projectPoints(np.c_[ref, np.ones(len(ref))], np.zeros(3), np.zeros(3), K4K, d)[0][:, 0]
    solvable = np.abs(back - px).max(axis=1) < 1e-6
    got, ok = undistort_points(mxa(px), mxa(K4K), mxa(d))
    ok = np.array(ok)
    assert solvable.mean() > 0.95 and np.array_equal(ok, solvable)
    # normalized units times f: error in pixels of the 4K camera. Near a fold the lens map's smallest
    # singular value shrinks and one float32 ulp of the pixel (2.4e-4 px at 4K) moves the solution by
    # that factor more: the bound is 1e-3 px of pixel-space error, amplified by the local conditioning.
    error = np.abs(to_np(got) - ref).max(axis=1) * K4K[0, 0]
    assert np.all((error / lens_amplification(ref, d))[ok] < 1e-3)


@pytest.mark.skipif(ON_GPU, reason="float64 exists only on MLX's CPU backend")
def test_tilted_lens_round_trip_matches_cv2_to_1e10_in_float64():
    # MLX's float64 sin/cos are float32-accurate on the CPU: the tilt angles go through lie's sin_cos
    d = dist_for(14, 3)
    xy = np.random.default_rng(3).uniform([-0.5, -0.3], [0.5, 0.3], (200, 2))
    px = cv2.projectPoints(np.c_[xy, np.ones(len(xy))], np.zeros(3), np.zeros(3), K4K, d)[0][:, 0]
    got, valid = distort_points(mxa(xy, mx.float64), mxa(K4K, mx.float64), mxa(d, mx.float64))
    assert np.all(np.array(valid))
    np.testing.assert_allclose(np.array(got), px, rtol=0, atol=1e-10 * K4K[0, 0])
    ref = cv2.undistortPoints(px[:, None], K4K, d, criteria=CONVERGED)[:, 0]
    und, ok = undistort_points(mxa(px, mx.float64), mxa(K4K, mx.float64), mxa(d, mx.float64))
    assert np.all(np.array(ok))
    np.testing.assert_allclose(np.array(und), ref, rtol=0, atol=1e-10)


def test_undistort_with_new_camera_matrix_matches_cv2_p_argument():
    px, d = pixels_4k(50, 1), dist_for(8, 1)
    P = K4K * [[0.5], [0.5], [1]]
    ref = cv2.undistortPoints(px[:, None], K4K, d, P=P, criteria=CONVERGED)[:, 0]
    got, ok = undistort_points(mxa(px), mxa(K4K), mxa(d), K_new=mxa(P))
    assert np.all(np.array(ok)) and np.abs(to_np(got) - ref).max() < 2e-3


def test_fisheye_undistort_matches_cv2_fisheye_undistort_points():
    px, d = pixels_4k(300, 2), np.array([0.05, -0.02, 0.01, -0.003])
    ref = cv2.fisheye.undistortPoints(px[:, None], K4K, d, criteria=CONVERGED)[:, 0]
    got, ok = undistort_points(mxa(px), mxa(K4K), mxa(d), model="fisheye")
    assert np.all(np.array(ok))
    assert np.abs(to_np(got) - ref).max() * K4K[0, 0] < 2e-3


@pytest.mark.parametrize("k,model", [(4, "opencv"), (8, "opencv"), (12, "opencv"), (14, "opencv"), (4, "fisheye")])
def test_distort_after_undistort_returns_the_pixels(k, model):
    px, d = pixels_4k(200, 3), dist_for(k, 3 + k)
    und, ok = undistort_points(mxa(px), mxa(K4K), mxa(d), model=model)
    back, valid = distort_points(und, mxa(K4K), mxa(d), model=model)
    assert np.all(np.array(ok)) and np.all(np.array(valid))
    assert np.abs(to_np(back) - px).max() < 2e-3


def test_undistort_is_at_least_as_accurate_as_cv2_default_call():
    # The lens and image of benchmarks/bench_compiled.py (a strong barrel lens): cv2.undistortPoints with
    # its default criteria (a few fixed-point iterations) against the converged solution and the round trip.
    K = np.array([[800.0, 0.0, 640.0], [0.0, 800.0, 360.0], [0.0, 0.0, 1.0]])
    d = np.array([-0.28, 0.07, 1e-4, -2e-4, 0.01])
    px = np.random.default_rng(7).uniform([0, 0], [1280, 720], (2000, 2))
    ref = cv2.undistortPoints(px[:, None], K, d, criteria=CONVERGED)[:, 0]
    fast = cv2.undistortPoints(px[:, None], K, d)[:, 0]
    got, ok = undistort_points(mxa(px), mxa(K), mxa(d))
    assert np.array(ok).all()
    ours_err, cv2_err = np.abs(to_np(got) - ref).max(), np.abs(fast - ref).max()
    assert ours_err <= cv2_err and ours_err * K[0, 0] < 1e-3
    back, _ = distort_points(got, mxa(K), mxa(d))
    back_cv2 = cv2.projectPoints(np.c_[fast, np.ones(len(fast))], np.zeros(3), np.zeros(3), K, d)[0][:, 0]
    assert np.abs(to_np(back) - px).max() <= np.abs(back_cv2 - px).max()


def test_distort_points_matches_cv2_project_points_of_normalized_points():
    rng = np.random.default_rng(4)
    xy, d = rng.uniform(-0.6, 0.6, (100, 2)), dist_for(14, 4)
    ref = cv2.projectPoints(np.c_[xy, np.ones(len(xy))], np.zeros(3), np.zeros(3), K4K, d)[0][:, 0]
    got, valid = distort_points(mxa(xy), mxa(K4K), mxa(d))
    assert np.all(np.array(valid)) and np.abs(to_np(got) - ref).max() < 2e-3


def test_non_invertible_distortion_is_reported_not_converged():
    # k1 = -0.5: r (1 - 0.5 r^2) peaks at r = 0.816 (distorted radius 0.544); beyond it there is no solution.
    d = mx.array([-0.5, 0.0, 0.0, 0.0])
    K = mx.array([[100.0, 0, 0], [0, 100, 0], [0, 0, 1]])
    got, ok = undistort_points(mx.array([[30.0, 0.0], [70.0, 0.0]]), K, d)
    assert np.array(ok).tolist() == [True, False]
    fish, okf = undistort_points(mx.array([[30.0, 0.0], [1e6, 0.0]]), K, mx.array([0.0, 0.0, 0.0, 0.0]), model="fisheye")
    assert np.array(okf).tolist() == [True, False]


def test_nan_pixel_only_affects_its_entry():
    d = mxa(dist_for(5, 5))
    px = mx.array([[100.0, 200.0], [np.nan, 10.0], [3000.0, 2000.0]])
    got, ok = undistort_points(px, mxa(K4K), d)
    assert np.array(ok).tolist() == [True, False, True]
    clean, _ = undistort_points(px[mx.array([0, 2])], mxa(K4K), d)
    np.testing.assert_array_equal(np.array(got)[[0, 2]], np.array(clean))


@pytest.mark.skipif(ON_GPU, reason="float64 finite differences need the CPU backend")
@pytest.mark.parametrize("model,k", [("opencv", 8), ("fisheye", 4)])
def test_undistort_gradient_is_the_implicit_function_gradient(model, k):
    px = mx.array(pixels_4k(3, 6), dtype=mx.float64)
    K, d = mxa(K4K, mx.float64), mxa(dist_for(k, 6), mx.float64)

    def f(p, dd):
        return mx.sum(undistort_points(p, K, dd, model=model)[0] * mx.array([[1.0, -2.0]], dtype=mx.float64))

    gp, gd = mx.grad(f, argnums=(0, 1))(px, d)
    eps = 1e-6
    for i in range(k):
        e = mx.zeros(k, dtype=mx.float64).at[i].add(eps)
        fd = (f(px, d + e) - f(px, d - e)) / (2 * eps)
        np.testing.assert_allclose(np.array(gd[i]), np.array(fd), rtol=1e-5, atol=1e-8)
    e = mx.zeros_like(px).at[1, 0].add(eps)
    np.testing.assert_allclose(np.array(gp[1, 0]), np.array((f(px + e, d) - f(px - e, d)) / (2 * eps)), rtol=1e-5)


def test_undistort_map_matches_cv2_init_undistort_rectify_map():
    K = np.array([[300.0, 0, 159.5], [0, 310, 119.5], [0, 0, 1]])
    d = dist_for(8, 7)
    K_new = K * [[0.8], [0.8], [1]]
    m1, m2 = cv2.initUndistortRectifyMap(K, d, None, K_new, (320, 240), cv2.CV_32FC1)
    got, ok = undistort_map(mxa(K), mxa(d), (320, 240), mxa(K_new))
    assert np.all(np.array(ok))
    np.testing.assert_allclose(np.array(got[..., 0]), m1, atol=1e-3)
    np.testing.assert_allclose(np.array(got[..., 1]), m2, atol=1e-3)


def test_fisheye_undistort_map_matches_cv2_fisheye():
    K = np.array([[300.0, 0, 159.5], [0, 310, 119.5], [0, 0, 1]])
    d = np.array([0.05, -0.02, 0.01, -0.003])
    m1, m2 = cv2.fisheye.initUndistortRectifyMap(K, d, np.eye(3), K, (320, 240), cv2.CV_32FC1)
    got, _ = undistort_map(mxa(K), mxa(d), (320, 240), model="fisheye")
    np.testing.assert_allclose(np.array(got[..., 0]), m1, atol=1e-3)
    np.testing.assert_allclose(np.array(got[..., 1]), m2, atol=1e-3)


def test_remap_matches_cv2_remap_bilinear_constant_border():
    rng = np.random.default_rng(8)
    img = rng.uniform(0, 1, (40, 50, 3)).astype(np.float32)
    mp = rng.uniform(-3, 53, (30, 20, 2)).astype(np.float32)
    ref = cv2.remap(img, mp, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0.25, 0.25, 0.25))
    got = remap(mx.array(img), mx.array(mp), fill=0.25)
    # cv2.remap quantizes the sub-pixel weights to 1/32
    np.testing.assert_allclose(np.array(got), ref, atol=2e-2)
    exact = remap(mx.array(img), mx.array(np.round(mp)), fill=0.25)
    ref_exact = cv2.remap(img, np.round(mp), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0.25,) * 3)
    np.testing.assert_allclose(np.array(exact), ref_exact, atol=1e-6)


def test_undistort_image_matches_cv2_undistort():
    rng = np.random.default_rng(9)
    img = cv2.GaussianBlur(rng.uniform(0, 1, (120, 160)).astype(np.float32), (0, 0), 3)
    K = np.array([[150.0, 0, 79.5], [0, 150, 59.5], [0, 0, 1]])
    d = np.array([-0.2, 0.05, 0.001, -0.001, 0.0])
    ref = cv2.undistort(img, K, d)
    got = undistort_image(mx.array(img), Camera(mxa(K), dist=mxa(d)))
    assert got.shape == img.shape
    assert np.abs(np.array(got) - ref).max() < 1e-2


def test_undistortion_is_device_safe_and_compiles_at_two_batch_sizes():
    rng = np.random.default_rng(10)

    def make(b):
        px = mx.array(rng.uniform(0, 3000, (b, 6, 2)), dtype=mx.float32)
        return px, mxa(np.broadcast_to(K4K, (b, 3, 3))), mxa(dist_for(14, 10))

    # one Newton step: the same graph per step as the default count, far cheaper to compile
    assert_device_safe(lambda p, K, d: undistort_points(p, K, d[:8], iterations=1), make)
    assert_device_safe(lambda p, K, d: undistort_points(p, K, d[:4], model="fisheye", iterations=1), make)
    full = lambda p, K, d: undistort_points(p, K, d)  # noqa: E731
    assert not graph_primitives(full, *make(3)) & CPU_ONLY_PRIMITIVES

    def make_img(b):
        return mx.array(rng.uniform(0, 1, (b, 12, 16, 1)), dtype=mx.float32), mx.array(rng.uniform(-2, 18, (b, 5, 7, 2)), dtype=mx.float32)

    assert_device_safe(remap, make_img)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: undistort_points(np.zeros((4, 3)), np.eye(3), np.zeros(4)), r"\(\*, 2\)"),
        (lambda: undistort_points(np.zeros((4, 2)), np.eye(3), np.zeros(3)), "k in"),
        (lambda: undistort_points(np.zeros((4, 2)), np.eye(3), np.zeros(4), K_new=np.eye(2)), r"\(\*, 3, 3\)"),
        (lambda: remap(np.zeros((4, 4)), np.zeros((3, 3))), r"\(\*, n, n, 2\)"),
    ],
)
def test_bad_shapes_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


_K = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
_NEWTON_CALLS = {
    "undistort_points": lambda **kw: undistort_points(np.ones((3, 2)), _K, np.full(4, 0.01), **kw),
    "fisheye undistort_points": lambda **kw: undistort_points(np.ones((3, 2)), _K, np.full(4, 0.01), "fisheye", **kw),
    "unproject_points": lambda **kw: unproject_points(np.ones((3, 2)), np.ones(3), _K, None, np.full(4, 0.01), **kw),
    "pixel_rays": lambda **kw: pixel_rays(np.ones((3, 2)), _K, None, np.full(4, 0.01), **kw),
    "Camera.undistort_points": lambda **kw: Camera(_K, dist=np.full(4, 0.01)).undistort_points(np.ones((3, 2)), **kw),
    "Camera.unproject": lambda **kw: Camera(_K, dist=np.full(5, 0.01)).unproject(np.ones((3, 2)), np.ones(3), **kw),
    "FisheyeCamera.rays": lambda **kw: FisheyeCamera(_K, dist=np.full(4, 0.01)).rays(np.ones((3, 2)), **kw),
}


_BAD_NEWTON = [
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(tol=float("nan")), ValueError, "tol"),
    (dict(tol="1e-6"), TypeError, "tol"),
    (dict(iterations=-1), ValueError, "iterations"),
    (dict(iterations=2.5), TypeError, "iterations"),
]


@pytest.mark.parametrize("name,kwargs,error,match", [
    (name, *bad) for name in _NEWTON_CALLS for bad in _BAD_NEWTON
    if "tol" not in bad[0] or "Camera" not in name  # Camera methods take iterations only
])
def test_negative_or_non_numeric_newton_settings_raise_naming_them(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        _NEWTON_CALLS[name](**kwargs)


def test_undistort_image_of_a_matrix_raises_type_error_naming_camera():
    with pytest.raises(TypeError, match="camera"):
        undistort_image(np.zeros((4, 5)), np.eye(3))
