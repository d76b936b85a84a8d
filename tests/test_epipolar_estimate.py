"""8-, 7- and 5-point estimators against OpenCV (live) and ground truth on synthetic scenes."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest

from mlxgeom.epipolar import find_essential_matrix, find_fundamental_matrix
from mlxgeom.epipolar.five_point import five_point
from helpers import assert_device_safe

K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])


def skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def scene(rng: np.random.Generator, n: int, noise: float = 0.0, outliers: float = 0.0, planar: bool = False):
    """Pixels x1, x2 (n, 2) of random points seen by two cameras, the true (R, t) (unit t) and inlier mask."""
    R, _ = cv2.Rodrigues(rng.normal(0, 0.15, 3))
    t = rng.normal(0, 1, 3)
    t /= np.linalg.norm(t)
    X = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], (n, 3))
    if planar:
        X[:, 2] = 6 + 0.3 * X[:, 0] - 0.2 * X[:, 1]
    X2 = X @ R.T + t
    x1 = (X / X[:, 2:]) @ K.T
    x2 = (X2 / X2[:, 2:]) @ K.T
    x1, x2 = x1[:, :2] + rng.normal(0, noise, (n, 2)), x2[:, :2] + rng.normal(0, noise, (n, 2))
    out = rng.random(n) < outliers
    x2[out] = rng.uniform(0, [640, 480], (out.sum(), 2))
    return x1, x2, R, t, ~out


def canonical(m: np.ndarray) -> np.ndarray:
    """Unit Frobenius norm, largest-magnitude entry positive (the library's representative)."""
    m = m / np.linalg.norm(m)
    return m * np.sign(m.flat[np.argmax(np.abs(m))])


def true_f(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    kinv = np.linalg.inv(K)
    return canonical(kinv.T @ skew(t) @ R @ kinv)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float64])
@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_eight_point_matches_opencv_fm_8point(noise, dtype):
    # OpenCV rounds the points to float32 first: 1e-3 covers that for both dtypes
    rng = np.random.default_rng(0)
    for _ in range(4):
        x1, x2, *_ = scene(rng, 60, noise)
        res = find_fundamental_matrix(mx.array(x1, dtype), mx.array(x2, dtype), method="8point")
        ref, _ = cv2.findFundamentalMat(x1, x2, cv2.FM_8POINT)
        assert res.ok.item()
        np.testing.assert_allclose(np.array(res.F), canonical(ref), atol=1e-3)
        assert abs(np.linalg.det(np.array(res.F, np.float64))) < 1e-6


@pytest.mark.float64
def test_eight_point_float64_recovers_the_true_f_noise_free():
    x1, x2, R, t, _ = scene(np.random.default_rng(1), 30)
    res = find_fundamental_matrix(mx.array(x1, mx.float64), mx.array(x2, mx.float64))
    np.testing.assert_allclose(np.array(res.F), true_f(R, t), atol=1e-10)
    assert res.residual.item() < 1e-8


def _sampson(f: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Sampson distances (N,) of pixels under F, in float64."""
    h1, h2 = np.c_[x1, np.ones(len(x1))], np.c_[x2, np.ones(len(x2))]
    g1, g2 = h1 @ f.T, h2 @ f
    return np.abs(np.sum(h2 * g1, 1)) / np.sqrt(g1[:, 0] ** 2 + g1[:, 1] ** 2 + g2[:, 0] ** 2 + g2[:, 1] ** 2)


def _minimal_eight_point_problems(seed: int, count: int, n: int):
    """Noise-free pixels (count, n, 2) of the probe's scenes (small rotation, mostly sideways baseline) and true F."""
    rng = np.random.default_rng(seed)
    t = np.array([0.3, 0.05, 0.02])
    x1, x2, fs = [], [], []
    for _ in range(count):
        X = np.c_[rng.uniform(-2, 2, (n, 2)), rng.uniform(4, 8, n)]
        R, _ = cv2.Rodrigues(rng.normal(0, 0.06, 3))
        X2 = X @ R.T + t
        x1.append(((X / X[:, 2:]) @ K.T)[:, :2]), x2.append(((X2 / X2[:, 2:]) @ K.T)[:, :2]), fs.append(true_f(R, t))
    return np.array(x1), np.array(x2), np.array(fs)


@pytest.mark.parametrize("n", [8, 9])
def test_eight_point_with_minimal_points_is_accurate_in_float32_like_opencv(n):
    # sigma_8 of the 8 rows is often ~1e-4 |A|: the normal matrix (eps cond^2) rejected or got wrong ~20 %
    x1, x2, fs = _minimal_eight_point_problems(11, 300, n)
    res = find_fundamental_matrix(mx.array(x1, mx.float32), mx.array(x2, mx.float32), method="8point")
    ok = np.array(res.ok)

    def err(f: np.ndarray) -> np.ndarray:  # unit-norm F up to sign
        f = canonical(f) if f.ndim == 2 else f
        return np.minimum(np.linalg.norm(f - fs, axis=(-2, -1)), np.linalg.norm(f + fs, axis=(-2, -1)))

    # OpenCV rounds the points to float32 too, so its error stands for the problem's conditioning
    ref = np.array([err(cv2.findFundamentalMat(a, b, cv2.FM_8POINT)[0])[i] for i, (a, b) in enumerate(zip(x1, x2))])
    assert ok.mean() >= 0.99
    assert np.all((err(np.array(res.F, np.float64)) < np.maximum(1e-2, 2 * ref))[ok])


def test_seven_point_returns_the_candidates_of_opencv_fm_7point():
    rng = np.random.default_rng(2)
    for _ in range(10):
        x1, x2, *_ = scene(rng, 7)
        res = find_fundamental_matrix(mx.array(x1, mx.float32), mx.array(x2, mx.float32), method="7point")
        assert res.F.shape == (3, 3, 3) and res.ok.shape == (3,) and res.inliers.shape == (3, 7)
        ref, _ = cv2.findFundamentalMat(x1, x2, cv2.FM_7POINT)
        refs = [canonical(f) for f in ref.reshape(-1, 3, 3)]
        ours = [canonical(np.array(f, np.float64)) for f, ok in zip(np.array(res.F), np.array(res.ok)) if ok]
        assert len(ours) == len(refs)
        for f in refs:
            assert min(np.abs(f - g).max() for g in ours) < 1e-3
        assert np.array(res.num_inliers)[np.array(res.ok)].min() == 7


def _seven_point_reference(x1: np.ndarray, x2: np.ndarray) -> list[np.ndarray]:
    """Float64 seven-point candidates: Hartley normalisation, SVD null space, numpy's cubic roots."""
    def hartley(x):
        c = x.mean(0)
        s = np.sqrt(2) / np.linalg.norm(x - c, axis=1).mean()
        return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])

    t1, t2 = hartley(x1), hartley(x2)
    h1, h2 = np.c_[x1, np.ones(7)] @ t1.T, np.c_[x2, np.ones(7)] @ t2.T
    f1, f2 = np.linalg.svd((h2[:, :, None] * h1[:, None, :]).reshape(7, 9))[2][7:].reshape(2, 3, 3)
    cubic = np.polyfit([-1.0, 0.0, 1.0, 2.0], [np.linalg.det(f1 + a * f2) for a in (-1.0, 0.0, 1.0, 2.0)], 3)
    return [canonical(t2.T @ (f1 + a.real * f2) @ t1) for a in np.roots(cubic) if abs(a.imag) < 1e-9 * max(1, abs(a))]


@pytest.mark.float64
def test_seven_point_float64_matches_a_numpy_reference_to_1e_10():
    rng = np.random.default_rng(15)
    x1, x2 = np.array([scene(rng, 7)[:2] for _ in range(100)]).transpose(1, 0, 2, 3)
    res = find_fundamental_matrix(mx.array(x1, mx.float64), mx.array(x2, mx.float64), method="7point")
    for f, ok, a, b in zip(np.array(res.F), np.array(res.ok), x1, x2):
        refs = _seven_point_reference(a, b)
        assert ok.sum() == len(refs)
        for g in f[ok]:
            assert min(min(np.abs(g - r).max(), np.abs(g + r).max()) for r in refs) < 1e-10


def test_seven_point_float32_far_from_the_origin_is_at_the_float32_representation_floor():
    # +1e4 px: F's entries span |x|^2 : |x| : 1, so even the float64 F rounded to float32 keeps the
    # constraint only to ~eps |x|^2 / spread px; the solver adds no more than a small factor to that
    rng = np.random.default_rng(16)
    x1, x2 = np.array([scene(rng, 7)[:2] for _ in range(200)]).transpose(1, 0, 2, 3) + 1e4
    res = find_fundamental_matrix(mx.array(x1, mx.float32), mx.array(x2, mx.float32), method="7point")
    ours, floor = [], []
    for f, ok, a, b in zip(np.array(res.F, np.float64), np.array(res.ok), x1, x2):
        ours += [_sampson(g, a, b).max() for g in f[ok]]
        floor += [_sampson(r.astype(np.float32).astype(np.float64), a, b).max() for r in _seven_point_reference(a, b)]
    assert len(ours) >= 0.98 * len(floor)
    for q in (0.5, 0.9):
        assert np.quantile(ours, q) < 3 * np.quantile(floor, q)


def test_seven_point_needs_exactly_seven_points():
    with pytest.raises(ValueError, match="7point"):
        find_fundamental_matrix(mx.zeros((8, 2)), mx.zeros((8, 2)), method="7point")


def test_degenerate_fundamental_inputs_give_ok_false_with_finite_placeholders():
    rng = np.random.default_rng(3)
    good = scene(rng, 20)
    planar = scene(rng, 20, planar=True)
    few = [a.copy() for a in scene(rng, 20)]
    nan = [a.copy() for a in scene(rng, 20)]
    nan[0][:14] = np.nan  # 6 usable points left
    x1 = mx.array(np.stack([good[0], planar[0], few[0], nan[0]]), mx.float32)
    x2 = mx.array(np.stack([good[1], planar[1], few[1], nan[1]]), mx.float32)
    w = mx.array(np.stack([np.ones(20), np.ones(20), np.r_[np.ones(7), np.zeros(13)], np.ones(20)]), mx.float32)
    res = find_fundamental_matrix(x1, x2, w)
    assert np.array(res.ok).tolist() == [True, False, False, False]
    assert np.isfinite(np.array(res.F)).all() and np.isfinite(np.array(res.residual)).all()
    np.testing.assert_array_equal(np.array(res.F[1:]), np.broadcast_to(np.eye(3), (3, 3, 3)))
    alone = find_fundamental_matrix(x1[0], x2[0])
    np.testing.assert_allclose(np.array(res.F[0]), np.array(alone.F), atol=1e-6)


def test_zero_weight_equals_dropping_the_point():
    x1, x2, *_ = scene(np.random.default_rng(4), 40, 0.5)
    w = np.ones(40)
    w[::3] = 0
    a = find_fundamental_matrix(mx.array(x1, mx.float32), mx.array(x2, mx.float32), mx.array(w, mx.float32))
    b = find_fundamental_matrix(mx.array(x1[w > 0], mx.float32), mx.array(x2[w > 0], mx.float32))
    np.testing.assert_allclose(np.array(a.F), np.array(b.F), atol=1e-5)


@pytest.mark.float64
def test_eight_point_gradient_matches_finite_differences():
    x1, x2, *_ = scene(np.random.default_rng(5), 12, 0.5)
    a = mx.array(x1, mx.float64)
    probe = mx.array(np.random.default_rng(6).standard_normal((3, 3)), mx.float64)

    def loss(b):
        return mx.sum(find_fundamental_matrix(a, b).F * probe)

    b0 = mx.array(x2, mx.float64)
    g = np.array(mx.grad(loss)(b0))
    h, num = 1e-5, np.zeros_like(x2)
    for i in range(x2.shape[0]):
        for j in range(2):
            d = np.zeros_like(x2)
            d[i, j] = h
            num[i, j] = (loss(mx.array(x2 + d, mx.float64)).item() - loss(mx.array(x2 - d, mx.float64)).item()) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-8)


def _five_point_problems(seed: int, count: int):
    rng = np.random.default_rng(seed)
    y1, y2, es = [], [], []
    for _ in range(count):
        X = rng.uniform([-2, -2, 4], [2, 2, 8], (5, 3))
        R, _ = cv2.Rodrigues(rng.normal(0, 0.3, 3))
        t = rng.normal(0, 1, 3)
        t /= np.linalg.norm(t)
        X2 = X @ R.T + t
        y1.append(X[:, :2] / X[:, 2:]), y2.append(X2[:, :2] / X2[:, 2:]), es.append(canonical(skew(t) @ R))
    return np.array(y1), np.array(y2), np.array(es)


def _angle_to_truth(cands: np.ndarray, ok: np.ndarray, e_true: np.ndarray) -> np.ndarray:
    """Smallest angle (rad) between the unit 9-vectors of the valid candidates and the true E, per problem."""
    cos = np.abs(np.einsum("bkij,bij->bk", cands, e_true)) / np.linalg.norm(cands.reshape(*cands.shape[:2], 9), axis=-1).clip(1e-30)
    return np.where(ok, np.arccos(np.clip(cos, 0, 1)), np.inf).min(-1)


def test_five_point_finds_the_true_e_in_99_percent_of_float32_problems():
    y1, y2, es = _five_point_problems(7, 1000)
    e, ok = five_point(mx.array(y1, mx.float32), mx.array(y2, mx.float32))
    assert e.shape == (1000, 10, 3, 3) and ok.shape == (1000, 10)
    assert np.isfinite(np.array(e)).all()
    angle = _angle_to_truth(np.array(e, np.float64), np.array(ok), es)
    assert np.mean(angle < np.deg2rad(0.1)) >= 0.99


def test_five_point_candidates_contain_those_of_opencv_find_essential_mat():
    rng = np.random.default_rng(8)
    matched, total = 0, 0
    for _ in range(10):
        x1, x2, R, t, _ = scene(rng, 5)
        res = find_essential_matrix(mx.array(x1, mx.float32), mx.array(x2, mx.float32), mx.array(K, mx.float32),
                                    method="5point")
        ref, _ = cv2.findEssentialMat(x1, x2, K, method=cv2.RANSAC)
        ours = np.array(res.E, np.float64)[np.array(res.ok)]
        for e in ref.reshape(-1, 3, 3):
            matched += min(np.abs(canonical(e) - canonical(g)).max() for g in ours) < 2e-3
            total += 1
        best = min(np.abs(canonical(skew(t) @ R) - canonical(g)).max() for g in ours)
        assert best < 2e-3
        assert np.array(res.residual)[np.array(res.ok)].min() < 1e-2
    # near-double roots (two solutions 0.02 apart) may polish onto one: OpenCV's set, up to those
    assert matched >= 0.95 * total


def test_essential_honours_lens_distortion():
    from mlxgeom.camera import Camera

    x1, x2, R, t, _ = scene(np.random.default_rng(9), 5)
    dist = np.array([-0.2, 0.05, 0.001, -0.0005])
    cam = Camera(mx.array(K, mx.float32), dist=mx.array(dist, mx.float32))
    # distort the ideal pixels with OpenCV, then let the estimator undo it
    def distort(x):
        y = (np.c_[x, np.ones(len(x))] @ np.linalg.inv(K).T)
        return cv2.projectPoints(np.c_[y[:, :2], np.ones(len(x))], np.zeros(3), np.zeros(3), K, dist)[0][:, 0]
    res = find_essential_matrix(mx.array(distort(x1), mx.float32), mx.array(distort(x2), mx.float32), cam,
                                method="5point")
    ours = np.array(res.E, np.float64)[np.array(res.ok)]
    assert min(np.abs(canonical(skew(t) @ R) - canonical(g)).max() for g in ours) < 2e-3


def test_five_point_gradients_are_finite():
    y1, y2, _ = _five_point_problems(10, 4)
    b = mx.array(y2, mx.float32)
    g = mx.grad(lambda v: mx.sum(mx.where(five_point(mx.array(y1, mx.float32), v)[1][..., None, None],
                                          five_point(mx.array(y1, mx.float32), v)[0], 0) ** 3))(b)
    assert np.isfinite(np.array(g)).all() and np.abs(np.array(g)).max() > 0


def test_minimal_and_eight_point_paths_are_device_safe():
    rng = np.random.default_rng(11)

    def make(n):
        def build(batch):
            pairs = [scene(rng, n, 0.3) for _ in range(batch)]
            return [mx.array(np.stack([p[0] for p in pairs]), mx.float32), mx.array(np.stack([p[1] for p in pairs]), mx.float32)]
        return build

    assert_device_safe(lambda a, b: find_fundamental_matrix(a, b), make(12))
    assert_device_safe(lambda a, b: find_fundamental_matrix(a, b, method="7point"), make(7))
    kk = mx.array(K, mx.float32)
    assert_device_safe(lambda a, b: find_essential_matrix(a, b, kk, method="5point"), make(5))
