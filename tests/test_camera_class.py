"""Camera class: construction, round trips, rays, reproject_depth, scale/crop, OpenCV and OpenGL interop."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from helpers import assert_device_safe, to_np
from mlxgeom import lie
from mlxgeom.camera import (
    Camera,
    FisheyeCamera,
    nerf_intrinsics,
    opencv_to_opengl_c2w,
    opengl_to_opencv_c2w,
    pixel_grid,
    pose_from_opengl_c2w,
    pose_to_opengl_c2w,
)

K0 = np.array([[500.0, 0.0, 319.5], [0.0, 520.0, 239.5], [0.0, 0.0, 1.0]])


def mxa(x, dtype=mx.float32):
    return mx.array(np.asarray(x), dtype=dtype)


def random_pose(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    shape = () if n is None else (n,)
    rv, t = rng.normal(size=(*shape, 3)) * 0.2, rng.normal(size=(*shape, 3)) * 0.2
    return np.array(lie.se3_from_rt(lie.so3_exp(mxa(rv)), mxa(t)))


def test_from_intrinsics_builds_k_and_k_inv_handles_skew():
    cam = Camera.from_intrinsics(mx.array([500.0, 800.0]), 520.0, 319.5, 239.5, skew=2.5)
    assert cam.K.shape == (2, 3, 3) and cam.batch_shape == (2,)
    np.testing.assert_allclose(to_np(cam.K_inv), np.linalg.inv(to_np(cam.K)), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(to_np(cam.fx), [500, 800]) and np.testing.assert_allclose(to_np(cam.skew), [2.5, 2.5])


def test_pose_properties_follow_world_to_camera_convention():
    rng = np.random.default_rng(0)
    T = random_pose(rng)
    cam = Camera(mxa(K0), mxa(T))
    np.testing.assert_allclose(to_np(cam.R), T[:3, :3], atol=1e-7)
    np.testing.assert_allclose(to_np(cam.t), T[:3, 3], atol=1e-7)
    center = -T[:3, :3].T @ T[:3, 3]
    np.testing.assert_allclose(to_np(cam.center), center, atol=1e-6)
    np.testing.assert_allclose(to_np(cam.camera_to_world), np.linalg.inv(T), atol=1e-6)
    # the centre projects to depth 0
    assert abs(float(cam.project(mx.array(center, dtype=mx.float32)[None]).depth[0])) < 1e-6


@pytest.mark.parametrize("dist,model", [(None, "opencv"), ([0.1, -0.05, 0.001, 0.002, 0.01], "opencv"),
                                        ([0.05, -0.02, 0.01, -0.003], "fisheye")])
def test_unproject_of_project_returns_the_points(dist, model):
    rng = np.random.default_rng(1)
    T = random_pose(rng, 3)  # three cameras
    cam = Camera(mxa(K0), mxa(T), None if dist is None else mxa(dist), model=model)
    cam_pts = np.stack([rng.uniform(-0.5, 0.5, 50), rng.uniform(-0.4, 0.4, 50), rng.uniform(1, 6, 50)], -1)
    X = mx.array(np.einsum("bji,bnj->bni", T[:, :3, :3], cam_pts - T[:, None, :3, 3]), dtype=mx.float32)
    px, depth, valid = cam.project(X)
    back = cam.unproject(px, depth, return_valid=True)
    assert np.all(np.array(valid)) and np.all(np.array(back.valid))
    np.testing.assert_allclose(np.array(back.points), np.array(X), atol=2e-4 * 6)
    np.testing.assert_allclose(np.array(back.points_cam), np.broadcast_to(cam_pts, (3, 50, 3)), atol=2e-4 * 6)


def test_rays_are_unit_and_pass_through_the_unprojected_points():
    rng = np.random.default_rng(2)
    cam = Camera(mxa(K0), mxa(random_pose(rng)), mx.array([0.1, -0.05, 0.001, 0.002]))
    px = mx.array(rng.uniform([0, 0], [640, 480], (20, 2)), dtype=mx.float32)
    o, d = cam.rays(px)
    np.testing.assert_allclose(np.linalg.norm(np.array(d), axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.array(o), np.broadcast_to(np.array(cam.center), (20, 3)), atol=1e-6)
    X = cam.unproject(px, mx.full((20,), 3.0))
    t = np.sum((np.array(X) - np.array(o)) * np.array(d), -1, keepdims=True)
    np.testing.assert_allclose(np.array(o) + t * np.array(d), np.array(X), atol=1e-4)


def test_reproject_depth_into_many_views_matches_per_view_opencv():
    rng = np.random.default_rng(3)
    h, w = 24, 32
    K = np.array([[40.0, 0, 15.5], [0, 40, 11.5], [0, 0, 1]])
    src_T = random_pose(rng)
    src = Camera(mxa(K), mxa(src_T), mx.array([0.05, -0.01, 0.001, 0.0, 0.0]), size=[w, h])
    # destinations: small left perturbations of the source, so the views overlap
    dst_T = np.array(lie.se3_compose(lie.se3_exp(mxa(rng.normal(size=(5, 6)) * 0.05)), mxa(src_T)))
    dst_d = rng.normal(size=(5, 8)) * 0.02
    dst = Camera(mxa(K), mxa(dst_T), mxa(dst_d))
    depth = mx.array(rng.uniform(2, 4, (h, w)), dtype=mx.float32).at[3, 4].add(-10.0)  # one hole (z < 0)
    out = src.reproject_depth(depth, dst)
    assert out.pixels.shape == (5, h, w, 2) and out.valid.shape == (5, h, w)
    assert not np.any(np.array(out.valid)[:, 3, 4])
    X = np.array(src.unproject(pixel_grid(h, w).reshape(-1, 2), depth.reshape(-1))).astype(np.float64)
    for i in range(5):
        rvec = cv2.Rodrigues(dst_T[i, :3, :3].astype(np.float64))[0]
        ref = cv2.projectPoints(X, rvec, dst_T[i, :3, 3].astype(np.float64), K, dst_d[i])[0][:, 0]
        ok = np.array(out.valid[i]).reshape(-1)
        assert ok.sum() >= h * w - 1
        # compare where the point lands near the destination image (far outside, the lens polynomial explodes)
        near = ok & np.all((ref > -w) & (ref < 2 * w), axis=-1)
        assert near.sum() > 0.5 * h * w
        np.testing.assert_allclose(np.array(out.pixels[i]).reshape(-1, 2)[near], ref[near], atol=2e-3)


def test_reproject_depth_into_itself_is_the_identity():
    cam = Camera(mxa(K0), dist=mx.array([0.1, -0.05, 0.001, 0.002]))
    out = cam.reproject_depth(mx.full((6, 8), 2.0), cam)
    np.testing.assert_allclose(np.array(out.pixels), np.array(pixel_grid(6, 8)), atol=1e-3)
    np.testing.assert_allclose(np.array(out.depth), 2.0, rtol=1e-6)


def test_camera_batch_crosses_compile_and_vmap(monkeypatch):
    rng = np.random.default_rng(4)

    def make(b):
        cams = Camera(mxa(np.broadcast_to(K0, (b, 3, 3))), mxa(random_pose(rng, b)), mx.broadcast_to(mx.array([0.1, 0.0, 0.0, 0.0]), (b, 4)),
                      mx.broadcast_to(mx.array([640.0, 480.0]), (b, 2)))
        return cams, mx.array(rng.uniform(-1, 1, (b, 9, 3)) + [0, 0, 5], dtype=mx.float32)

    assert_device_safe(lambda c, X: c.project(X), make)
    # one Newton step keeps the compile cheap; the graph per step is the default's
    assert_device_safe(lambda c, X: c.reproject_depth(X[..., 2].reshape(-1, 3, 3), c, iterations=1), make)
    cams, X = make(3)
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")  # no vmap through the CUDA fast paths (docs/conventions.md)
    per = mx.vmap(lambda c, x: c.project(x).pixels)(cams, X)
    np.testing.assert_allclose(np.array(per), np.array(cams.project(X).pixels), atol=1e-4)


def test_scale_matches_cv2_resize_sampling():
    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.uniform(0, 1, (60, 80)).astype(np.float32), (0, 0), 4)
    big = cv2.resize(img, (160, 120), interpolation=cv2.INTER_LINEAR)
    cam = Camera(mx.array([[70.0, 0, 39.5], [0, 70, 29.5], [0, 0, 1]]), size=[80, 60])
    scaled = cam.scale(2.0)
    np.testing.assert_allclose(np.array(scaled.size), [160, 120])
    X = mx.array(np.c_[rng.uniform(-0.4, 0.4, (30, 2)), np.ones(30)], dtype=mx.float32)
    p, p2 = np.array(cam.project(X).pixels), np.array(scaled.project(X).pixels)
    a = cv2.remap(img, p[None].astype(np.float32), None, cv2.INTER_LINEAR)
    b = cv2.remap(big, p2[None].astype(np.float32), None, cv2.INTER_LINEAR)
    np.testing.assert_allclose(a, b, atol=2e-3)


def test_crop_shifts_the_principal_point_and_sets_the_size():
    cam = Camera(mxa(K0), dist=mx.array([0.1, 0.0, 0.0, 0.0]))
    X = mx.array([[0.1, -0.2, 3.0]])
    c = cam.crop(100, 50, 200, 150)
    np.testing.assert_allclose(np.array(c.project(X).pixels), np.array(cam.project(X).pixels) - [100, 50], atol=1e-4)
    np.testing.assert_allclose(np.array(c.size), [200, 150])


def test_from_opencv_to_opencv_round_trip_and_projection_parity():
    rng = np.random.default_rng(6)
    rvec, tvec, d = rng.normal(size=(3, 1)) * 0.4, rng.normal(size=(3, 1)), rng.normal(size=(1, 8)) * 0.02
    cam = Camera.from_opencv(mxa(K0, mx.float64), mxa(d, mx.float64), mxa(rvec, mx.float64), mxa(tvec, mx.float64),
                             [640, 480])
    X = rng.uniform(-1, 1, (10, 3)) + [0, 0, 6]
    ref = cv2.projectPoints(X, rvec, tvec, K0, d)[0][:, 0]
    np.testing.assert_allclose(np.array(cam.project(mxa(X, mx.float64)).pixels), ref, atol=1e-8)
    K, dist, rv, tv, size = cam.to_opencv()
    np.testing.assert_allclose(np.array(K), K0)
    np.testing.assert_allclose(np.array(dist), d[0])
    np.testing.assert_allclose(np.array(rv), rvec[:, 0], atol=1e-12)
    np.testing.assert_allclose(np.array(tv), tvec[:, 0], atol=1e-12)
    np.testing.assert_allclose(np.array(size), [640, 480])


def test_from_opencv_takes_calibrate_camera_rvecs_tvecs_tuples():
    rng = np.random.default_rng(8)
    board = np.stack(np.meshgrid(np.arange(9.0), np.arange(6.0)), -1).reshape(-1, 2) * 0.03
    obj = np.c_[board, np.zeros(len(board))].astype(np.float32)
    views = [(rng.normal(size=3) * 0.3, np.r_[-0.12, -0.08, 0.5] + rng.normal(size=3) * 0.02) for _ in range(6)]
    img = [cv2.projectPoints(obj, r, t, K0, None)[0][:, 0].astype(np.float32) for r, t in views]
    _, K, d, rvecs, tvecs = cv2.calibrateCamera([obj] * 6, img, (640, 480), None, None)
    assert isinstance(rvecs, tuple) and rvecs[0].shape == (3, 1)
    cam = Camera.from_opencv(K, d, rvecs, tvecs)
    assert cam.batch_shape == (6,)
    ref = np.stack([cv2.projectPoints(obj, r, t, K, d)[0][:, 0] for r, t in zip(rvecs, tvecs)])
    np.testing.assert_allclose(np.array(cam.project(mx.array(obj)[None]).pixels), ref, atol=1e-3)
    listed = Camera.from_opencv(K, d, list(rvecs), list(tvecs))
    np.testing.assert_array_equal(np.array(listed.pose), np.array(cam.pose))


def test_opengl_conversions_are_inverse_and_put_the_scene_in_front():
    rng = np.random.default_rng(7)
    c2w_gl = np.linalg.inv(random_pose(rng, 4).astype(np.float64))
    pose = pose_from_opengl_c2w(mxa(c2w_gl))
    np.testing.assert_allclose(np.array(pose_to_opengl_c2w(pose)), c2w_gl, atol=1e-5)
    np.testing.assert_allclose(np.array(opencv_to_opengl_c2w(opengl_to_opencv_c2w(mxa(c2w_gl)))), c2w_gl, atol=1e-7)
    # an OpenGL camera looks along its -z axis: a point 2 units ahead has OpenCV depth +2
    ahead = c2w_gl[:, :3, 3] - 2.0 * c2w_gl[:, :3, 2]
    out = Camera(nerf_intrinsics(0.8, 64, 48), pose).project(mxa(ahead)[:, None])
    np.testing.assert_allclose(np.array(out.depth)[:, 0], 2.0, atol=1e-5)
    np.testing.assert_allclose(np.array(out.pixels)[:, 0], np.broadcast_to([32.0, 24.0], (4, 2)), atol=1e-3)


def test_fisheye_model_selects_the_fisheye_class_and_survives_grad():
    cam = Camera(mxa(K0), dist=mx.array([0.05, -0.02, 0.01, -0.003]), model="fisheye")
    assert isinstance(cam, FisheyeCamera) and cam.model == "fisheye"
    g = mx.grad(lambda c: mx.sum(c.project(mx.array([[0.3, 0.2, 1.0]])).pixels))(cam)
    assert isinstance(g, FisheyeCamera) and np.all(np.isfinite(np.array(g.dist)))


@pytest.mark.parametrize("model", ["opencv", "fisheye"])
def test_cameras_are_returned_from_compile_as_built_eagerly(model):
    rng = np.random.default_rng(6)
    T = mxa(random_pose(rng))
    cam = Camera(mxa(K0), dist=mx.array([0.05, -0.02, 0.01, -0.003]), size=[640, 480], model=model)
    built = [
        lambda K, c: Camera(K, dist=c.dist, size=c.size, model=model),
        lambda K, c: c,
        lambda K, c: c.scale(0.5),
        lambda K, c: c.with_pose(T),
        lambda K, c: c.select(slice(None)),
    ]
    for fn in built:
        eager, compiled = fn(cam.K, cam), mx.compile(fn)(cam.K, cam)
        assert type(compiled) is type(eager) is type(cam)
        for e, c in zip(eager, compiled):
            np.testing.assert_array_equal(np.array(c), np.array(e))


def test_select_indexes_the_camera_batch():
    cams = Camera.from_intrinsics(mx.array([1.0, 2.0, 3.0]), 1.0, 0.0, 0.0)
    assert cams.select(slice(1, 3)).batch_shape == (2,) and float(cams.select(2).fx) == 3.0


@pytest.mark.parametrize(
    "args,match",
    [
        (dict(K=np.eye(2)), r"\(\*, 3, 3\)"),
        (dict(K=np.eye(3), pose=np.eye(3)), r"\(\*, 4, 4\)"),
        (dict(K=np.stack([np.eye(3)] * 3), pose=np.stack([np.eye(4)] * 2)), "broadcast"),
        (dict(K=np.eye(3), dist=np.zeros(6)), "k in"),
        (dict(K=np.eye(3), dist=np.zeros(5), model="fisheye"), r"\(\*, 4\)"),
        (dict(K=np.eye(3), size=np.zeros(3)), r"\(\*, 2\)"),
        (dict(K=np.eye(3), model="orthographic"), "model"),
    ],
)
def test_bad_constructor_shapes_raise_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        Camera(**args)


def test_mismatched_point_batch_raises_value_error():
    cams = Camera(mx.broadcast_to(mx.eye(3), (3, 3, 3)))
    with pytest.raises(ValueError, match="broadcast"):
        cams.project(mx.ones((2, 5, 3)))
    with pytest.raises(ValueError, match=r"\(\*, H, W\)"):
        cams.reproject_depth(mx.ones(4), cams)


def test_zero_focal_camera_is_flagged_and_never_passes_for_a_good_one():
    cam = Camera.from_intrinsics(mx.array([0.0, 500.0]), 500.0, 320.0, 240.0)
    px = mx.array([[100.0, 50.0]])
    assert cam.intrinsics_ok.tolist() == [False, True]
    k_inv = to_np(cam.K_inv)
    assert np.isnan(k_inv[0]).all()
    np.testing.assert_allclose(k_inv[1], np.linalg.inv(to_np(cam.K[1])), rtol=1e-6, atol=1e-9)
    _, d = cam.rays(px)
    assert np.isnan(to_np(d[0])).all() and np.isfinite(to_np(d[1])).all()
    pts = cam.unproject(px, mx.array([2.0]))
    assert np.isnan(to_np(pts[0])).all() and np.isfinite(to_np(pts[1])).all()
    # With the mask asked for: finite placeholders, flagged.
    for res in (cam.rays(px, return_valid=True), cam.unproject(px, mx.array([2.0]), return_valid=True)):
        assert res.valid.tolist() == [[False], [True]]
        assert all(np.isfinite(to_np(a)).all() for a in res[:-1])
    assert cam.project(mx.array([[0.0, 0.0, 1.0]])).valid.tolist() == [[False], [True]]


def test_K_inv_gradient_is_finite_for_a_batch_with_a_zero_focal_camera():
    def f(K):
        kinv = Camera(K).K_inv
        return mx.sum(mx.where(mx.isnan(kinv), 0.0, kinv))

    K = mx.array(np.stack([np.diag([0.0, 1.0, 1.0]), K0]), dtype=mx.float32)
    assert np.isfinite(to_np(mx.grad(f)(K))).all()
