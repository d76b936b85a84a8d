"""find_essential_matrix / find_fundamental_matrix RANSAC against OpenCV, pycolmap and PoseLib (live)."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from mlxgeom.epipolar import find_essential_matrix, find_fundamental_matrix, recover_pose
from helpers import assert_device_safe
from test_epipolar_estimate import K, scene, skew

PAIRS, POINTS = 6, 200
# (outlier ratio, RANSAC samples): enough samples for 0.99 confidence at each ratio
LEVELS = [(0.0, 32), (0.3, 128), (0.6, 512)]


def rot_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))))


def dir_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b), 0, 1))))


@pytest.fixture(scope="module", params=LEVELS, ids=[f"outliers{o}" for o, _ in LEVELS])
def essential_run(request):
    outliers, trials = request.param
    rng = np.random.default_rng(int(outliers * 10) + 20)
    scenes = [scene(rng, POINTS, 0.5, outliers) for _ in range(PAIRS)]
    x1 = np.stack([s[0] for s in scenes])
    x2 = np.stack([s[1] for s in scenes])
    a, b, k = mx.array(x1, mx.float32), mx.array(x2, mx.float32), mx.array(K, mx.float32)
    res = find_essential_matrix(a, b, k, max_trials=trials)
    pose = np.array(recover_pose(res.E, a, b, k, mask=res.inliers).pose)
    ours = [(rot_err(pose[i, :3, :3], s[2]), dir_err(pose[i, :3, 3], s[3])) for i, s in enumerate(scenes)]
    return dict(x1=x1, x2=x2, scenes=scenes, res=res, ours=np.array(ours))


def _medians(errors) -> np.ndarray:
    return np.median(np.array(errors), axis=0)


def test_essential_ransac_is_no_worse_than_opencv(essential_run):
    run = essential_run
    ref = []
    for i, s in enumerate(run["scenes"]):
        E, m = cv2.findEssentialMat(run["x1"][i], run["x2"][i], K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
        _, R, t, _ = cv2.recoverPose(E[:3], run["x1"][i], run["x2"][i], K, mask=m)
        ref.append((rot_err(R, s[2]), dir_err(t[:, 0], s[3])))
    ours, cv = _medians(run["ours"]), _medians(ref)
    assert np.array(run["res"].ok).all()
    assert ours[0] <= cv[0] and ours[1] <= cv[1], (ours, cv)


def test_essential_ransac_inliers_recall_the_true_inliers(essential_run):
    run = essential_run
    inl = np.array(run["res"].inliers)
    truth = np.stack([s[4] for s in run["scenes"]])
    assert (inl & truth).sum() >= 0.9 * truth.sum()
    assert (inl & ~truth).sum() <= 0.05 * max(1, (~truth).sum()) + 2 * PAIRS


def test_essential_ransac_is_close_to_pycolmap(essential_run):
    pycolmap = pytest.importorskip("pycolmap")
    run = essential_run
    cam = pycolmap.Camera(model="PINHOLE", width=640, height=480, params=[500, 500, 320, 240])
    ref = []
    for i, s in enumerate(run["scenes"]):
        c = pycolmap.estimate_essential_matrix(run["x1"][i], run["x2"][i], cam, cam)["cam2_from_cam1"]
        ref.append((rot_err(c.rotation.matrix(), s[2]), dir_err(np.array(c.translation), s[3])))
    ours, theirs = _medians(run["ours"]), _medians(ref)
    # LO-RANSAC with a robust final bundle adjustment: within 3x (and 0.2 deg) of it
    assert (ours <= 3 * theirs + 0.2).all(), (ours, theirs)


def test_essential_ransac_is_close_to_poselib(essential_run):
    poselib = pytest.importorskip("poselib")
    run = essential_run
    cam = {"model": "PINHOLE", "width": 640, "height": 480, "params": [500, 500, 320, 240]}
    ref = []
    for i, s in enumerate(run["scenes"]):
        p, _ = poselib.estimate_relative_pose(run["x1"][i], run["x2"][i], cam, cam, {"max_epipolar_error": 1.0}, {})
        ref.append((rot_err(p.R, s[2]), dir_err(p.t, s[3])))
    ours, theirs = _medians(run["ours"]), _medians(ref)
    assert (ours <= 3 * theirs + 0.2).all(), (ours, theirs)


def _f_error(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> float:
    """RMS symmetric epipolar distance (pixels) of noise-free correspondences under F."""
    h1, h2 = np.c_[x1, np.ones(len(x1))], np.c_[x2, np.ones(len(x2))]
    l2, l1 = h1 @ F.T, h2 @ F
    e = np.sum(h2 * l2, -1)
    d = e**2 * (1 / (l2[:, 0] ** 2 + l2[:, 1] ** 2) + 1 / (l1[:, 0] ** 2 + l1[:, 1] ** 2))
    return float(np.sqrt(d.mean()))


@pytest.mark.parametrize("outliers, trials", [(0.2, 256), (0.5, 1024)])
def test_fundamental_ransac_is_no_worse_than_opencv_and_close_to_poselib(outliers, trials):
    rng = np.random.default_rng(30 + int(10 * outliers))
    scenes, clean = [], []
    for _ in range(PAIRS):
        state = rng.bit_generator.state
        scenes.append(scene(rng, POINTS, 0.5, outliers))
        rng2 = np.random.default_rng()
        rng2.bit_generator.state = state
        clean.append(scene(rng2, POINTS, 0.0, outliers))  # the same points without noise
    x1 = np.stack([s[0] for s in scenes])
    x2 = np.stack([s[1] for s in scenes])
    res = find_fundamental_matrix(mx.array(x1, mx.float32), mx.array(x2, mx.float32), method="ransac", threshold=1.0,
                                  max_trials=trials)
    assert np.array(res.ok).all()
    ours, cv, pl = [], [], []
    poselib = pytest.importorskip("poselib")
    for i in range(PAIRS):
        c1, c2, inl = clean[i][0][clean[i][4]], clean[i][1][clean[i][4]], clean[i][4]
        ours.append(_f_error(np.array(res.F[i], np.float64), c1, c2))
        F, _ = cv2.findFundamentalMat(x1[i], x2[i], cv2.FM_RANSAC, 1.0, 0.999)
        cv.append(_f_error(F[:3], c1, c2))
        Fp, _ = poselib.estimate_fundamental(x1[i], x2[i], {"max_epipolar_error": 1.0}, {})
        pl.append(_f_error(Fp, c1, c2))
        assert inl.sum() > 0
    assert np.median(ours) <= np.median(cv), (ours, cv)
    assert np.median(ours) <= 3 * np.median(pl) + 0.2, (ours, pl)


def test_many_matches_take_the_preemptive_path_and_stay_no_worse_than_opencv():
    # 1000 matches: hypotheses are ranked on 32 random points before the full scoring
    rng = np.random.default_rng(43)
    scenes = [scene(rng, 1000, 0.5, 0.5) for _ in range(4)]
    x1 = mx.array(np.stack([s[0] for s in scenes]), mx.float32)
    x2 = mx.array(np.stack([s[1] for s in scenes]), mx.float32)
    k = mx.array(K, mx.float32)
    res = find_essential_matrix(x1, x2, k, max_trials=256)
    pose = np.array(recover_pose(res.E, x1, x2, k, mask=res.inliers).pose)
    assert np.array(res.ok).all()
    ours, ref = [], []
    for i, s in enumerate(scenes):
        E, m = cv2.findEssentialMat(s[0], s[1], K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
        _, R, t, _ = cv2.recoverPose(E[:3], s[0], s[1], K, mask=m)
        ours.append((rot_err(pose[i, :3, :3], s[2]), dir_err(pose[i, :3, 3], s[3])))
        ref.append((rot_err(R, s[2]), dir_err(t[:, 0], s[3])))
    assert (_medians(ours) <= _medians(ref)).all(), (ours, ref)
    fres = find_fundamental_matrix(x1, x2, method="ransac", threshold=1.0, max_trials=1024)
    inl, truth = np.array(fres.inliers), np.stack([s[4] for s in scenes])
    assert np.array(fres.ok).all() and (inl & truth).sum() >= 0.9 * truth.sum()
    assert (inl & ~truth).sum() <= 0.05 * (~truth).sum()


def test_unusable_pairs_are_not_ok_and_finite():
    rng = np.random.default_rng(40)
    good = scene(rng, 100, 0.5)
    junk = (rng.uniform(0, 640, (100, 2)), rng.uniform(0, 640, (100, 2)))
    nan = [a.copy() for a in scene(rng, 100, 0.5)]
    nan[0][:] = np.nan
    x1 = mx.array(np.stack([good[0], junk[0], nan[0]]), mx.float32)
    x2 = mx.array(np.stack([good[1], junk[1], nan[1]]), mx.float32)
    for res, m in ((find_essential_matrix(x1, x2, mx.array(K, mx.float32), max_trials=64), "E"),
                   (find_fundamental_matrix(x1, x2, method="ransac", threshold=1.0, max_trials=64), "F")):
        assert np.array(res.ok).tolist() == [True, False, False], m
        assert np.isfinite(np.array(getattr(res, m))).all() and np.isfinite(np.array(res.residual)).all()


def test_ransac_paths_are_device_safe():
    rng = np.random.default_rng(41)

    def build(batch):
        pairs = [scene(rng, 60, 0.3, 0.2) for _ in range(batch)]
        return [mx.array(np.stack([p[0] for p in pairs]), mx.float32), mx.array(np.stack([p[1] for p in pairs]), mx.float32)]

    k = mx.array(K, mx.float32)

    def sign_free(res):
        # F and E are defined up to sign; where two entries tie for the largest magnitude the canonical
        # sign may differ between the eager and the compiled rounding, so compare m m^T entries
        m = res[0].reshape(*res[0].shape[:-2], 9)
        return (m[..., :, None] * m[..., None, :],) + tuple(res[1:])

    assert_device_safe(lambda a, b: sign_free(find_essential_matrix(a, b, k, max_trials=8, key=mx.random.key(1))), build)
    assert_device_safe(lambda a, b: sign_free(find_fundamental_matrix(a, b, method="ransac", max_trials=8,
                                                                      key=mx.random.key(1))), build)


def test_gradients_flow_through_the_refinement():
    x1, x2, R, t, _ = scene(np.random.default_rng(42), 40, 0.3)
    a, k = mx.array(x1, mx.float32), mx.array(K, mx.float32)
    probe = mx.array(canonical_probe := skew(t) @ R, mx.float32)

    def loss(b):
        return mx.sum(find_essential_matrix(a, b, k, max_trials=16).E * probe)

    g = np.array(mx.grad(loss)(mx.array(x2, mx.float32)))
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    assert canonical_probe.shape == (3, 3)


@pytest.mark.float64
def test_fundamental_ransac_gradient_matches_finite_differences():
    """Through the refit on a stable inlier set; outliers (points 1 and 2) get none."""
    x1, x2, *_ = scene(np.random.default_rng(7), 40, 0.5, 0.25)
    a = mx.array(x1, mx.float64)
    probe = mx.array(np.random.default_rng(8).standard_normal((3, 3)), mx.float64)

    def loss(b):
        return mx.sum(find_fundamental_matrix(a, b, method="ransac", max_trials=64).F * probe)

    g = np.array(mx.grad(loss)(mx.array(x2, mx.float64)))[:6]
    h, num = 1e-6, np.zeros((6, 2))
    for i in range(6):
        for j in range(2):
            d = np.zeros_like(x2)
            d[i, j] = h
            num[i, j] = (loss(mx.array(x2 + d, mx.float64)).item() - loss(mx.array(x2 - d, mx.float64)).item()) / (2 * h)
    assert (num[1:3] == 0).all() and (np.abs(num[[0, 3, 4, 5]]) > 1e-5).all()
    np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-8)
