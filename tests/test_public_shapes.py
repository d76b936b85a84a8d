"""Misuse with mismatched batch shapes is refused by mlxgeom's own check, never by MLX's internals.

Every public function of ``lie``, ``linalg``, ``camera``, ``homography``, ``optim`` and ``epipolar``
that takes two or more arrays with batch dimensions, and the solver, bundle adjustment and
calibration front ends, is called with a batch of 2 against a batch of 3 (or with counts that do not
match). The error must be the project's ``ValueError``: by default ``_checks.broadcast_batch``'s
``batch shapes do not broadcast:`` followed by each argument's name and its batch shape, so the
message says which inputs clash. ``test_every_multi_array_function_is_walked`` keeps the list complete.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, NamedTuple

import mlx.core as mx
import pytest

import mlxgeom
from mlxgeom import camera, epipolar, homography, lie, linalg, optim, sfm, solve


def z(*shape: int) -> mx.array:
    return mx.zeros(shape)


def eye(n: int, *batch: int) -> mx.array:
    return mx.broadcast_to(mx.eye(n), (*batch, n, n))


def K(*batch: int) -> mx.array:
    return mx.broadcast_to(mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]), (*batch, 3, 3))


class Case(NamedTuple):
    name: str  # the public name (module.function or Class.method)
    call: Callable[[], Any]
    args: tuple[str, ...]  # the arguments whose batch shapes clash, as the message must name them
    pattern: str = r"batch shapes do not broadcast: "  # the project's message (regex)
    shapes: tuple[str, ...] = ("(2,", "(3,")  # the clashing shapes the message must give


H2 = eye(3, 2)
CASES = [
    # ----- lie: functional core
    Case("lie.so3_compose", lambda: lie.so3_compose(eye(3, 2), eye(3, 3)), ("a", "b")),
    Case("lie.so3_act", lambda: lie.so3_act(eye(3, 2), z(3, 3)), ("R", "p")),
    Case("lie.se3_compose", lambda: lie.se3_compose(eye(4, 2), eye(4, 3)), ("a", "b")),
    Case("lie.se3_act", lambda: lie.se3_act(eye(4, 2), z(3, 3)), ("T", "p")),
    Case("lie.se3_from_rt", lambda: lie.se3_from_rt(eye(3, 2), z(3, 3)), ("R", "t")),
    Case("lie.sl3_compose", lambda: lie.sl3_compose(eye(3, 2), eye(3, 3)), ("a", "b")),
    Case("lie.sl3_act", lambda: lie.sl3_act(eye(3, 2), z(3, 3)), ("H", "p")),
    # ----- lie: classes
    Case("SO3.__matmul__", lambda: lie.SO3(eye(3, 2)) @ lie.SO3(eye(3, 3)), ("a", "b")),
    Case("SE3.__matmul__ (act)", lambda: lie.SE3(eye(4, 2)) @ z(3, 3), ("T", "p")),
    Case("SE3.rminus", lambda: lie.SE3(eye(4, 2)).rminus(lie.SE3(eye(4, 3))), ("x", "other")),
    Case("SE3.rplus", lambda: lie.SE3(eye(4, 2)).rplus(z(3, 6)), ("x", "delta")),
    Case("SL3.interpolate", lambda: lie.SL3.interpolate(lie.SL3(eye(3, 2)), lie.SL3(eye(3, 3)), 0.5), ("a", "b")),
    Case("SE3.from_rt", lambda: lie.SE3.from_rt(lie.SO3(eye(3, 2)), z(3, 3)), ("R", "t")),
    # ----- linalg
    Case("linalg.solve", lambda: linalg.solve(eye(3, 2), z(3, 3)), ("a", "b")),
    Case("linalg.solve_spd", lambda: linalg.solve_spd(eye(5, 2), z(3, 5)), ("a", "b")),
    Case("linalg.solve_spd_ex", lambda: linalg.solve_spd_ex(eye(5, 2), z(3, 5)), ("a", "b")),
    Case("linalg.solve_triangular", lambda: linalg.solve_triangular(eye(3, 2), z(3, 3)), ("a", "b")),
    # ----- camera
    Case("camera.intrinsics_matrix", lambda: camera.intrinsics_matrix(z(2) + 1, z(3) + 1, 0.0, 0.0), ("fx", "fy")),
    Case("camera.scale_intrinsics", lambda: camera.scale_intrinsics(K(2), z(3) + 1), ("K", "sx")),
    Case("camera.crop_intrinsics", lambda: camera.crop_intrinsics(K(2), z(3), 0.0), ("K", "left")),
    Case("camera.Camera", lambda: camera.Camera(K(2), eye(4, 3)), ("K", "pose")),
    Case("Camera.with_pose", lambda: camera.Camera(K(2)).with_pose(eye(4, 3)), ("K", "pose")),
    Case("Camera.scale", lambda: camera.Camera(K(2), size=z(2, 2)).scale(z(3) + 1), ("K", "sx")),
    Case("Camera.crop", lambda: camera.Camera(K(2)).crop(z(3), 0, 4, 4), ("K", "left")),
    # ----- homography
    Case("homography.perspective_transform", lambda: homography.perspective_transform(z(3, 5, 2), H2), ("points", "H")),
    Case("homography.perspective_transform_ex", lambda: homography.perspective_transform_ex(z(3, 5, 2), H2),
         ("points", "H")),
    Case("homography.warp_perspective", lambda: homography.warp_perspective(z(3, 4, 5, 1), H2, (5, 4)), ("images", "H")),
]

# Functions in modules outside lie/*.py, camera/{camera,intrinsics}.py and homography/warp.py.
ROUTED_CASES = [
    Case("linalg.matmul", lambda: linalg.matmul(eye(3, 2), eye(3, 3)), ("a", "b")),
    Case("camera.tilt_matrix", lambda: camera.tilt_matrix(z(2), z(3)), ("tau_x", "tau_y")),
    # The projection core names K, pose and dist together as "camera".
    Case("camera.project_points", lambda: camera.project_points(z(3, 5, 3), K(2)), ("points_world", "camera")),
    Case("camera.project_points_jacobian", lambda: camera.project_points_jacobian(z(3, 5, 3), K(2)),
         ("points_world", "camera")),
    Case("camera.unproject_points", lambda: camera.unproject_points(z(3, 5, 2), z(3, 5), K(2)), ("pixels", "camera")),
    Case("camera.pixel_rays", lambda: camera.pixel_rays(z(3, 5, 2), K(2)), ("pixels", "camera")),
    Case("camera.undistort_points", lambda: camera.undistort_points(z(3, 5, 2), K(2), z(2, 5)), ("pixels", "camera")),
    Case("camera.distort_points", lambda: camera.distort_points(z(3, 5, 2), K(2), z(2, 5)), ("points", "camera")),
    Case("camera.undistort_map", lambda: camera.undistort_map(K(2), z(3, 5), (4, 3)), ("K", "dist")),
    Case("camera.remap", lambda: camera.remap(z(2, 4, 5, 1), z(3, 4, 5, 2)), ("image", "map_uv")),
    Case("camera.undistort_image", lambda: camera.undistort_image(z(3, 4, 5, 1), camera.Camera(K(2))), ("image", "camera")),
    Case("Camera.project", lambda: camera.Camera(K(2)).project(z(3, 5, 3)), ("points_world", "camera")),
    Case("Camera.unproject", lambda: camera.Camera(K(2)).unproject(z(3, 5, 2), z(3, 5)), ("pixels", "camera")),
    Case("Camera.rays", lambda: camera.Camera(K(2)).rays(z(3, 5, 2)), ("pixels", "camera")),
    Case("homography.find_homography", lambda: homography.find_homography(z(2, 8, 2), z(3, 8, 2)), ("src", "dst")),
    Case("homography.homography_from_4_points", lambda: homography.homography_from_4_points(z(2, 4, 2), z(3, 4, 2)),
         ("src", "dst")),
    Case("homography.refine_homography", lambda: homography.refine_homography(H2, z(3, 8, 2), z(3, 8, 2)), ("H", "src")),
    Case("homography.decompose_homography", lambda: homography.decompose_homography(H2, K(3)), ("H", "K")),
    Case("linalg.gauss_newton_system",
         lambda: linalg.gauss_newton_system([[z(2, 4)]], [z(3, 4)], z(2, 4)), ("jacobian", "residual")),
]


def _bundle_with_short_index() -> Any:
    p = sfm.synthetic_problem(3, 8, seed=0)
    return sfm.bundle_adjust(p.cameras, p.poses, p.points, p.observations, point_index=p.point_index,
                             camera_index=p.camera_index[:-1], max_iters=1)


# The solver layer and the front ends built on it.
FRONT_END_CASES = [
    # ----- solve
    Case("solve.levenberg_marquardt", lambda: solve.levenberg_marquardt(lambda x: mx.zeros((3, 4)), z(2, 2)),
         ("x0", "residuals"), r"x0: expected batch shape", ("(3,)", "(2, 2)")),
    Case("solve.normal_equations", lambda: solve.normal_equations(z(2, 5), z(3, 5, 4), z(2, 5)), ("r", "J")),
    # ----- optim
    Case("optim.solve_pnp", lambda: optim.solve_pnp(z(2, 8, 3), z(3, 8, 2), K()), ("points_3d", "pixels")),
    Case("optim.solve_pnp (K)", lambda: optim.solve_pnp(z(2, 8, 3), z(2, 8, 2), K(3)), ("points_3d", "K")),
    Case("optim.solve_pnp (mask)", lambda: optim.solve_pnp(z(2, 8, 3), z(2, 8, 2), K(), mask=mx.ones((3, 8))),
         ("mask",)),
    Case("optim.solve_pnp_ransac", lambda: optim.solve_pnp_ransac(z(2, 8, 3), z(3, 8, 2), K()), ("points_3d", "pixels")),
    Case("optim.refine_pnp", lambda: optim.refine_pnp(eye(4, 2), z(3, 5, 3), z(3, 5, 2), K(), z(3, 5) + 1),
         ("pose", "pw")),
    Case("optim.reprojection_residuals", lambda: optim.reprojection_residuals(eye(4, 2), z(3, 5, 3), z(3, 5, 2), K()),
         ("pose", "pw")),
    # K and poses (*, V) broadcast against pixels (*, N, V): a batch of problems puts its N axis in K.
    Case("optim.triangulate_points", lambda: optim.triangulate_points(K(2, 1, 2), z(3, 5, 2, 2), eye(4, 2, 1, 2)),
         ("K", "pixels")),
    Case("optim.triangulate_points (poses)", lambda: optim.triangulate_points(K(2, 2), z(5, 2, 2), eye(4, 3, 2)),
         ("K", "poses")),
    # ----- epipolar
    Case("epipolar.find_fundamental_matrix", lambda: epipolar.find_fundamental_matrix(z(2, 8, 2), z(3, 8, 2)),
         ("x1", "x2")),
    Case("epipolar.find_essential_matrix", lambda: epipolar.find_essential_matrix(z(2, 8, 2), z(3, 8, 2), K()),
         ("x1", "x2")),
    Case("epipolar.find_essential_matrix (camera)",
         lambda: epipolar.find_essential_matrix(z(2, 8, 2), z(2, 8, 2), K(3)), ("x1", "camera1")),
    Case("epipolar.recover_pose", lambda: epipolar.recover_pose(H2, z(3, 8, 2), z(3, 8, 2), K()), ("E", "x1")),
    Case("epipolar.recover_pose (camera)", lambda: epipolar.recover_pose(H2, z(2, 8, 2), z(2, 8, 2), K(), K(3)),
         ("x2", "camera2")),
    Case("epipolar.recover_pose (mask)",
         lambda: epipolar.recover_pose(H2, z(2, 8, 2), z(2, 8, 2), K(), mask=mx.ones((3, 8))), ("mask",)),
    Case("epipolar.sampson_distance", lambda: epipolar.sampson_distance(H2, z(3, 8, 2), z(3, 8, 2)), ("F", "x1")),
    Case("epipolar.symmetric_epipolar_distance",
         lambda: epipolar.symmetric_epipolar_distance(H2, z(3, 8, 2), z(3, 8, 2)), ("F", "x1")),
    Case("epipolar.epipolar_lines", lambda: epipolar.epipolar_lines(H2, z(3, 8, 2)), ("F", "x")),
    Case("epipolar.correct_matches", lambda: epipolar.correct_matches(H2, z(3, 8, 2), z(3, 8, 2)), ("F", "x1")),
    Case("epipolar.fundamental_from_essential", lambda: epipolar.fundamental_from_essential(H2, K(3), K()),
         ("E", "K1")),
    Case("epipolar.fundamental_from_cameras",
         lambda: epipolar.fundamental_from_cameras(camera.Camera(K(2)), camera.Camera(K(3))), ("camera1", "camera2")),
    Case("epipolar.relative_pose",
         lambda: epipolar.relative_pose(camera.Camera(K(), eye(4, 2)), camera.Camera(K(), eye(4, 3))),
         ("camera1", "camera2")),
    Case("epipolar.stereo_rectify", lambda: epipolar.stereo_rectify(K(2), K(3), eye(4), image_size=[640, 480]),
         ("camera1", "camera2")),
    Case("epipolar.stereo_rectify (pose)", lambda: epipolar.stereo_rectify(K(2), K(2), eye(4, 3), image_size=[640, 480]),
         ("camera1", "pose")),
    # ----- sfm, calibration: counts that do not match
    Case("sfm.bundle_adjust", _bundle_with_short_index, ("camera_index", "point_index", "observations"),
         r"camera_index \(\d+,\), point_index \(\d+,\): expected", ()),
    Case("calibrate_camera", lambda: mlxgeom.calibrate_camera(z(2, 10, 3), z(3, 10, 2), [640, 480]),
         ("object_points", "image_points"), r"image_points: expected"),
]

# One-array functions cannot clash; a wrong matrix shape names the argument and the shape expected.
WRONG_SHAPE_CASES = [
    Case("epipolar.essential_from_pose", lambda: epipolar.essential_from_pose(z(2, 3, 3)), ("pose",),
         r"pose: expected shape \(\*, 4, 4\)", ("(2, 3, 3)",)),
    Case("epipolar.decompose_essential_matrix", lambda: epipolar.decompose_essential_matrix(z(2, 4, 4)), ("E",),
         r"E: expected shape \(\*, 3, 3\)", ("(2, 4, 4)",)),
]


def _assert_own_message(case: Case) -> None:
    with pytest.raises(ValueError) as info:
        mx.eval(case.call())
    msg = str(info.value)
    # MLX's own messages start with the failing primitive in brackets: "[broadcast_shapes] ...".
    assert not msg.startswith("["), f"{case.name}: MLX's message leaks: {msg!r}"
    assert re.search(case.pattern, msg), f"{case.name}: not the project's message: {msg!r}"
    for arg in case.args:
        assert re.search(rf"\b{re.escape(arg)}\b", msg), f"{case.name}: message does not name {arg!r}: {msg!r}"
    for shape in case.shapes:
        assert shape in msg, f"{case.name}: message does not give the shape {shape}: {msg!r}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mismatched_batches_are_refused_with_the_projects_message(case: Case) -> None:
    _assert_own_message(case)


@pytest.mark.parametrize("case", ROUTED_CASES, ids=lambda c: c.name)
def test_mismatched_batches_in_other_modules(case: Case) -> None:
    _assert_own_message(case)


@pytest.mark.parametrize("case", FRONT_END_CASES, ids=lambda c: c.name)
def test_mismatched_batches_in_solvers_and_front_ends(case: Case) -> None:
    _assert_own_message(case)


@pytest.mark.parametrize("case", WRONG_SHAPE_CASES, ids=lambda c: c.name)
def test_wrong_shapes_of_one_array_functions_name_the_expected_shape(case: Case) -> None:
    _assert_own_message(case)


def _array_params(fn: Callable) -> list[str]:
    skip = {"order", "seq", "method", "model", "interpolation", "border", "out_size", "size", "iterations",
            "return_valid", "tol", "min_depth", "sweeps", "k", "oversample", "max_squarings", "fill", "border_value",
            "channels", "threshold", "confidence", "max_trials", "min_inliers", "error", "key", "width", "height",
            "dtype", "camera_angle_x"}
    return [p for p in inspect.signature(fn).parameters if p not in skip]


def test_every_multi_array_function_is_walked() -> None:
    walked = {c.name.split(" ")[0] for c in CASES + ROUTED_CASES + FRONT_END_CASES}
    for mod in (lie, linalg, camera, homography, optim, epipolar):
        name = mod.__name__.split(".")[-1]
        for fn_name in mod.__all__:
            fn = getattr(mod, fn_name)
            # optim re-exports the solver layer's names: those are mlxgeom.solve's, walked there.
            own = getattr(fn, "__module__", "").startswith(mod.__name__)
            if inspect.isfunction(fn) and own and len(_array_params(fn)) >= 2:
                assert f"{name}.{fn_name}" in walked, f"{name}.{fn_name} takes several arrays but is not walked"


@pytest.mark.parametrize("name,call", [
    ("phi", lambda bad: lie.so3_exp(bad)),
    ("a", lambda bad: linalg.inv(bad)),
    ("K", lambda bad: camera.project_points(mx.zeros((1, 3)), bad)),
    ("x1", lambda bad: epipolar.find_fundamental_matrix(bad, mx.zeros((8, 2)))),
    ("points_world", lambda bad: camera.project_points(bad, mx.eye(3))),
], ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("bad", ["abc", None, [[1.0, 2.0], [3.0]]], ids=["str", "None", "ragged"])
def test_non_numeric_inputs_raise_type_errors_naming_the_argument(name: str, call: Callable, bad: Any) -> None:
    with pytest.raises(TypeError, match=rf"^{name}: expected a"):
        call(bad)


def test_nan_threshold_and_fractional_trial_counts_are_refused() -> None:
    x = mx.zeros((10, 2))
    with pytest.raises(ValueError, match="threshold"):
        epipolar.find_fundamental_matrix(x, x, method="ransac", threshold=float("nan"))
    with pytest.raises(ValueError, match="max_trials"):
        epipolar.find_fundamental_matrix(x, x, method="ransac", max_trials=10.5)
