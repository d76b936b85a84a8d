"""Robustness campaign for mlxgeom.homography (tests/ROBUSTNESS.md; machinery in test_robustness_harness.py).

Correspondences are built inside the wrapped call (``dst = pi(H src)``) so that the batch, NaN
and gradient checks reach every input through one consistent problem.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import homography
from test_robustness_harness import Arg, Spec, const, define_tests, rotations

N = 12
K0 = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])


def sources(rng, b):
    return np.stack([rng.uniform(0, 640, size=b + (N,)), rng.uniform(0, 480, size=b + (N,))], axis=-1)


def quads(rng, b):
    base = np.array([[50.0, 40.0], [600.0, 60.0], [580.0, 450.0], [30.0, 420.0]])
    return base + rng.uniform(-20, 20, size=b + (4, 2))


def homographies(rng, b):
    h = np.eye(3) + rng.normal(size=b + (3, 3)) * np.array([[0.05, 0.05, 10.0], [0.05, 0.05, 10.0], [1e-5, 1e-5, 0.0]])
    return h


def plane_homographies(rng, b):
    """K (R + t n^T) K^-1 for small motions: decomposable into four distinct solutions."""
    ang = 0.2 * rng.normal(size=b + (3,))
    r = rotations(rng, b) * 0.0 + np.eye(3)
    r[..., 0, 1], r[..., 1, 0] = -ang[..., 2], ang[..., 2]
    r[..., 0, 2], r[..., 2, 0] = ang[..., 1], -ang[..., 1]
    r[..., 1, 2], r[..., 2, 1] = -ang[..., 0], ang[..., 0]
    t = rng.normal(size=b + (3, 1)) * 0.3
    n = np.array([0.1, -0.2, 1.0])[:, None] / np.linalg.norm([0.1, -0.2, 1.0])
    g = r + t @ n.T
    return K0 @ g @ np.linalg.inv(K0)


def _dst(src: mx.array, h: mx.array) -> mx.array:
    return homography.perspective_transform(src, h)


# dst = pi(H src) is rounded to float16 too (0.25 px at 640 px), so results move by ~0.1-1 px / ~1e-2.
LOWP_ATOL = 2.0
SRC, H, QUAD = Arg((None, 2), sources), Arg((3, 3), homographies), Arg((4, 2), quads)
COLLINEAR = np.stack([np.linspace(0, 600, N), np.linspace(10, 400, N)], axis=-1)
QUAD_COLLINEAR = np.array([[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [0.0, 300.0]])
TO_INFINITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, -100.0]])  # w = 0 on the line x = 100



def correspondence_cases(extra: bool = True) -> dict[str, tuple[list, str]]:
    cases = {
        "collinear": ([COLLINEAR], "flagged"),
        "coincident": ([np.array([100.0, 200.0])], "flagged"),
        "singular_H": ([None, np.diag([1.0, 1.0, 0.0])], "flagged"),
    }
    if extra:
        cases["coordinates_1e6"] = ([COLLINEAR * [1.0, -1.0] + 1e6 + np.arange(N)[:, None] ** 2 * [1.0, 0.0]], "any")
    return cases


def _specs() -> list[Spec]:
    ok = lambda r: r.ok  # noqa: E731
    return [
        Spec("find_homography_dlt", lambda s, h: homography.find_homography(s, _dst(s, h)), [SRC, H], mask=ok,
             specials=correspondence_cases()),
        Spec("find_homography_lm", lambda s, h: homography.find_homography(s, _dst(s, h), method="lm", iterations=2),
             [SRC, H], mask=ok, specials=correspondence_cases(extra=False)),
        Spec("find_homography_ransac",
             lambda s, h: homography.find_homography(s, _dst(s, h), method="ransac", max_trials=32, iterations=1, min_inliers=6),
             [SRC, H], mask=ok, specials=correspondence_cases(extra=False), grad=False),
        Spec("find_homography_weights", lambda s, h, w: homography.find_homography(s, _dst(s, h), w),
             [SRC, H, Arg((None,), const(np.ones(N)))], mask=ok,
             specials={"all_weights_zero": ([None, None, np.zeros(N)], "flagged"),
                       "three_weights": ([None, None, (np.arange(N) < 3).astype(float)], "flagged")}),
        Spec("homography_from_4_points", lambda s, h: homography.homography_from_4_points(s, _dst(s, h)), [QUAD, H],
             mask=lambda r: r[1], specials={"collinear": ([QUAD_COLLINEAR], "flagged"),
                                           "coincident": ([np.array([5.0, 5.0])], "flagged"),
                                           "singular_H": ([None, np.diag([1.0, 1.0, 0.0])], "flagged")}),
        Spec("perspective_transform", homography.perspective_transform, [SRC, H],
             specials={"to_infinity": ([np.array([100.0, 5.0]), TO_INFINITY], "any"),
                       "coordinates_1e6": ([np.array([1e6, -1e6])], "valid")}),
        Spec("perspective_transform_3d", homography.perspective_transform,
             [Arg((None, 3), lambda rng, b: rng.normal(size=b + (N, 3))), Arg((4, 4), lambda rng, b: np.eye(4) + 0.05 * rng.normal(size=b + (4, 4)))]),
        Spec("perspective_transform_ex", homography.perspective_transform_ex, [SRC, H], mask=lambda r: r[1],
             specials={"to_infinity": ([np.array([100.0, 5.0]), TO_INFINITY], "flagged")}),
        Spec("refine_homography", lambda h0, s, h: homography.refine_homography(h0, s, _dst(s, h), iterations=2),
             [Arg((3, 3), const(np.eye(3))), SRC, H], mask=lambda r: r[1],
             specials={"collinear": ([None, COLLINEAR], "flagged"), "singular_start": ([np.zeros((3, 3))], "any")}),
        Spec("decompose_homography", homography.decompose_homography, [Arg((3, 3), plane_homographies), Arg((3, 3), const(K0))],
             mask=lambda r: r.valid[..., 0],
             specials={"pure_rotation": ([np.eye(3)], "valid"), "singular_H": ([np.diag([1.0, 1.0, 0.0])], "flagged"),
                       "singular_K": ([None, np.zeros((3, 3))], "flagged")}),
        Spec("warp_perspective", lambda im, h: homography.warp_perspective(im, h, (5, 4)),
             [Arg((None, None, None), lambda rng, b: rng.uniform(size=b + (6, 7, 2))),
              Arg((3, 3), lambda rng, b: np.eye(3) + 0.02 * rng.normal(size=b + (3, 3)))], nan_args=[0],
             specials={"singular_H": ([None, np.zeros((3, 3))], "valid"), "to_infinity": ([None, TO_INFINITY], "valid")}),
    ]


SPECS = _specs()
for _s in SPECS:
    if _s.name.startswith(("find_homography", "refine_homography")):
        _s.lowp_atol = LOWP_ATOL
globals().update(define_tests(SPECS, hypothesis_examples=3))


@pytest.mark.parametrize("method", ["dlt", "lm", "ransac"])
def test_all_outliers_are_not_ok(method):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 640, (2, 40, 2))
    dst = rng.uniform(0, 640, (2, 40, 2))  # no model relates them
    res = homography.find_homography(src, dst, method=method, max_trials=64, min_inliers=12)
    if method == "ransac":
        assert not np.array(res.ok).any()
    assert np.isfinite(np.array(res.H)).all()


@pytest.mark.parametrize("n", [0, 1, 3])
def test_fewer_than_four_points_are_not_ok(n):
    src = np.random.default_rng(1).uniform(0, 100, (2, n, 2))
    res = homography.find_homography(src, src + 1.0)
    assert res.ok.shape == (2,) and not np.array(res.ok).any()
