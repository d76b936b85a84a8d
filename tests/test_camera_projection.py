"""project_points / project_points_jacobian: OpenCV parity, analytic = autodiff Jacobians, masks, bad input."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from helpers import CPU_ONLY_PRIMITIVES, ON_GPU, assert_device_safe, graph_primitives, to_np
from mlxgeom import lie
from mlxgeom.camera import Camera, project_points, project_points_jacobian

K4K = np.array([[3000.0, 0.0, 1919.5], [0.0, 3050.0, 1079.5], [0.0, 0.0, 1.0]])
F64 = pytest.mark.skipif(ON_GPU, reason="float64 exists only on MLX's CPU backend")
NUM_COEFFS = (4, 5, 8, 12, 14)


def random_dist(rng: np.random.Generator, k: int, scale: float = 0.05) -> np.ndarray:
    d = rng.normal(size=k) * scale
    if k == 14:
        d[12:] = rng.normal(size=2) * 0.02  # tilt angles (rad)
    return d


def scene(seed: int, n: int = 300):
    """Points in front of a 4K camera with a random pose (rvec, tvec) whose image fills the frame."""
    rng = np.random.default_rng(seed)
    rvec, tvec = rng.normal(size=3) * 0.3, rng.normal(size=3) * 0.2
    R, _ = cv2.Rodrigues(rvec)
    cam_pts = np.stack([rng.uniform(-0.6, 0.6, n), rng.uniform(-0.35, 0.35, n), np.ones(n)], -1) * rng.uniform(1, 5, (n, 1))
    world = (cam_pts - tvec) @ R  # R^T (x - t)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, tvec
    return rng, world, rvec, tvec, T


def mxa(x, dtype=mx.float32):
    return None if x is None else mx.array(np.asarray(x), dtype=dtype)


@pytest.mark.parametrize("k", (0,) + NUM_COEFFS)
def test_pixels_match_cv2_project_points_float32_within_2e3_px_on_4k(k):
    rng, X, rvec, tvec, T = scene(k)
    d = random_dist(rng, k) if k else None
    ref = cv2.projectPoints(X, rvec, tvec, K4K, d)[0][:, 0]
    px, depth, valid = project_points(mxa(X), mxa(K4K), mxa(T), mxa(d))
    assert np.all(np.array(valid))
    assert np.abs(to_np(px) - ref).max() < 2e-3
    np.testing.assert_allclose(to_np(depth), (X @ T[:3, :3].T + tvec)[:, 2], rtol=1e-5)


@F64
@pytest.mark.parametrize("k", NUM_COEFFS)
def test_pixels_and_jacobian_match_cv2_in_float64(k):
    rng, X, rvec, tvec, T = scene(10 + k, 50)
    d = random_dist(rng, k)
    ref, J = cv2.projectPoints(X, rvec, tvec, K4K, d)
    J = J.reshape(len(X), 2, -1)
    out = project_points_jacobian(mxa(X, mx.float64), mxa(K4K, mx.float64), mxa(T, mx.float64), mxa(d, mx.float64))
    tol = 1e-8
    np.testing.assert_allclose(np.array(out.pixels), ref[:, 0], atol=tol)
    scale = np.abs(J).max()
    # Right perturbation: T exp([rho, 0]) moves t by R rho, so the rho block is OpenCV's dp/dt times R.
    np.testing.assert_allclose(np.array(out.d_pose)[..., :3], J[..., 3:6] @ T[:3, :3], atol=tol * scale)
    np.testing.assert_allclose(np.array(out.d_intrinsics)[..., :4], J[..., 6:10], atol=tol * scale)
    np.testing.assert_allclose(np.array(out.d_dist), J[..., 10:10 + k], atol=tol * scale)


@F64
def test_rvec_jacobian_through_so3_exp_matches_cv2():
    rng, X, rvec, tvec, T = scene(3, 20)
    d = random_dist(rng, 8)
    J = cv2.projectPoints(X, rvec, tvec, K4K, d)[1].reshape(len(X), 2, -1)[..., :3]
    Xm, Km, dm, tm = (mxa(a, mx.float64) for a in (X, K4K, d, tvec))

    def f(r, cot):
        return project_points(Xm, Km, lie.se3_from_rt(lie.so3_exp(r), tm), dm).pixels

    rows = []
    for c in range(2):
        # one point per vjp row: d pixel_i / d rvec for every i via a per-point batch of rvecs
        r = mx.broadcast_to(mxa(rvec, mx.float64), (len(X), 3))
        cot = mx.zeros((len(X), 2), dtype=mx.float64).at[:, c].add(1.0)
        _, (g,) = mx.vjp(lambda rr: [project_points(Xm[:, None], Km, lie.se3_from_rt(lie.so3_exp(rr), tm), dm).pixels[:, 0]],
                         [r], [cot])
        rows.append(np.array(g))
    np.testing.assert_allclose(np.stack(rows, 1), J, rtol=1e-7, atol=1e-6)


def test_fisheye_pixels_match_cv2_fisheye_project_points_with_alpha_as_skew():
    rng, X, rvec, tvec, T = scene(4)
    d = rng.normal(size=4) * 0.05
    alpha = 0.002
    Ks = K4K.copy()
    Ks[0, 1] = alpha * Ks[0, 0]
    ref = cv2.fisheye.projectPoints(X[:, None], rvec, tvec, K4K, d, alpha=alpha)[0][:, 0]
    px, _, valid = project_points(mxa(X), mxa(Ks), mxa(T), mxa(d), model="fisheye")
    assert np.all(np.array(valid))
    assert np.abs(to_np(px) - ref).max() < 2e-3


@F64
def test_fisheye_jacobian_matches_cv2_fisheye():
    rng, X, rvec, tvec, T = scene(5, 40)
    d = rng.normal(size=4) * 0.05
    _, J = cv2.fisheye.projectPoints(X[:, None], rvec, tvec, K4K, d)
    # cv2.fisheye jacobian columns: f (2), c (2), k (4), rvec (3), tvec (3), alpha (1); rows interleaved u, v.
    J = J.reshape(len(X), 2, 15)
    out = project_points_jacobian(mxa(X, mx.float64), mxa(K4K, mx.float64), mxa(T, mx.float64), mxa(d, mx.float64),
                                  model="fisheye")
    s = np.abs(J).max()
    np.testing.assert_allclose(np.array(out.d_intrinsics)[..., :4], J[..., 0:4], atol=1e-9 * s)
    np.testing.assert_allclose(np.array(out.d_dist), J[..., 4:8], atol=1e-9 * s)
    np.testing.assert_allclose(np.array(out.d_pose)[..., :3], J[..., 11:14] @ T[:3, :3], atol=1e-9 * s)


def autodiff_jacobians(X, K, T, d, model):
    """Per-point Jacobians of u and v by mx.vjp, with every parameter given per point."""
    n = X.shape[0]
    Kn = mx.broadcast_to(K, (n, 3, 3))
    Tn = mx.broadcast_to(T, (n, 4, 4))
    dn = None if d is None else mx.broadcast_to(d, (n, d.shape[-1]))
    xi = mx.zeros((n, 6), dtype=X.dtype)

    def f(Xp, Kp, xip, dp):
        pose = lie.se3_compose(Tn, lie.se3_exp(xip))  # RIGHT perturbation, the library's convention
        return [project_points(Xp[:, None], Kp, pose, dp, model).pixels[:, 0]]

    primals = [X, Kn, xi] + ([dn] if dn is not None else [])
    fn = (lambda a, b, c, e: f(a, b, c, e)) if dn is not None else (lambda a, b, c: f(a, b, c, None))
    rows = []
    for c in range(2):
        cot = mx.zeros((n, 2), dtype=X.dtype).at[:, c].add(1.0)
        _, grads = mx.vjp(fn, primals, [cot])
        rows.append(grads)
    out = {}
    out["d_points"] = np.stack([np.array(r[0]) for r in rows], 1)
    gk = [np.array(r[1]) for r in rows]
    out["d_intrinsics"] = np.stack([np.stack([g[:, 0, 0], g[:, 1, 1], g[:, 0, 2], g[:, 1, 2], g[:, 0, 1]], -1) for g in gk], 1)
    out["d_pose"] = np.stack([np.array(r[2]) for r in rows], 1)
    if dn is not None:
        out["d_dist"] = np.stack([np.array(r[3]) for r in rows], 1)
    return out


@pytest.mark.parametrize("k,model", [(0, "opencv"), (5, "opencv"), (14, "opencv"), (4, "fisheye")])
def test_analytic_jacobians_equal_autodiff(k, model):
    rng, X, rvec, tvec, T = scene(20 + k, 30)
    d = random_dist(rng, k) if k else None
    K = K4K.copy()
    K[0, 1] = 3.0  # skew is applied and differentiated
    dtype = mx.float32 if ON_GPU else mx.float64
    Xm, Km, Tm, dm = mxa(X, dtype), mxa(K, dtype), mxa(T, dtype), mxa(d, dtype)
    J = project_points_jacobian(Xm, Km, Tm, dm, model)
    ref = autodiff_jacobians(Xm, Km, Tm, dm, model)
    rtol = 2e-3 if dtype == mx.float32 else 1e-9
    for name, r in ref.items():
        got = np.array(getattr(J, name))
        np.testing.assert_allclose(got, r, rtol=rtol, atol=rtol * np.abs(r).max(), err_msg=name)


def test_points_at_or_behind_camera_are_flagged_with_finite_values_and_gradients():
    K = mxa(K4K)
    X = mx.array([[0.1, 0.2, 2.0], [0.1, 0.2, 0.0], [0.1, 0.2, -1.0], [0.0, 0.0, 1e-9]])
    px, depth, valid = project_points(X, K, dist=mx.array([0.1, 0.01, 0.001, 0.001, 0.01]))
    assert np.array(valid).tolist() == [True, False, False, False]
    assert np.all(np.isfinite(np.array(px)))
    g = mx.grad(lambda x: mx.sum(project_points(x, K, dist=mx.array([0.1, 0.01, 0.0, 0.0])).pixels))(X)
    assert np.all(np.isfinite(np.array(g)))


def test_fisheye_gradient_is_finite_on_the_optical_axis():
    K, d = mxa(K4K), mx.array([0.1, 0.01, 0.0, 0.0])
    X = mx.array([[0.0, 0.0, 2.0], [1e-7, 0.0, 1.0]])
    g = mx.grad(lambda x: mx.sum(project_points(x, K, dist=d, model="fisheye").pixels))(X)
    assert np.all(np.isfinite(np.array(g)))
    J = project_points_jacobian(X, K, dist=d, model="fisheye").d_points
    np.testing.assert_allclose(np.array(J[0]), [[1500.0, 0, 0], [0, 1525.0, 0]], atol=1e-3)


def test_nan_point_only_affects_its_own_entry():
    K = mxa(K4K)
    X = mx.array([[0.1, 0.2, 2.0], [np.nan, 0.2, 2.0], [0.3, -0.2, 3.0]])
    px, depth, valid = project_points(X, K, dist=mx.array([0.1, 0.01, 0.001, 0.001]))
    assert np.array(valid).tolist() == [True, False, True]
    clean = project_points(X[mx.array([0, 2])], K, dist=mx.array([0.1, 0.01, 0.001, 0.001])).pixels
    np.testing.assert_array_equal(np.array(px)[[0, 2]], np.array(clean))
    g = mx.grad(lambda x: mx.sum(mx.where(project_points(x, K).valid[:, None], project_points(x, K).pixels, 0.0)))(X)
    assert np.all(np.isfinite(np.array(g)[[0, 2]]))


def test_nonpositive_focal_length_is_reported_in_valid():
    K = mx.array([[[100.0, 0, 50], [0, 100, 40], [0, 0, 1]], [[0.0, 0, 50], [0, 100, 40], [0, 0, 1]],
                  [[-100.0, 0, 50], [0, 100, 40], [0, 0, 1]]])
    _, _, valid = project_points(mx.array([[0.1, 0.2, 2.0]]), K)
    assert np.array(valid).tolist() == [[True], [False], [False]]


def test_many_cameras_broadcast_against_one_point_set():
    rng, X, rvec, tvec, T = scene(7, 10)
    Ks = np.stack([K4K * [[s], [s], [1]] for s in (1.0, 0.5, 0.25)])
    px, depth, valid = project_points(mxa(X), mxa(Ks), mxa(T))
    assert px.shape == (3, 10, 2) and depth.shape == (3, 10) and valid.shape == (3, 10)
    for i in range(3):
        np.testing.assert_allclose(np.array(px[i]), cv2.projectPoints(X, rvec, tvec, Ks[i], None)[0][:, 0], atol=2e-3)
    one = project_points(mxa(X[0]), mxa(K4K), mxa(T))
    assert one.pixels.shape == (2,) and one.valid.shape == ()


def test_empty_point_set_gives_empty_outputs():
    J = project_points_jacobian(mx.zeros((0, 3)), mxa(K4K), dist=mx.zeros(5))
    assert J.pixels.shape == (0, 2) and J.valid.shape == (0,) and J.d_pose.shape == (0, 2, 6) and J.d_dist.shape == (0, 2, 5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(K=np.eye(4)), r"\(\*, 3, 3\)"),
        (dict(points_world=np.zeros((5, 2))), r"\(\*, 3\)"),
        (dict(pose=np.eye(3)), r"\(\*, 4, 4\)"),
        (dict(dist=np.zeros(6)), "k in"),
        (dict(dist=np.zeros(5), model="fisheye"), r"\(\*, 4\)"),
        (dict(model="pinhole"), "model"),
        (dict(K=np.stack([np.eye(3)] * 3), points_world=np.zeros((2, 5, 3))), "broadcast"),
    ],
)
def test_bad_shapes_raise_value_error(kwargs, match):
    args = dict(points_world=np.ones((5, 3)), K=np.eye(3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        project_points(**args)


def test_missing_intrinsics_raise_type_error_naming_k():
    with pytest.raises(TypeError, match="K"):
        project_points(np.ones((2, 3)), None)


def test_complex_input_raises_type_error():
    with pytest.raises(TypeError):
        project_points(np.ones((2, 3), dtype=np.complex64), np.eye(3))


def test_float16_input_returns_float16():
    px, depth, valid = project_points(mx.ones((4, 3), dtype=mx.float16), mx.eye(3, dtype=mx.float16))
    assert px.dtype == mx.float16 and depth.dtype == mx.float16 and valid.dtype == mx.bool_


@pytest.mark.parametrize("model,k", [("opencv", 8), ("fisheye", 4)])
def test_projection_is_device_safe_and_compiles_at_two_batch_sizes(model, k):
    rng = np.random.default_rng(0)

    def make(b):
        X = mx.array(rng.uniform(-1, 1, (b, 7, 3)) + [0, 0, 4], dtype=mx.float32)
        return X, mxa(np.broadcast_to(K4K, (b, 3, 3))), mxa(np.broadcast_to(np.eye(4), (b, 4, 4))), mxa(random_dist(rng, k) * 0.2)

    assert_device_safe(lambda X, K, T, d: project_points(X, K, T, d, model), make)


@pytest.mark.parametrize("model,k", [("opencv", 14), ("fisheye", 4)])
def test_projection_jacobian_graph_has_no_cpu_only_primitive_and_compiles(model, k):
    # compiling the whole Jacobian graph costs ~1 min of g++ on a cold CPU cache; the graph
    # check covers rule 1, and a compiled call with a small distortion model covers rule 3
    rng = np.random.default_rng(1)
    X = mx.array(rng.uniform(-1, 1, (3, 7, 3)) + [0, 0, 4], dtype=mx.float32)
    d = mxa(random_dist(rng, k) * 0.2)
    fn = lambda X, K, T, d: project_points_jacobian(X, K, T, d, model)  # noqa: E731
    assert not graph_primitives(fn, X, mxa(K4K), mx.eye(4), d) & CPU_ONLY_PRIMITIVES
    small = lambda X, K: project_points_jacobian(X, K)  # noqa: E731
    assert_device_safe(small, lambda b: (mx.array(rng.uniform(-1, 1, (b, 5, 3)) + [0, 0, 4], dtype=mx.float32), mxa(K4K)))


def test_camera_projection_gradient_through_camera_object():
    rng, X, rvec, tvec, T = scene(8, 5)
    cam = Camera(mxa(K4K), mxa(T), mxa(random_dist(rng, 5)))
    g = mx.grad(lambda c: mx.sum(c.project(mxa(X)).pixels))(cam)
    assert isinstance(g, Camera)
    J = cam.project_jacobian(mxa(X))
    np.testing.assert_allclose(np.array(g.K[0, 0]), np.array(J.d_intrinsics[..., 0].sum()), rtol=1e-4)
    np.testing.assert_allclose(np.array(g.dist), np.array(J.d_dist.sum(axis=(0, 1))), rtol=1e-4, atol=1e-2)
