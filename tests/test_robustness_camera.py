"""Robustness campaign for mlxgeom.camera (tests/ROBUSTNESS.md; machinery in test_robustness_harness.py).

colmap (file I/O on the host) is outside this table: its readers are exercised by test_camera_colmap.py.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import camera
from test_robustness_harness import Arg, Spec, const, define_tests, intrinsics, normal, poses, uniform

N = 5


def points_in_front(rng, b):
    p = rng.uniform(-1, 1, size=b + (N, 3))
    p[..., 2] = rng.uniform(3, 6, size=b + (N,))
    return p


def camera_poses(rng, b):
    """Small rotations and translations, so that points_in_front stay in front."""
    t = poses(rng, b)
    ang = 0.1 * rng.normal(size=b + (3,))
    c, s = np.cos(ang[..., 0]), np.sin(ang[..., 0])
    t[..., :3, :3] = 0.0
    t[..., 0, 0], t[..., 1, 1], t[..., 2, 2] = 1.0, c, c
    t[..., 1, 2], t[..., 2, 1] = -s, s
    t[..., :3, 3] = 0.1 * rng.normal(size=b + (3,))
    return t


def pixels(rng, b):
    return np.stack([rng.uniform(100, 500, size=b + (N,)), rng.uniform(100, 400, size=b + (N,))], axis=-1)


def depths(rng, b):
    return rng.uniform(1, 5, size=b + (N,))


DIST5 = const([0.05, -0.01, 0.001, -0.001, 0.002])
FISH4 = const([0.02, -0.01, 0.002, -0.001])
PTS, K, POSE = Arg((None, 3), points_in_front), Arg((3, 3), intrinsics), Arg((4, 4), camera_poses)
PIX, DEPTH = Arg((None, 2), pixels), Arg((None,), depths)


def K_with(f: float) -> np.ndarray:
    return np.array([[f, 0.0, 320.0], [0.0, f, 240.0], [0.0, 0.0, 1.0]])


def point_cases() -> dict[str, tuple[list, str]]:
    """Specials for the points argument (entry 1 of the batch holds N copies)."""
    return {
        "z_zero": ([np.array([0.5, 0.5, 0.0])], "flagged"),
        "behind_camera": ([np.array([0.5, 0.5, -2.0])], "flagged"),
        "coordinates_1e6": ([np.array([1e6, -1e6, 2e6])], "valid"),
        "origin": ([np.zeros(3)], "flagged"),
    }


def focal_cases(k_index: int, nargs: int, distorted_pixels: bool = False) -> dict[str, tuple[list, str]]:
    """Focal lengths 1e-3 .. 1e6 px (valid) and 0 / negative (flagged).

    With ``distorted_pixels`` (undistortion of pixels 100 px off-centre) focal lengths of
    1e-3 and 1 px put the points 1e2 to 1e5 focal lengths off-axis, beyond any lens model: the
    Newton solve may then report non-convergence, so those entries may be flagged.
    """
    cases = {}
    for f in (1e-3, 1.0, 1e6):
        args = [None] * nargs
        args[k_index] = K_with(f)
        cases[f"focal_{f:g}"] = (args, "any" if distorted_pixels and f < 10 else "valid")
    for name, f in (("focal_zero", 0.0), ("focal_negative", -100.0)):
        args = [None] * nargs
        args[k_index] = K_with(f)
        cases[name] = (args, "flagged")
    return cases


def _projection_specs() -> list[Spec]:
    proj_mask = lambda r: r.valid  # noqa: E731
    specs = []
    for label, fn in [("project_points", camera.project_points), ("project_points_jacobian", camera.project_points_jacobian)]:
        specs += [
            Spec(f"{label}", lambda p, k, f=fn: f(p, k), [PTS, K], mask=proj_mask,
                 specials=point_cases() | focal_cases(1, 2)),
            Spec(f"{label}_pose_dist5", lambda p, k, t, d, f=fn: f(p, k, t, d), [PTS, K, POSE, Arg((5,), DIST5)],
                 mask=proj_mask, specials=point_cases() | focal_cases(1, 4)),
            Spec(f"{label}_fisheye", lambda p, k, d, f=fn: f(p, k, dist=d, model="fisheye"), [PTS, K, Arg((4,), FISH4)],
                 mask=proj_mask, specials=point_cases() | focal_cases(1, 3)),
        ]
    return specs


def _unprojection_specs() -> list[Spec]:
    und_mask = lambda r: r[1]  # noqa: E731
    pix_cases = {"pixel_1e6": ([np.array([1e6, -1e6])], "any"), "principal_point": ([np.array([320.0, 240.0])], "any")}
    return [
        Spec("unproject_points", lambda p, z, k: camera.unproject_points(p, z, k, return_valid=True), [PIX, DEPTH, K],
             mask=lambda r: r.valid, specials=focal_cases(2, 3) | {"depth_zero": ([None, np.zeros(N)], "valid"),
                                                                  "depth_1e6": ([None, np.full(N, 1e6)], "valid")}),
        Spec("unproject_points_pose_dist5", lambda p, z, k, t, d: camera.unproject_points(p, z, k, t, d, return_valid=True),
             [PIX, DEPTH, K, POSE, Arg((5,), DIST5)], mask=lambda r: r.valid, specials=focal_cases(2, 5, distorted_pixels=True)),
        Spec("undistort_points_dist5", camera.undistort_points, [PIX, K, Arg((5,), DIST5)], mask=und_mask,
             specials=focal_cases(1, 3, distorted_pixels=True) | pix_cases),
        Spec("undistort_points_fisheye", lambda p, k, d: camera.undistort_points(p, k, d, model="fisheye"),
             [PIX, K, Arg((4,), FISH4)], mask=und_mask, specials=focal_cases(1, 3, distorted_pixels=True) | pix_cases),
        Spec("undistort_points_K_new", lambda p, k, d, kn: camera.undistort_points(p, k, d, K_new=kn),
             [PIX, K, Arg((5,), DIST5), K], mask=und_mask),
        Spec("distort_points_dist5", camera.distort_points, [Arg((None, 2), normal(N, 2, scale=0.2)), K, Arg((5,), DIST5)],
             mask=und_mask, specials=focal_cases(1, 3) | {"huge_1e6": ([np.array([1e6, 1e6])], "any")}),
        Spec("distort_points_fisheye", lambda p, k, d: camera.distort_points(p, k, d, model="fisheye"),
             [Arg((None, 2), normal(N, 2, scale=0.2)), K, Arg((4,), FISH4)], mask=und_mask,
             specials={"zero": ([np.zeros(2)], "valid"), "huge_1e6": ([np.array([1e6, 1e6])], "any")}),
        Spec("pixel_rays", lambda p, k, t: camera.pixel_rays(p, k, t, return_valid=True), [PIX, K, POSE],
             mask=lambda r: r.valid, specials=focal_cases(1, 3)),
    ]


def _intrinsics_specs() -> list[Spec]:
    scalar = Arg((), uniform(lo=100, hi=500))
    c2w = Arg((4, 4), poses)
    return [
        Spec("intrinsics_matrix", camera.intrinsics_matrix, [scalar, scalar, scalar, scalar, Arg((), uniform(lo=-1, hi=1))]),
        Spec("intrinsics_inverse", camera.intrinsics_inverse, [K],
             specials={"focal_1e-3": ([K_with(1e-3)], "valid"), "focal_1e6": ([K_with(1e6)], "valid"),
                       "focal_zero": ([K_with(0.0)], "flagged")}),
        Spec("crop_intrinsics", camera.crop_intrinsics, [K, scalar, scalar]),
        Spec("scale_intrinsics", camera.scale_intrinsics, [K, Arg((), uniform(lo=0.1, hi=3)), Arg((), uniform(lo=0.1, hi=3))]),
        Spec("nerf_intrinsics", lambda a: camera.nerf_intrinsics(a, 64, 48), [Arg((), uniform(lo=0.3, hi=2.5))],
             specials={"angle_pi": ([np.pi], "any"), "angle_zero": ([0.0], "any")}),
        Spec("tilt_matrix", camera.tilt_matrix, [Arg((), uniform()), Arg((), uniform())]),
        Spec("opencv_to_opengl_c2w", camera.opencv_to_opengl_c2w, [c2w]),
        Spec("opengl_to_opencv_c2w", camera.opengl_to_opencv_c2w, [c2w]),
        Spec("pose_from_opengl_c2w", camera.pose_from_opengl_c2w, [c2w]),
        Spec("pose_to_opengl_c2w", camera.pose_to_opengl_c2w, [c2w]),
    ]


def images(rng, b):
    return rng.uniform(0, 1, size=b + (6, 7, 2))


def maps(rng, b):
    return np.stack([rng.uniform(-2, 8, size=b + (3, 4)), rng.uniform(-2, 7, size=b + (3, 4))], axis=-1)


def _image_specs() -> list[Spec]:
    small_k = Arg((3, 3), const(K_with(5.0) * [[1, 1, 0.01], [1, 1, 0.01], [1, 1, 1]]))
    return [
        # A non-finite map coordinate is outside the image: it samples the fill value (cv2.remap).
        Spec("remap", camera.remap, [Arg((None, None, None), images), Arg((None, None, 2), maps)], nan_args=[0],
             specials={"map_1e6": ([None, np.full(2, 1e6)], "valid"), "map_nan": ([None, np.full(2, np.nan)], "valid"),
                       "map_inf": ([None, np.full(2, -np.inf)], "valid")}),
        Spec("undistort_map", lambda k, d: camera.undistort_map(k, d, (4, 3)), [small_k, Arg((5,), DIST5)],
             mask=lambda r: r[1]),
        Spec("undistort_image", lambda im, k, d: camera.undistort_image(im, camera.Camera(k, dist=d)),
             [Arg((None, None, None), images), small_k, Arg((5,), DIST5)], nan_must_show=False),
    ]


def _class_specs() -> list[Spec]:
    cam = lambda k, t, d: camera.Camera(k, t, d)  # noqa: E731
    return [
        Spec("Camera.project", lambda k, t, d, p: cam(k, t, d).project(p), [K, POSE, Arg((5,), DIST5), PTS],
             mask=lambda r: r.valid, specials=focal_cases(0, 4)),
        Spec("Camera.unproject", lambda k, t, p, z: cam(k, t, None).unproject(p, z, return_valid=True),
             [K, POSE, PIX, DEPTH], mask=lambda r: r.valid),
        Spec("Camera.rays", lambda k, t, p: cam(k, t, None).rays(p, return_valid=True), [K, POSE, PIX], mask=lambda r: r.valid),
        Spec("Camera.K_inv", lambda k: camera.Camera(k).K_inv, [K]),
        # center reads the pose only: K neither broadcasts into it nor poisons it.
        Spec("Camera.center", lambda k, t: camera.Camera(k, t).center, [K, POSE], broadcast=False, nan_args=[1]),
        Spec("Camera.scale", lambda k, s: camera.Camera(k).scale(s).K, [K, Arg((), uniform(lo=0.1, hi=3))]),
        Spec("FisheyeCamera.project", lambda k, d, p: camera.FisheyeCamera(k, dist=d).project(p),
             [K, Arg((4,), FISH4), PTS], mask=lambda r: r.valid),
    ]


SPECS = _projection_specs() + _unprojection_specs() + _intrinsics_specs() + _image_specs() + _class_specs()
globals().update(define_tests(SPECS, hypothesis_examples=4))


@pytest.mark.parametrize("height,width", [(0, 3), (3, 0), (1, 1), (2, 5)])
def test_pixel_grid_shapes_including_empty(height, width):
    g = camera.pixel_grid(height, width)
    assert g.shape == (height, width, 2) and g.dtype == mx.float32


@pytest.mark.parametrize("height,width", [(-1, 3), (2.5, 3), (3, "4")])
def test_pixel_grid_rejects_non_sizes(height, width):
    with pytest.raises((ValueError, TypeError)):
        camera.pixel_grid(height, width)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16, mx.float64])
def test_pixel_grid_dtypes(dtype):
    assert camera.pixel_grid(2, 3, dtype).dtype == dtype


@pytest.mark.parametrize("k", [3, 6, 9, 15])
def test_unsupported_distortion_coefficient_counts_raise(k):
    with pytest.raises(ValueError, match="expected|expects"):
        camera.project_points(np.ones((2, 3)), K_with(100.0), dist=np.zeros(k))


def test_unknown_model_raises():
    with pytest.raises(ValueError, match="expected"):
        camera.project_points(np.ones((2, 3)), K_with(100.0), model="kannala")
