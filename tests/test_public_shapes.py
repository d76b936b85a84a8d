"""Misuse with mismatched batch shapes is refused by mlxgeom's own check, never by MLX's internals.

Every public function of ``lie``, ``linalg``, ``camera`` and ``homography`` that takes two or more
arrays with batch dimensions is called with a batch of 2 against a batch of 3. The error must be
the project's ``ValueError`` from ``_checks.broadcast_batch``: ``batch shapes do not broadcast:``
followed by each argument's name and its batch shape, so the message says which inputs clash.
``test_every_multi_array_function_is_walked`` keeps the list complete.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, NamedTuple

import mlx.core as mx
import pytest

from mlxgeom import camera, homography, lie, linalg


def z(*shape: int) -> mx.array:
    return mx.zeros(shape)


def eye(n: int, *batch: int) -> mx.array:
    return mx.broadcast_to(mx.eye(n), (*batch, n, n))


def K(*batch: int) -> mx.array:
    return mx.broadcast_to(mx.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]), (*batch, 3, 3))


class Case(NamedTuple):
    name: str  # the public name (module.function or Class.method)
    call: Callable[[], Any]
    args: tuple[str, str]  # the two arguments whose batch shapes clash, as the message must name them


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

_OWN = re.compile(r"batch shapes do not broadcast: ")


def _assert_own_message(case: Case) -> None:
    with pytest.raises(ValueError) as info:
        mx.eval(case.call())
    msg = str(info.value)
    assert _OWN.search(msg), f"{case.name}: not the project's message: {msg!r}"
    for arg in case.args:
        assert re.search(rf"\b{re.escape(arg)}\b", msg), f"{case.name}: message does not name {arg!r}: {msg!r}"
    assert "(2," in msg and "(3," in msg, f"{case.name}: message does not give both batch shapes: {msg!r}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mismatched_batches_are_refused_with_the_projects_message(case: Case) -> None:
    _assert_own_message(case)


@pytest.mark.parametrize("case", ROUTED_CASES, ids=lambda c: c.name)
def test_mismatched_batches_in_other_modules(case: Case) -> None:
    _assert_own_message(case)


def _array_params(fn: Callable) -> list[str]:
    skip = {"order", "seq", "method", "model", "interpolation", "border", "out_size", "size", "iterations",
            "return_valid", "tol", "min_depth", "sweeps", "k", "oversample", "max_squarings", "fill", "border_value",
            "channels", "threshold", "confidence", "max_trials", "min_inliers", "error", "key", "width", "height",
            "dtype", "camera_angle_x"}
    return [p for p in inspect.signature(fn).parameters if p not in skip]


def test_every_multi_array_function_is_walked() -> None:
    walked = {c.name.split(" ")[0] for c in CASES + ROUTED_CASES}
    for mod in (lie, linalg, camera, homography):
        name = mod.__name__.split(".")[-1]
        for fn_name in mod.__all__:
            fn = getattr(mod, fn_name)
            if inspect.isfunction(fn) and len(_array_params(fn)) >= 2:
                assert f"{name}.{fn_name}" in walked, f"{name}.{fn_name} takes several arrays but is not walked"
