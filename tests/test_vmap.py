"""mx.vmap over public functions equals the batched call (every function takes leading batch axes),
for in_axes/out_axes 0 and 1, unmapped arguments, under mx.compile and through gradients, in float32."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import camera, epipolar, homography, lie, linalg, optim

B0, B1 = 3, 4  # two leading batch axes; vmap maps one of them
_K = mx.array([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])


def _normal(*shape: int, seed: int = 0) -> mx.array:
    return mx.array(np.random.default_rng(seed).normal(size=(B0, B1, *shape)).astype(np.float32))


def _spd(n: int, seed: int = 0) -> mx.array:
    m = _normal(n, n, seed=seed)
    return m @ m.swapaxes(-1, -2) + 0.5 * mx.eye(n)


def _well_conditioned(n: int, seed: int = 0) -> mx.array:
    return mx.eye(n) + 0.3 * _normal(n, n, seed=seed)


def _pnp_scene() -> tuple[mx.array, mx.array]:
    rng = np.random.default_rng(3)
    pw = rng.uniform(-1, 1, size=(B0, B1, 12, 3)) * [2.0, 1.5, 1.5]
    t = rng.normal(size=(B0, B1, 1, 3)) * 0.3 + [0.0, 0.0, 6.0]
    pc = pw @ np.linalg.qr(rng.normal(size=(B0, B1, 3, 3)))[0] + t
    pc[..., 2] = np.abs(pc[..., 2])
    uv = pc[..., :2] / pc[..., 2:] * [500.0, 480.0] + [320.0, 240.0] + rng.normal(0, 0.5, size=(B0, B1, 12, 2))
    return mx.array(pw.astype(np.float32)), mx.array(uv.astype(np.float32))


def _two_views() -> tuple[mx.array, mx.array]:
    rng = np.random.default_rng(4)
    x = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], size=(B0, B1, 20, 3))
    x2 = x + rng.normal(0, 0.5, size=(B0, B1, 1, 3)) + [0.3, 0.0, 0.0]
    k = np.array(_K)
    p1, p2 = (x / x[..., 2:]) @ k.T, (x2 / x2[..., 2:]) @ k.T
    return (mx.array(p1[..., :2].astype(np.float32)),
            mx.array((p2[..., :2] + rng.normal(0, 0.3, size=p2[..., :2].shape)).astype(np.float32)))


def _rotations(seed: int = 0) -> mx.array:
    return lie.so3_exp(_normal(3, seed=seed))


def _poses(seed: int = 0) -> mx.array:
    return lie.se3_exp(0.5 * _normal(6, seed=seed))


def _homography_pair() -> tuple[mx.array, mx.array]:
    """A shared (one problem's) 3x3 grid of plane points and its images under per-problem homographies."""
    rng = np.random.default_rng(5)
    src = np.stack(np.meshgrid(np.linspace(-1, 1, 3), np.linspace(-1, 1, 3)), -1).reshape(9, 2) * 100 + 300
    h = np.eye(3) + rng.normal(0, [[0.05, 0.05, 5], [0.05, 0.05, 5], [1e-4, 1e-4, 0]], size=(B0, B1, 3, 3))
    dst = np.concatenate([src, np.ones((9, 1))], -1) @ h.swapaxes(-1, -2)
    dst = dst[..., :2] / dst[..., 2:] + rng.normal(0, 0.3, size=dst[..., :2].shape)
    return mx.array(src.astype(np.float32)), mx.array(dst.astype(np.float32))


def _views_of_points() -> tuple[mx.array, mx.array]:
    """Per-problem pixels of one point in three shared views (identity and two translated cameras)."""
    rng = np.random.default_rng(6)
    x = rng.uniform([-1, -1, 4], [1, 1, 8], size=(B0, B1, 1, 3))
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[1, :3, 3], poses[2, :3, 3] = [-0.5, 0.0, 0.0], [0.0, -0.4, 0.1]
    pc = x + poses[:, :3, 3]
    uv = (pc[..., :2] / pc[..., 2:]) @ np.diag([500.0, 480.0]) + [320.0, 240.0] + rng.normal(0, 0.3, size=pc[..., :2].shape)
    return mx.array(uv.astype(np.float32)), mx.array(poses.astype(np.float32))


_DIST = mx.array([-0.2, 0.05, 1e-3, -1e-3, 0.01])  # one shared OpenCV distortion
_FISHEYE = mx.array([0.05, -0.01, 2e-3, -1e-3])


def _pixels(*shape: int, seed: int = 0) -> mx.array:
    return mx.array(np.random.default_rng(seed).uniform([20, 20], [620, 460], size=(B0, B1, *shape, 2)).astype(np.float32))


def _essential() -> mx.array:
    """The essential matrices of :func:`_two_views` (camera 2 is camera 1 translated by t)."""
    rng = np.random.default_rng(4)
    rng.uniform([-2, -1.5, 4], [2, 1.5, 8], size=(B0, B1, 20, 3))
    t = rng.normal(0, 0.5, size=(B0, B1, 3)) + [0.3, 0.0, 0.0]
    pose = np.tile(np.eye(4), (B0, B1, 1, 1))
    pose[..., :3, 3] = t
    return epipolar.essential_from_pose(mx.array(pose.astype(np.float32)))


def _outputs(result) -> tuple[mx.array, ...]:
    """The array outputs of a result (an array, a tuple or a NamedTuple)."""
    return (result,) if isinstance(result, mx.array) else tuple(o for o in result if isinstance(o, mx.array))


# name: (function of arrays returning an array or a tuple of arrays, its arguments with batch (B0, B1),
#        which arguments are mapped (the others are one problem's, shared by the whole batch))
CASES = {
    "det": (linalg.det, lambda: (_well_conditioned(3),), (True,)),
    "inv": (linalg.inv, lambda: (_well_conditioned(4),), (True,)),
    "inv_ex": (linalg.inv_ex, lambda: (_well_conditioned(3),), (True,)),
    "solve": (linalg.solve, lambda: (_well_conditioned(3), _normal(3, 2, seed=1)), (True, True)),
    "solve_shared_matrix": (linalg.solve, lambda: (_well_conditioned(3)[0, 0], _normal(3, 2, seed=1)), (False, True)),
    "solve_spd": (linalg.solve_spd, lambda: (_spd(5), _normal(5, 1, seed=1)), (True, True)),
    "solve_spd_shared_matrix": (linalg.solve_spd, lambda: (_spd(5)[0, 0], _normal(5, 1, seed=1)), (False, True)),
    "solve_spd_ex": (linalg.solve_spd_ex, lambda: (_spd(4), _normal(4, 2, seed=1)), (True, True)),
    "solve_triangular": (lambda a, b: linalg.solve_triangular(mx.tril(a), b),
                         lambda: (_well_conditioned(4), _normal(4, 1, seed=1)), (True, True)),
    "eigh": (linalg.eigh, lambda: (_spd(3),), (True,)),
    "eigh_n6": (linalg.eigh, lambda: (_spd(6),), (True,)),
    "eigh3": (linalg.eigh3, lambda: (_spd(3),), (True,)),
    "eigh_smallest": (lambda a: linalg.eigh_smallest(a, k=2), lambda: (_spd(6),), (True,)),
    "svd3": (linalg.svd3, lambda: (_normal(3, 3),), (True,)),
    "project_to_so3": (linalg.project_to_so3, lambda: (_normal(3, 3),), (True,)),
    "matrix_exp": (linalg.matrix_exp, lambda: (0.5 * _normal(4, 4),), (True,)),
    "qr": (linalg.qr, lambda: (_normal(6, 3),), (True,)),
    "matmul": (linalg.matmul, lambda: (_normal(3, 4), _normal(4, 2, seed=1)), (True, True)),
    "gauss_newton_system": (lambda j0, j1, r, w: linalg.gauss_newton_system([[j0, j1]], [r], w),
                            lambda: (_normal(7), _normal(7, seed=1), _normal(7, seed=2), mx.abs(_normal(7, seed=3))),
                            (True, True, True, True)),
    "solve_pnp": (lambda pw, uv, k: optim.solve_pnp(pw, uv, k), lambda: (*_pnp_scene(), _K), (True, True, False)),
    "solve_pnp_dlt": (lambda pw, uv, k: optim.solve_pnp(pw, uv, k, method="dlt"), lambda: (*_pnp_scene(), _K),
                      (True, True, False)),
    "find_fundamental_matrix": (epipolar.find_fundamental_matrix, _two_views, (True, True)),
    "find_fundamental_matrix_7point": (lambda a, b: epipolar.find_fundamental_matrix(a[..., :7, :], b[..., :7, :],
                                                                                      method="7point"),
                                       _two_views, (True, True)),
    "find_essential_matrix_5point": (lambda a, b, k: epipolar.find_essential_matrix(a[..., :5, :], b[..., :5, :], k,
                                                                                    method="5point"),
                                     lambda: (*_two_views(), _K), (True, True, False)),
    "recover_pose": (lambda e, a, b, k: epipolar.recover_pose(e, a, b, k),
                     lambda: (_essential(), *_two_views(), _K), (True, True, True, False)),
    "correct_matches": (lambda f, a, b: epipolar.correct_matches(f, a, b),
                        lambda: (epipolar.find_fundamental_matrix(*_two_views()).F, *_two_views()), (True, True, True)),
    "find_homography_shared_src": (lambda s, d: homography.find_homography(s, d), _homography_pair, (False, True)),
    "find_homography_lm_shared_src": (lambda s, d: homography.find_homography(s, d, method="lm"), _homography_pair,
                                      (False, True)),
    "triangulate_points_shared_views": (lambda uv, poses, k: optim.triangulate_points(k, uv, poses),
                                        lambda: (*_views_of_points(), _K), (True, False, False)),
    "so3_exp": (lie.so3_exp, lambda: (2.0 * _normal(3),), (True,)),
    "so3_log": (lie.so3_log, lambda: (_rotations(),), (True,)),
    "so3_act_shared_rotation": (lie.so3_act, lambda: (_rotations()[0, 0], _normal(5, 3, seed=1)), (False, True)),
    "se3_exp": (lie.se3_exp, lambda: (_normal(6),), (True,)),
    "se3_log": (lie.se3_log, lambda: (_poses(),), (True,)),
    "se3_act_shared_points": (lie.se3_act, lambda: (_poses(), _normal(3, seed=1)[0, 0]), (True, False)),
    "sl3_exp": (lie.sl3_exp, lambda: (0.3 * _normal(8),), (True,)),
    "sl3_log": (lie.sl3_log, lambda: (lie.sl3_exp(0.3 * _normal(8)),), (True,)),
    "sl3_act_shared_points": (lie.sl3_act, lambda: (lie.sl3_exp(0.3 * _normal(8)), _normal(3, seed=1)[0, 0]),
                              (True, False)),
    "project_points_shared_camera": (lambda x, k, d: camera.project_points(x, k, dist=d),
                                     lambda: (_normal(6, 3) + mx.array([0.0, 0.0, 3.0]), _K, _DIST),
                                     (True, False, False)),
    "project_points_fisheye": (lambda x, k, d: camera.project_points(x, k, dist=d, model="fisheye"),
                               lambda: (_normal(6, 3) + mx.array([0.0, 0.0, 3.0]), _K, _FISHEYE),
                               (True, False, False)),
    "project_points_shared_points": (lambda x, pose, k: camera.project_points(x, k, pose),
                                     lambda: (_normal(6, 3)[0, 0] + mx.array([0.0, 0.0, 3.0]), _poses(), _K),
                                     (False, True, False)),
    # with a pose: without one, points and points_cam are one array, and MLX's vmap moves the mapped axis of
    # only the first of two identical outputs (0.32.4: mx.vmap(lambda x: (x, x), in_axes=1)(a)[1] is a)
    "unproject_points_shared_camera": (lambda uv, z, k, pose, d: camera.unproject_points(uv, z, k, pose, d,
                                                                                         return_valid=True),
                                       lambda: (_pixels(6), mx.abs(_normal(6)) + 1.0, _K, _poses()[0, 0], _DIST),
                                       (True, True, False, False, False)),
    "undistort_points_shared_camera": (lambda uv, k, d: camera.undistort_points(uv, k, d),
                                       lambda: (_pixels(6), _K, _DIST), (True, False, False)),
    "undistort_points_fisheye": (lambda uv, k, d: camera.undistort_points(uv, k, d, model="fisheye"),
                                 lambda: (_pixels(6), _K, _FISHEYE), (True, False, False)),
    "distort_points_shared_camera": (lambda x, k, d: camera.distort_points(x, k, d),
                                     lambda: (0.5 * _normal(6, 2), _K, _DIST), (True, False, False)),
}
# Cores with hand-written derivative rules, differentiated through vmap and vmapped through mx.grad.
DIFFERENTIABLE = ["det", "inv", "solve_spd", "solve_spd_shared_matrix", "eigh", "eigh_n6", "eigh_smallest", "svd3",
                  "project_to_so3", "matrix_exp"]


def _vmapped(name: str, in_axis: int, out_axis: int):
    fn, _, mapped = CASES[name]
    in_axes = tuple(in_axis if m else None for m in mapped)
    return mx.vmap(lambda *a: _outputs(fn(*a)), in_axes=in_axes, out_axes=out_axis)


def _assert_same(got, want, in_axis: int, out_axis: int) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = mx.moveaxis(w, in_axis, out_axis)
        assert g.shape == w.shape and g.dtype == w.dtype
        if w.dtype == mx.bool_ or not mx.issubdtype(w.dtype, mx.floating):
            np.testing.assert_array_equal(np.array(g), np.array(w))
        else:
            scale = max(float(mx.max(mx.abs(w))), 1.0)
            np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-4, atol=1e-5 * scale)


AXES = [(0, 0), (1, 1), (1, 0)]


@pytest.mark.parametrize("in_axis,out_axis", AXES)
@pytest.mark.parametrize("name", CASES)
def test_vmap_equals_the_batched_call(name, in_axis, out_axis):
    fn, make, _ = CASES[name]
    args = make()
    want = _outputs(fn(*args))
    for _ in range(2):  # wrong results from out-of-bounds reads vary from run to run
        _assert_same(_vmapped(name, in_axis, out_axis)(*args), want, in_axis, out_axis)


@pytest.mark.parametrize("name", ["eigh", "svd3", "solve_spd_shared_matrix", "solve_pnp", "find_homography_shared_src",
                                  "undistort_points_shared_camera", "triangulate_points_shared_views"])
def test_vmap_under_compile_equals_the_batched_call_at_two_batch_sizes(name):
    fn, make, mapped = CASES[name]
    compiled = mx.compile(_vmapped(name, 1, 1))
    for stop in (2, B1):
        args = tuple(a[:, :stop] if m else a for a, m in zip(make(), mapped))
        _assert_same(compiled(*args), _outputs(fn(*args)), 1, 1)


def _loss(fn):
    return lambda *a: sum(mx.sum(mx.sin(o)) for o in _outputs(fn(*a)) if mx.issubdtype(o.dtype, mx.floating))


@pytest.mark.parametrize("in_axis", [0, 1])
@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradient_through_vmap_and_vmap_of_gradient_equal_the_batched_gradient(name, in_axis):
    fn, make, mapped = CASES[name]
    args = make()
    argnums = tuple(range(len(args)))
    want = mx.grad(_loss(fn), argnums=argnums)(*args)
    through = mx.grad(_loss(_vmapped(name, in_axis, 0)), argnums=argnums)(*args)
    in_axes = tuple(in_axis if m else None for m in mapped)
    per_problem = mx.vmap(mx.grad(_loss(fn), argnums=argnums), in_axes=in_axes, out_axes=in_axis)(*args)
    for g, v, w, m in zip(through, per_problem, want, mapped):
        assert bool(mx.all(mx.isfinite(w)))
        np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-4, atol=1e-4)
        # an unmapped argument's per-problem gradients come back stacked along the mapped axis
        v = v if m else mx.sum(v, axis=in_axis)
        np.testing.assert_allclose(np.array(v), np.array(w), rtol=1e-4, atol=1e-4)


# Where library code may use & / | / ^: on numpy arrays, Python ints or integer bit patterns, never on mx boolean masks.
_BITWISE_ALLOWED = {
    ("camera/_colmap_files.py", "_replace_all"),  # file-mode bits
    ("camera/_colmap_records.py", "_ints"), ("camera/_colmap_records.py", "_check_points"),  # numpy
    ("camera/colmap.py", "*"),  # numpy
    ("camera/distortion.py", "_zero_unless"),  # float bits as ints
    ("linalg/inverse.py", "_scaled_entries"),  # exponent bits as ints
    ("demo.py", "save_overlays"), ("demo.py", "save_heatmaps"),  # numpy (image drawing)
}


def test_library_masks_are_combined_without_bitwise_operators():
    """MLX's vmap of & / | / ^ does not broadcast (mlxgeom/_vmap.py): boolean masks use all_of / any_of."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "mlxgeom"
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text())
        annotations = {id(m) for n in ast.walk(tree) for a in ("annotation", "returns")
                       if getattr(n, a, None) is not None for m in ast.walk(getattr(n, a))}

        def visit(node, func):
            for child in ast.iter_child_nodes(node):
                name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
                op = getattr(child, "op", None)
                if (isinstance(child, (ast.BinOp, ast.AugAssign)) and isinstance(op, (ast.BitAnd, ast.BitOr, ast.BitXor))
                        and id(child) not in annotations and (rel, name) not in _BITWISE_ALLOWED
                        and (rel, "*") not in _BITWISE_ALLOWED):
                    found.append(f"{rel}:{child.lineno} ({name})")
                visit(child, name)

        visit(tree, "<module>")
    assert not found, found
