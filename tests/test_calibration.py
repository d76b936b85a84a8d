"""calibrate_camera against cv2.calibrateCamera live: synthetic boards, rendered and detected boards,
degenerate view sets, batches of cameras, fixed parameters, device safety."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from helpers import CPU_ONLY_PRIMITIVES, assert_device_safe, graph_primitives
from mlxgeom import calibrate_camera, warp_perspective
from mlxgeom.calibration import CalibrationReason, board_points, reason_text, synthetic_views
from mlxgeom.camera import project_points
from mlxgeom.lie import se3_from_rt, so3_exp

SIZE = (640, 480)
# OpenCV's stdDeviationsIntrinsics order [fx, fy, cx, cy, k1, k2, p1, p2, k3, ...] -> ours, which adds skew.
_CV_TO_OURS = [0, 1, 2, 3, 5, 6, 7, 8, 9]


def _opencv(obj, img, flags=0, camera_matrix=None):
    o = [np.asarray(v, np.float32) for v in np.asarray(obj)]
    i = [np.asarray(v, np.float32) for v in np.asarray(img)]
    rms, K, dist, _, _, std, _, per_view = cv2.calibrateCameraExtended(o, i, SIZE, camera_matrix, None, flags=flags)
    return rms, K, dist.ravel(), std.ravel(), per_view.ravel()


def _assert_parity(res, cv, num_dist=5):
    """RMS within 1 % of OpenCV's and every parameter within OpenCV's standard deviation of it."""
    rms, K, dist, std, per_view = cv
    assert abs(res.rms.item() - rms) <= 0.01 * rms
    ours = np.concatenate([np.asarray(res.camera.K)[[0, 1, 0, 1], [0, 1, 2, 2]], np.asarray(res.camera.dist)])
    theirs = np.concatenate([[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], dist[:num_dist]])
    sigma = std[: 4 + num_dist]
    free = sigma > 0
    assert np.all(np.abs(ours - theirs)[free] <= sigma[free]), (ours, theirs, sigma)
    np.testing.assert_allclose(np.asarray(res.std_intrinsics)[_CV_TO_OURS[: 4 + num_dist]][free], sigma[free],
                               rtol=0.05)
    np.testing.assert_allclose(np.asarray(res.view_errors), per_view, rtol=0.02, atol=1e-3)


@pytest.mark.parametrize("views,noise,seed,dtype", [(10, 0.5, 0, mx.float32), (25, 0.2, 1, mx.float64)])
def test_noisy_synthetic_boards_match_opencv(views, noise, seed, dtype):
    obj, img, *_ = synthetic_views(num_views=views, noise=noise, seed=seed)
    res = calibrate_camera(obj.astype(dtype), img.astype(dtype), SIZE)
    assert res.ok.item() and res.reason.item() == CalibrationReason.OK
    assert res.camera.K.dtype == dtype
    cv = _opencv(obj, img)
    _assert_parity(res, cv)
    if dtype == mx.float64:  # the same minimum as OpenCV's float64 LM, to its precision
        assert res.rms.item() == pytest.approx(cv[0], rel=1e-9)


@pytest.mark.parametrize("model,flags,dist,views", [
    ("pinhole", cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST, (), 10),
    ("opencv4", cv2.CALIB_FIX_K3, (-0.25, 0.09, 1e-3, -7e-4), 10),
    # the rational model needs more views before OpenCV's own K settles within its deviations
    ("opencv8", cv2.CALIB_RATIONAL_MODEL, (-0.25, 0.09, 1e-3, -7e-4, 0.01, 0.02, 0.0, 0.01), 15),
])
def test_lens_models_match_opencv_flags(model, flags, dist, views):
    obj, img, *_ = synthetic_views(num_views=views, noise=0.3, seed=11, dist=dist)
    res = calibrate_camera(obj, img, SIZE, model=model)
    cv = _opencv(obj, img, flags)
    assert res.ok.item() and res.camera.dist.shape == (len(dist),)
    if model == "opencv8":
        # k1..k3 against k4..k6 (numerator against denominator) is nearly a null direction: both
        # solvers reach the same error with different coefficients, so only the RMS and K compare.
        assert abs(res.rms.item() - cv[0]) <= 0.01 * cv[0]
        K, std = np.asarray(res.camera.K)[[0, 1, 0, 1], [0, 1, 2, 2]], cv[3][:4]
        assert np.all(np.abs(K - cv[1][[0, 1, 0, 1], [0, 1, 2, 2]]) <= std)
    else:
        _assert_parity(res, cv, num_dist=len(dist))


def test_rational_model_std_matches_the_float64_gauss_newton_covariance():
    """The rational model's k1..k3 / k4..k6 near-null direction (Jacobian condition ~1e9) once made
    the float32 Schur complement indefinite and every deviation 0. Reference: the covariance of
    OpenCV's own projection Jacobians (cv2.projectPoints) at our solution, in float64."""
    obj, img, *_ = synthetic_views(num_views=20, noise=0.3, seed=3)
    res = calibrate_camera(obj, img, SIZE, model="opencv8")
    K, dist, poses = (np.asarray(v, np.float64) for v in (res.camera.K, res.camera.dist, res.poses))
    o, i = np.asarray(obj, np.float64), np.asarray(img, np.float64)
    views, n = o.shape[0], 12
    J, r = np.zeros((2 * o.shape[0] * o.shape[1], n + 6 * views)), []
    for v in range(views):
        px, jac = cv2.projectPoints(o[v], cv2.Rodrigues(poses[v, :3, :3])[0], poses[v, :3, 3], K, dist)
        rows = slice(2 * o.shape[1] * v, 2 * o.shape[1] * (v + 1))
        J[rows, :n], J[rows, n + 6 * v: n + 6 * v + 6] = jac[:, 6:6 + n], jac[:, :6]
        r.append((px[:, 0] - i[v]).ravel())
    r = np.concatenate(r)
    ref = np.sqrt(np.diag(np.linalg.inv(J.T @ J))[:n] * (r @ r) / (len(r) - J.shape[1]))
    ours = np.asarray(res.std_intrinsics, np.float64)[_CV_TO_OURS[:4] + list(range(5, 13))]
    np.testing.assert_allclose(ours[:4], ref[:4], rtol=0.05)
    # The near-null coefficients' deviations are thousands of times their values; float32 gets their size.
    big = ref > 1.0
    assert np.all(ours[big] > 0.4 * ref[big]) and np.all(ours[big] < 2.5 * ref[big]), (ours, ref)


def test_robust_loss_ignores_misdetected_corners():
    obj, img, *_ = synthetic_views(num_views=10, noise=0.3, seed=9)
    clean = _opencv(obj, img)
    bad = np.array(img)
    bad[[0, 4, 7], [10, 30, 50]] += 25.0  # three corners detected 35 px away
    plain = calibrate_camera(obj, mx.array(bad), SIZE)
    robust = calibrate_camera(obj, mx.array(bad), SIZE, loss="huber", loss_scale=1.0)
    ref, std = clean[1][[0, 1, 0, 1], [0, 1, 2, 2]], clean[3][:4]

    def focal_error(res):
        return np.abs(np.asarray(res.camera.K)[[0, 1, 0, 1], [0, 1, 2, 2]] - ref) / std

    assert np.all(focal_error(robust) <= 1.0) and np.max(focal_error(plain)) > 1.0


def test_fixed_parameters_match_opencv_flags():
    obj, img, *_ = synthetic_views(num_views=12, noise=0.3, seed=2)
    res = calibrate_camera(obj, img, SIZE, fix=("skew", "principal_point", "aspect_ratio", "k3"))
    flags = cv2.CALIB_FIX_PRINCIPAL_POINT | cv2.CALIB_FIX_ASPECT_RATIO | cv2.CALIB_FIX_K3
    cv = _opencv(obj, img, flags, np.eye(3))
    _assert_parity(res, cv)
    K = np.asarray(res.camera.K)
    assert K[0, 0] == pytest.approx(K[1, 1], rel=1e-6)
    assert (K[0, 2], K[1, 2]) == ((SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2)
    assert res.camera.dist[4].item() == 0.0 and res.std_intrinsics[9].item() == 0.0


def _render_views(num_views: int, seed: int):
    """Checkerboards (9 x 6 inner corners) warped into 640 x 480 images by mlxgeom.warp_perspective."""
    square, px = 0.03, 40  # metres and board-image pixels per square
    rows, cols, margin = 7, 10, px
    board = np.full((rows * px + 2 * margin, cols * px + 2 * margin), 255.0, np.float32)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                board[margin + r * px: margin + (r + 1) * px, margin + c * px: margin + (c + 1) * px] = 0.0
    # board metres -> board-image pixels: corner (j, i) sits on the pixel edge margin + (j + 1) px - 0.5
    A = np.array([[px / square, 0, margin + px - 0.5], [0, px / square, margin + px - 0.5], [0, 0, 1]])
    _, _, K, _, poses = synthetic_views(num_views=num_views, seed=seed, dist=())
    K, poses = np.asarray(K, np.float64), np.asarray(poses, np.float64)
    H = K @ poses[:, :3, [0, 1, 3]] @ np.linalg.inv(A)
    images = np.asarray(warp_perspective(mx.array(board), mx.array(H, dtype=mx.float32), SIZE, border_value=128.0))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def test_rendered_checkerboards_detected_by_opencv_match_opencv():
    images = _render_views(12, seed=4)
    corners = []
    for im in images:
        found, c = cv2.findChessboardCorners(im, (9, 6))
        assert found
        c = cv2.cornerSubPix(im, c, (5, 5), (-1, -1), (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3))
        corners.append(c.reshape(-1, 2))
    obj = np.broadcast_to(board_points(6, 9, 0.03), (len(corners), 54, 3)).astype(np.float32)
    img = np.stack(corners)
    res = calibrate_camera(obj, img, SIZE)
    assert res.ok.item()
    cv = _opencv(obj, img)
    _assert_parity(res, cv)
    assert abs(res.camera.fx.item() - 800.0) < 10.0  # and near the rendering camera


@pytest.mark.parametrize("case,views,tilt,reason", [
    ("fronto-parallel", 10, 0.0, CalibrationReason.PARALLEL_VIEWS),
    ("two views", 2, 0.6, CalibrationReason.TOO_FEW_VIEWS),
])
def test_degenerate_view_sets_are_not_ok_with_their_reason(case, views, tilt, reason):
    obj, img, *_ = synthetic_views(num_views=views, noise=0.2, seed=5, max_tilt=tilt)
    res = calibrate_camera(obj, img, SIZE, max_iters=3)
    assert not res.ok.item()
    assert res.reason.item() == reason
    assert "views" in reason_text(res.reason.item())
    assert np.array_equal(np.asarray(res.camera.K), np.eye(3)) and res.rms.item() == np.inf


@pytest.mark.parametrize("size", [SIZE, (320, 240), (1280, 960)])
def test_boards_13_degrees_apart_calibrate_like_opencv(size):
    # views tilted by up to 0.1 rad: refused before as parallel; the pixel normalisation's scale
    # (image_size) may be off by 2x
    obj, img, K, *_ = synthetic_views(num_views=12, noise=0.0, max_tilt=0.1, seed=0)
    res = calibrate_camera(obj, img, size)
    assert res.ok.item() and res.rms.item() < 1e-3
    np.testing.assert_allclose(np.asarray(res.camera.K), np.asarray(K), atol=0.05)
    rms, K_cv, *_ = cv2.calibrateCamera(list(np.asarray(obj)), list(np.asarray(img)), size, None, None)
    np.testing.assert_allclose(np.asarray(res.camera.K), K_cv, atol=0.05)


def _parallel_boards(noise: float, seed: int = 3):
    """12 views of boards sharing one oblique plane orientation (spun in-plane, moved)."""
    rng = np.random.default_rng(seed)
    board = board_points()
    spins = np.stack([np.zeros(12), np.zeros(12), rng.uniform(-0.3, 0.3, 12)], axis=-1)
    R = np.asarray(so3_exp(mx.array([[0.4, -0.2, 0.0]]))) @ np.asarray(so3_exp(mx.array(spins, dtype=mx.float32)))
    t = np.concatenate([rng.uniform(-0.04, 0.04, (12, 2)), rng.uniform(0.42, 0.58, (12, 1))], -1) - R @ board.mean(0)
    poses = se3_from_rt(mx.array(R, dtype=mx.float32), mx.array(t, dtype=mx.float32))
    obj = mx.array(np.broadcast_to(board, (12, *board.shape)), dtype=mx.float32)
    img = project_points(obj, mx.array(((800.0, 0, 322), (0, 780, 236), (0, 0, 1))), poses).pixels
    return obj, img + noise * mx.array(rng.standard_normal(img.shape), dtype=mx.float32)


@pytest.mark.parametrize("size", [SIZE, (1280, 960)])
@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_parallel_oblique_boards_are_refused(size, noise):
    obj, img = _parallel_boards(noise)
    res = calibrate_camera(obj, img, size, max_iters=3)
    assert res.reason.item() == CalibrationReason.PARALLEL_VIEWS


@pytest.mark.parametrize("size", [(0, 0), (-640, 480), (640, float("nan"))])
def test_non_positive_image_size_raises_naming_it(size):
    obj, img, *_ = synthetic_views(num_views=4, noise=0.0, seed=0)
    with pytest.raises(ValueError, match="image_size"):
        calibrate_camera(obj, img, size)


@pytest.mark.parametrize("views,points", [(0, 54), (5, 0)])
def test_empty_views_or_points_raise_naming_object_points(views, points):
    with pytest.raises(ValueError, match="object_points"):
        calibrate_camera(mx.zeros((views, points, 3)), mx.zeros((views, points, 2)), SIZE)


def test_missing_points_and_views_are_ignored():
    obj, img, *_ = synthetic_views(num_views=12, noise=0.3, seed=6)
    img_np = np.array(img)
    img_np[3] = np.nan  # a view without detection
    img_np[5, :10] = np.nan  # a partly occluded view
    res = calibrate_camera(obj, mx.array(img_np), SIZE)
    keep = [v for v in range(12) if v != 3]
    o = [np.array(obj[v]) for v in keep]
    i = [img_np[v] for v in keep]
    o[4], i[4] = o[4][10:], i[4][10:]  # view 5 is the 5th kept
    rms, K, *_ = cv2.calibrateCamera(o, i, SIZE, None, None)
    assert res.ok.item() and abs(res.rms.item() - rms) <= 0.01 * rms
    np.testing.assert_allclose(np.asarray(res.camera.K), K, rtol=1e-3, atol=0.05)


def test_batch_of_cameras_equals_each_calibrated_alone():
    lenses = [((800.0, 0, 322), (0, 780, 236), (0, 0, 1)), ((600.0, 0, 330), (0, 610, 250), (0, 0, 1))]
    dists = [(-0.25, 0.09, 1e-3, -7e-4, 0.0), (0.05, -0.02, 0.0, 1e-3, 0.0)]
    data = [synthetic_views(num_views=10, noise=0.3, seed=10 + i, K=k, dist=d) for i, (k, d) in
            enumerate(zip(lenses, dists))]
    obj = mx.stack([d[0] for d in data])
    img = mx.stack([d[1] for d in data])
    # every camera runs its own LM (own damping, own stopping): a few iterations show it
    batch = calibrate_camera(obj, img, SIZE, max_iters=12)
    for i in range(2):
        alone = calibrate_camera(obj[i], img[i], SIZE, max_iters=12)
        np.testing.assert_allclose(np.asarray(batch.camera.K[i]), np.asarray(alone.camera.K), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(batch.camera.dist[i]), np.asarray(alone.camera.dist), atol=1e-5)
        np.testing.assert_allclose(np.asarray(batch.rms[i]), np.asarray(alone.rms), rtol=1e-5)


def test_fisheye_lens_recovers_the_generating_camera():
    K = ((400.0, 0, 320), (0, 400, 240), (0, 0, 1))
    # the board seen through the fisheye lens
    obj, _, _, _, poses = synthetic_views(num_views=8, noise=0.0, seed=7, K=K, dist=())
    img = project_points(obj, mx.array(K), poses, mx.array([0.05, -0.01, 0.0, 0.0]), model="fisheye").pixels
    res = calibrate_camera(obj, img, SIZE, model="fisheye")
    assert res.ok.item() and res.rms.item() < 1e-2
    np.testing.assert_allclose(np.asarray(res.camera.K), np.asarray(K), atol=0.05)
    # k3, k4 act at angles the board never reaches: only k1, k2 are determined
    np.testing.assert_allclose(np.asarray(res.camera.dist)[:2], [0.05, -0.01], atol=2e-3)


def test_calibrate_camera_is_device_safe():
    obj, img, *_ = synthetic_views(num_views=3, noise=0.2, seed=8, rows=3, cols=4, square=0.05)

    def make_args(batch):
        return mx.broadcast_to(obj, (batch, *obj.shape)), mx.broadcast_to(img, (batch, *img.shape))

    def fn(obj, img, max_iters=0):
        return calibrate_camera(obj, img, SIZE, max_iters=max_iters)

    # Compiling the unrolled LM iterations takes minutes on the CPU backend: the compile and
    # batch-size checks run on the initialisation and final linearisation, the graph check on
    # two LM iterations (the loop itself is mlxgeom.solve's, checked there).
    assert_device_safe(fn, make_args)
    assert not graph_primitives(lambda o, i: fn(o, i, 2), *make_args(2)) & CPU_ONLY_PRIMITIVES


def test_compiled_cores_match_the_same_code_eager(monkeypatch):
    # Each LM iteration runs compiled cores (linearization, arrow step, retraction); MLXGEOM_COMPILE=0
    # runs the same code op by op. Fused kernels may reassociate float32 sums: noise-level agreement.
    data = [synthetic_views(num_views=8, noise=0.3, seed=s) for s in (21, 22)]
    obj, img = mx.stack([d[0] for d in data]), mx.stack([d[1] for d in data])
    res = calibrate_camera(obj, img, SIZE, fix=("skew", "k3"))
    monkeypatch.setenv("MLXGEOM_COMPILE", "0")
    ref = calibrate_camera(obj, img, SIZE, fix=("skew", "k3"))
    assert res.ok.tolist() == ref.ok.tolist() == [True, True] and bool(mx.all(ref.std_intrinsics[:, :4] > 0))
    np.testing.assert_allclose(np.asarray(res.camera.K), np.asarray(ref.camera.K), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(res.camera.dist), np.asarray(ref.camera.dist), rtol=1e-2, atol=1e-4)
    np.testing.assert_allclose(np.asarray(res.rms), np.asarray(ref.rms), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(res.view_errors), np.asarray(ref.view_errors), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(res.std_intrinsics), np.asarray(ref.std_intrinsics), rtol=1e-2, atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.poses), np.asarray(ref.poses), atol=1e-4)
