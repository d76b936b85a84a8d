"""find_homography / refine_homography / homography_from_4_points against OpenCV and float64 references."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from mlxgeom.homography import find_homography, homography_from_4_points, refine_homography
from helpers import FLOAT_DTYPES, assert_device_safe

W_IMG, H_IMG = 640, 480


def _random_h(rng: np.random.Generator) -> np.ndarray:
    return np.array([
        [1 + rng.normal(0, 0.1), rng.normal(0, 0.1), rng.uniform(-50, 50)],
        [rng.normal(0, 0.1), 1 + rng.normal(0, 0.1), rng.uniform(-50, 50)],
        [rng.normal(0, 2e-4), rng.normal(0, 2e-4), 1.0],
    ])


def _pairs(seed: int, pairs: int, n: int, outliers: float, noise: float = 0.5):
    """True H (B, 3, 3), src, dst (B, N, 2) float64 and the true inlier mask (B, N)."""
    rng = np.random.default_rng(seed)
    hs, src, dst, inl = [], [], [], []
    for _ in range(pairs):
        h = _random_h(rng)
        s = rng.uniform(0, [W_IMG, H_IMG], (n, 2))
        d = cv2.perspectiveTransform(s[None], h)[0] + rng.normal(0, noise, (n, 2))
        out = rng.random(n) < outliers
        d[out] = rng.uniform(0, [W_IMG, H_IMG], (out.sum(), 2))
        hs.append(h), src.append(s), dst.append(d), inl.append(~out)
    return np.array(hs), np.array(src), np.array(dst), np.array(inl)


def _mean_error(h: np.ndarray, h_true: np.ndarray, pts: np.ndarray) -> float:
    """Mean distance between the estimated and the true mapping of the true inliers' sources."""
    a = cv2.perspectiveTransform(pts[None], np.asarray(h, np.float64))[0]
    return float(np.linalg.norm(a - cv2.perspectiveTransform(pts[None], h_true)[0], axis=1).mean())


@pytest.mark.parametrize("method", ["dlt", "lm"])
def test_least_squares_fit_matches_opencv_method0(method):
    hs, src, dst, inl = _pairs(0, 6, 150, 0.0)
    res = find_homography(mx.array(src, mx.float32), mx.array(dst, mx.float32), method=method)
    assert np.array(res.ok).all()
    for b in range(len(hs)):
        ref, _ = cv2.findHomography(src[b], dst[b], 0)
        ours = _mean_error(np.array(res.H[b]), hs[b], src[b])
        assert ours <= _mean_error(ref, hs[b], src[b]) + 0.1
    np.testing.assert_allclose(np.array(res.H[..., 2, 2]), 1.0)


@pytest.mark.parametrize("outliers", [0.0, 0.3, 0.6])
def test_ransac_matches_opencv_accuracy_and_recall(outliers):
    hs, src, dst, inl = _pairs(1 + int(outliers * 10), 4, 200, outliers)
    res = find_homography(mx.array(src, mx.float32), mx.array(dst, mx.float32), method="ransac",
                          max_trials=512, key=mx.random.key(3))
    assert np.array(res.ok).all()
    for b in range(len(hs)):
        ref, mask = cv2.findHomography(src[b], dst[b], cv2.RANSAC, 3.0)
        ours = _mean_error(np.array(res.H[b]), hs[b], src[b][inl[b]])
        assert ours <= _mean_error(ref, hs[b], src[b][inl[b]]) + 0.1
        recall = (np.array(res.inliers[b]) & inl[b]).sum() / inl[b].sum()
        recall_cv = (mask[:, 0].astype(bool) & inl[b]).sum() / inl[b].sum()
        assert recall >= recall_cv - 0.01
    assert (np.array(res.num_inliers) == np.array(res.inliers).sum(-1)).all()
    assert (np.array(res.trials) >= 1).all() and (np.array(res.trials) <= 512).all()


def test_ransac_draws_depend_only_on_the_key():
    _, src, dst, _ = _pairs(5, 2, 80, 0.5)
    a = find_homography(src, dst, method="ransac", max_trials=64, key=mx.random.key(7))
    b = find_homography(src, dst, method="ransac", max_trials=64, key=mx.random.key(7))
    np.testing.assert_array_equal(np.array(a.H), np.array(b.H))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_dlt_is_exact_on_noise_free_points(dtype):
    hs, src, dst, _ = _pairs(2, 3, 40, 0.0, noise=0.0)
    res = find_homography(mx.array(src, dtype=dtype), mx.array(dst, dtype=dtype), method="dlt")
    assert res.H.dtype == dtype
    bound = 1e-2 if dtype == mx.float32 else 1e-6
    for b in range(len(hs)):
        assert _mean_error(np.array(res.H[b]).astype(np.float64), hs[b], src[b]) < bound


def _dlt_float64(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """H&Z Alg. 4.2 in float64 with numpy's SVD: the reference for the float32 device DLT."""

    def norm(p):
        c = p.mean(0)
        s = np.sqrt(2) / np.linalg.norm(p - c, axis=1).mean()
        return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])

    ts, td = norm(src), norm(dst)
    x, u = cv2.perspectiveTransform(src[None], ts)[0], cv2.perspectiveTransform(dst[None], td)[0]
    z, o = np.zeros(len(x)), np.ones(len(x))
    a1 = np.stack([x[:, 0], x[:, 1], o, z, z, z, -u[:, 0] * x[:, 0], -u[:, 0] * x[:, 1], -u[:, 0]], 1)
    a2 = np.stack([z, z, z, x[:, 0], x[:, 1], o, -u[:, 1] * x[:, 0], -u[:, 1] * x[:, 1], -u[:, 1]], 1)
    h = np.linalg.svd(np.concatenate([a1, a2]))[2][-1].reshape(3, 3)
    h = np.linalg.inv(td) @ h @ ts
    return h / h[2, 2]


@pytest.mark.parametrize("n", [8, 300])
def test_float32_dlt_matches_float64_svd_dlt(n):
    hs, src, dst, _ = _pairs(11, 6, n, 0.0)
    res = find_homography(mx.array(src, mx.float32), mx.array(dst, mx.float32), method="dlt")
    for b in range(len(hs)):
        assert _mean_error(np.array(res.H[b]), _dlt_float64(src[b], dst[b]), src[b]) < 2e-3


def test_weights_select_points_like_a_subset():
    hs, src, dst, inl = _pairs(3, 1, 60, 0.3)
    w = inl.astype(np.float32)
    full = find_homography(src, dst, w, method="lm")
    sub = find_homography(src[:, inl[0]], dst[:, inl[0]], method="lm")
    np.testing.assert_allclose(np.array(full.H), np.array(sub.H), rtol=1e-3, atol=1e-4)


def test_four_point_solver_matches_get_perspective_transform():
    rng = np.random.default_rng(4)
    src = rng.uniform(0, 500, (6, 4, 2)).astype(np.float32)
    dst = (src + rng.uniform(-60, 60, (6, 4, 2))).astype(np.float32)
    h, ok = homography_from_4_points(src, dst)
    for b in range(6):
        ref = cv2.getPerspectiveTransform(src[b], dst[b])
        if np.array(ok[b]):
            mapped = cv2.perspectiveTransform(src[b][None].astype(np.float64), np.array(h[b], np.float64))[0]
            np.testing.assert_allclose(mapped, dst[b], atol=1e-2)  # float32 on 500 px: ~2e-5 relative
            np.testing.assert_allclose(np.array(h[b]), ref, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("error", ["reprojection", "symmetric"])
def test_refinement_reduces_error_from_a_perturbed_start(error):
    hs, src, dst, _ = _pairs(6, 3, 100, 0.0)
    start = hs @ np.array([[1.01, 0.005, 2.0], [-0.004, 0.99, -1.5], [1e-5, 0, 1]])
    h, ok, rms = refine_homography(mx.array(start, mx.float32), src, dst, error=error, iterations=8)
    assert np.array(ok).all()
    for b in range(3):
        assert _mean_error(np.array(h[b]), hs[b], src[b]) < 0.15
    assert (np.array(rms) < 1.0).all()


def test_adaptive_trial_count_follows_hartley_zisserman():
    _, src, dst, inl = _pairs(7, 1, 300, 0.4, noise=0.1)
    res = find_homography(src, dst, method="ransac", max_trials=256)
    w = np.array(res.num_inliers)[0] / 300
    expected = np.ceil(np.log(1 - 0.995) / np.log(1 - w**4))
    assert abs(int(np.array(res.trials)[0]) - expected) <= 1


def test_degenerate_pairs_are_flagged_without_nan():
    rng = np.random.default_rng(8)
    n = 12
    good_src = rng.uniform(0, 400, (n, 2))
    h = _random_h(rng)
    good_dst = cv2.perspectiveTransform(good_src[None], h)[0]
    t = np.linspace(0, 1, n)[:, None]
    collinear = np.concatenate([t * 300, t * 200 + 5], -1)
    duplicate = np.repeat(good_src[:3], 4, axis=0)
    src = np.stack([good_src, collinear, duplicate, good_src])
    dst = np.stack([good_dst, collinear * 1.1, duplicate + 1, good_dst])
    dst[3, 2] = np.nan  # a NaN point is dropped, the pair stays fine
    w = np.ones((4, n), np.float32)
    for method in ("dlt", "lm", "ransac"):
        res = find_homography(src, dst, w, method=method, max_trials=64, min_inliers=6)
        assert np.array(res.ok).tolist() == [True, False, False, True], method
        for x in (res.H, res.residual):
            assert np.isfinite(np.array(x)).all()
        np.testing.assert_array_equal(np.array(res.H[1]), np.eye(3))
    few = find_homography(src[:, :3], dst[:, :3], method="lm")
    assert not np.array(few.ok).any() and np.isfinite(np.array(few.H)).all()
    w3 = np.zeros((4, n), np.float32)
    w3[:, :3] = 1
    assert not np.array(find_homography(src, dst, w3, method="ransac", max_trials=32).ok).any()


def test_all_outliers_are_not_ok():
    rng = np.random.default_rng(9)
    src = rng.uniform(0, [W_IMG, H_IMG], (3, 300, 2))
    dst = rng.uniform(0, [W_IMG, H_IMG], (3, 300, 2))
    res = find_homography(src, dst, method="ransac", max_trials=256)
    assert not np.array(res.ok).any()
    assert np.isfinite(np.array(res.H)).all()


def test_wrong_shapes_raise_value_error():
    with pytest.raises(ValueError, match=r"\(\*, n, 2\)"):
        find_homography(np.zeros((10, 3)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="N = 10"):
        find_homography(np.zeros((10, 2)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match="weights"):
        find_homography(np.zeros((10, 2)), np.zeros((10, 2)), np.ones(9))
    with pytest.raises(ValueError, match="method"):
        find_homography(np.zeros((10, 2)), np.zeros((10, 2)), method="svd")
    with pytest.raises(ValueError, match=r"\(\*, 4, 2\)"):
        homography_from_4_points(np.zeros((5, 2)), np.zeros((5, 2)))


def test_dlt_gradient_matches_finite_differences():
    hs, src, dst, _ = _pairs(10, 1, 12, 0.0)
    src64, dst64 = mx.array(src[0]).astype(mx.float64), mx.array(dst[0]).astype(mx.float64)
    probe = mx.array(np.random.default_rng(0).normal(size=(3, 3))).astype(mx.float64)

    def f(d):
        return mx.sum(find_homography(src64, d, method="dlt").H * probe)

    g = np.array(mx.grad(f)(dst64))
    assert np.isfinite(g).all()
    eps = 1e-4
    for i, j in ((0, 0), (5, 1), (11, 0)):
        e = np.zeros(dst[0].shape)
        e[i, j] = eps
        num = (f(dst64 + mx.array(e)).item() - f(dst64 - mx.array(e)).item()) / (2 * eps)
        assert abs(num - g[i, j]) <= 1e-4 * max(1.0, abs(num))


@pytest.mark.parametrize("method", ["dlt", "lm", "ransac"])
def test_find_homography_is_device_safe(method):
    def make(batch):
        _, src, dst, _ = _pairs(batch, batch, 40, 0.2)
        return mx.array(src, mx.float32), mx.array(dst, mx.float32)

    def fn(s, d):
        return tuple(find_homography(s, d, method=method, max_trials=32, iterations=3, key=mx.random.key(1)))

    assert_device_safe(fn, make)


def test_four_point_dlt_solves_every_well_posed_set_like_opencv():
    # 4 points leave A (8 x 9) with a second singular value whose square is often below
    # float32's resolution of A^T A: the null vector comes from R of A's QR instead
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 640, (200, 4, 2))
    H = np.eye(3) + rng.normal(0, 0.1, (200, 3, 3)) * [[1, 1, 100], [1, 1, 100], [1e-3, 1e-3, 0]]
    d = np.einsum("bij,bnj->bni", H, np.concatenate([src, np.ones((200, 4, 1))], axis=-1))
    dst = d[..., :2] / d[..., 2:]
    res = find_homography(mx.array(src, dtype=mx.float32), mx.array(dst, dtype=mx.float32), method="dlt")
    assert np.all(np.array(res.ok))
    got = np.einsum("bij,bnj->bni", np.array(res.H, dtype=np.float64), np.concatenate([src, np.ones((200, 4, 1))], -1))
    err = np.abs(got[..., :2] / got[..., 2:] - dst).max()
    ref = max(np.abs(cv2.perspectiveTransform(s[None], cv2.findHomography(s, t, 0)[0])[0] - t).max()
              for s, t in zip(src, dst))
    assert err < 2e-3 and ref < 2e-3
