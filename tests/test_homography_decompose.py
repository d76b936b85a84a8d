"""decompose_homography against cv2.decomposeHomographyMat."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest
from helpers import assert_device_safe

from mlxgeom.homography import decompose_homography

K = np.array([[520.0, 0, 320], [0, 510, 240], [0, 0, 1]])


def _plane_homography(rng: np.random.Generator) -> np.ndarray:
    rvec = rng.normal(0, 0.2, 3)
    R, _ = cv2.Rodrigues(rvec)
    t = rng.normal(0, 0.3, 3)
    n = np.array([0, 0, 1.0]) + rng.normal(0, 0.3, 3)
    n /= np.linalg.norm(n)
    d = rng.uniform(2, 5)
    return K @ (R + np.outer(t, n) / d) @ np.linalg.inv(K) * rng.uniform(0.5, 2)


def _as_set(rs, ts, ns):
    return [np.concatenate([np.ravel(r), np.ravel(t), np.ravel(n)]) for r, t, n in zip(rs, ts, ns)]


def test_solutions_match_opencv_up_to_order():
    rng = np.random.default_rng(0)
    hs = np.stack([_plane_homography(rng) for _ in range(6)])
    dec = decompose_homography(mx.array(hs, mx.float32), mx.array(K, mx.float32))
    assert dec.R.shape == (6, 4, 3, 3) and dec.t.shape == (6, 4, 3) and dec.valid.shape == (6, 4)
    for b in range(6):
        num, rs, ts, ns = cv2.decomposeHomographyMat(hs[b], K)
        valid = np.array(dec.valid[b])
        assert valid.sum() == num == 4
        ours = _as_set(np.array(dec.R[b]), np.array(dec.t[b]), np.array(dec.n[b]))
        for ref in _as_set(rs, ts, ns):
            assert min(np.abs(ref - o).max() for o in ours) < 2e-3


def test_rotations_are_proper_and_reproduce_h():
    rng = np.random.default_rng(1)
    h = _plane_homography(rng)
    dec = decompose_homography(h, K)
    hn = np.linalg.inv(K) @ h @ K
    hn /= np.linalg.svd(hn, compute_uv=False)[1]
    for i in range(4):
        r, t, n = (np.array(x[i], np.float64) for x in (dec.R, dec.t, dec.n))
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-4)
        assert abs(np.linalg.det(r) - 1) < 1e-4
        np.testing.assert_allclose(r + np.outer(t, n), hn * np.sign(np.linalg.det(hn)), atol=2e-3)


def test_pure_rotation_gives_one_solution():
    R, _ = cv2.Rodrigues(np.array([0.1, -0.2, 0.05]))
    h = K @ R @ np.linalg.inv(K)
    num, rs, ts, ns = cv2.decomposeHomographyMat(h, K)
    dec = decompose_homography(h, K)
    assert num == 1 and np.array(dec.valid).tolist() == [True, False, False, False]
    np.testing.assert_allclose(np.array(dec.R[0]), rs[0], atol=1e-4)
    assert (np.array(dec.t) == 0).all()


def test_singular_inputs_are_invalid_without_nan():
    dec = decompose_homography(np.stack([np.zeros((3, 3)), np.eye(3)]), np.stack([K, np.zeros((3, 3))]))
    assert not np.array(dec.valid).any()
    for x in dec[:3]:
        assert np.isfinite(np.array(x)).all()


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match=r"\(\*, 3, 3\)"):
        decompose_homography(np.eye(4), K)


def test_decompose_is_device_safe():
    def make(batch):
        rng = np.random.default_rng(batch)
        return mx.array(np.stack([_plane_homography(rng) for _ in range(batch)]), mx.float32), mx.array(K, mx.float32)

    assert_device_safe(lambda h, k: tuple(decompose_homography(h, k)), make)
