"""Bundle adjustment: parity with pycolmap's bundle_adjustment, gauge, robustness, solvers."""

import os
import tempfile

import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import lie
from mlxgeom.camera import Camera, colmap
from mlxgeom.sfm import bundle_adjust, bundle_adjust_model, model_problem, problem_to_model, synthetic_problem

SCENE = os.path.join(os.path.dirname(__file__), "..", "data", "scene", "sparse")


def _cost(model):
    """0.5 sum ||r||^2 of a model, by the same projection core (bundle_adjust with no iteration)."""
    return float(bundle_adjust_model(model, max_iters=0)[1].initial_cost.item())


def _pycolmap_ba(model, refine_intrinsics):
    pycolmap = pytest.importorskip("pycolmap")
    with tempfile.TemporaryDirectory() as d:
        colmap.write_model(model, os.path.join(d, "in"))
        rec = pycolmap.Reconstruction(os.path.join(d, "in"))
        opts = pycolmap.BundleAdjustmentOptions()
        opts.refine_focal_length = opts.refine_extra_params = refine_intrinsics
        opts.print_summary = False
        pycolmap.bundle_adjustment(rec, opts)
        os.makedirs(os.path.join(d, "out"))
        rec.write(os.path.join(d, "out"))
        return colmap.read_model(os.path.join(d, "out"))


def _align(a, b):
    """b's points after the least-squares similarity that maps them onto a (Umeyama 1991)."""
    ma, mb = a.mean(0), b.mean(0)
    u, s, vt = np.linalg.svd((a - ma).T @ (b - mb))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / np.sum((b - mb) ** 2)
    return scale * (b - mb) @ r.T + ma


def _compare(model, refine_intrinsics, **options):
    ours, res = bundle_adjust_model(model, refine_intrinsics=refine_intrinsics, **options)
    theirs = _pycolmap_ba(model, refine_intrinsics)
    c_ours, c_theirs, c0 = _cost(ours), _cost(theirs), _cost(model)
    assert c_ours <= 1.01 * c_theirs + 1e-6, (c_ours, c_theirs, c0)
    ids = sorted(model.points3D)
    a = np.array([ours.points3D[i].xyz for i in ids])
    b = np.array([theirs.points3D[i].xyz for i in ids])
    return res, c_ours, c_theirs, c0, np.abs(_align(a, b) - a).max()


def _synthetic_model(cams=12, points=1000, seed=0, dist=None, colmap_model=None, focal_error=0.0):
    p = synthetic_problem(cams, points, 4.0, noise=0.5, seed=seed, dist=dist)
    first = p.cameras.select(0)
    shared = Camera(first.K * mx.array([[1 + focal_error], [1 + focal_error], [1.0]]), dist=first.dist, size=first.size)
    return p, problem_to_model(shared, p.poses, p.points, p.observations, p.camera_index, p.point_index,
                               colmap_model=colmap_model)


def test_final_cost_within_one_percent_of_pycolmap_poses_and_points():
    _, model = _synthetic_model()
    res, ours, theirs, start, gap = _compare(model, False)
    assert ours < 0.05 * start and bool(res.ok)
    assert gap < 5e-4  # both reach the same minimum: far inside the 0.02 start perturbation


def test_refined_shared_intrinsics_match_pycolmap():
    p, model = _synthetic_model(cams=10, points=800, seed=1, dist=(0.05, 0, 0, 0), colmap_model="SIMPLE_RADIAL",
                                focal_error=0.02)
    res, ours, theirs, start, gap = _compare(model, True)
    assert len(res.cameras.K) == 1  # one COLMAP camera stays one camera
    assert res.cameras.K[0, 0, 0].item() == pytest.approx(500.0, rel=3e-3)
    assert res.cameras.K[0, 0, 2].item() == model.cameras[1].params[1] - 0.5  # principal point kept
    assert gap < 5e-4


def test_perturbed_data_scene_matches_pycolmap():
    model = colmap.read_model(SCENE)
    rng = np.random.default_rng(0)
    # pycolmap refuses points seen once: keep the points with a track of two or more
    points = {k: pt._replace(xyz=pt.xyz + rng.normal(0, 0.01, 3)) for k, pt in model.points3D.items()
              if len(pt.image_ids) >= 2}
    images = {}
    for k, im in model.images.items():
        ids = np.where(np.isin(im.point3D_ids, list(points)), im.point3D_ids, -1)
        images[k] = im._replace(xys=im.xys + rng.normal(0, 0.5, im.xys.shape), point3D_ids=ids,
                                tvec=im.tvec + rng.normal(0, 0.01, 3))
    perturbed = colmap.ColmapModel(model.cameras, images, points)
    res, ours, theirs, start, gap = _compare(perturbed, False)
    assert ours < 0.2 * start
    assert gap < 5e-4


def test_default_gauge_holds_first_pose_and_the_scale():
    p = synthetic_problem(6, 300, noise=0.5, seed=2)
    kw = dict(point_index=p.point_index, camera_index=p.camera_index)
    res = bundle_adjust(p.cameras, p.poses, p.points, p.observations, linear_solver="dense", **kw)
    np.testing.assert_allclose(np.array(res.poses[0]), np.array(p.poses[0]), atol=1e-6)
    far = 5  # the last camera of the half ring is the farthest from the first
    base = lambda T: np.linalg.norm(np.array(lie.se3_compose(T[far], lie.se3_inverse(T[0])))[:3, 3])
    assert base(res.poses) == pytest.approx(base(p.poses), rel=1e-2)  # the scale moves only by the noise
    # the gauge leaves no null space: the iterative solver finds the same unique minimum
    res2 = bundle_adjust(p.cameras, p.poses, p.points, p.observations, linear_solver="pcg", **kw)
    np.testing.assert_allclose(np.array(res2.points), np.array(res.points), atol=1e-3)


@pytest.mark.parametrize("solver", ["dense", "pcg"])
def test_linear_solvers_reach_the_same_cost(solver):
    p = synthetic_problem(8, 400, noise=0.5, seed=3)
    res = bundle_adjust(p.cameras, p.poses, p.points, p.observations, point_index=p.point_index,
                        camera_index=p.camera_index, linear_solver=solver, max_iters=30)
    expected = 0.5 * 0.25 * (p.observations.size - 6 * 8 - 3 * 400 + 7)  # E[cost] at the optimum
    assert bool(res.ok) and res.cost.item() == pytest.approx(expected, rel=0.15)


def test_weak_camera_and_points_at_infinity_converge_without_nan():
    p = synthetic_problem(8, 400, noise=0.5, seed=4)
    rng = np.random.default_rng(0)
    cam, pt = p.camera_index, p.point_index
    keep = (pt >= 20) & ((cam != 7) | (np.cumsum(cam == 7) <= 4))  # camera 7 keeps 4 observations
    # points 0..19 move nearly to infinity, seen by cameras 0 and 1 (looking along +z)
    true = np.array(p.true_points)
    true[:20] = np.c_[rng.uniform(-1e3, 1e3, (20, 2)), np.full(20, 1e5)]
    start = np.array(p.points)
    start[:20] = true[:20] + rng.normal(0, 1e3, (20, 3))
    cam = np.r_[cam[keep], np.repeat([0, 1], 20)].astype(np.int32)
    pt = np.r_[pt[keep], np.tile(np.arange(20), 2)].astype(np.int32)
    px = p.cameras.select(mx.array(cam)).with_pose(p.true_poses[mx.array(cam)]).project(mx.array(true[pt])[:, None])
    obs = np.array(px.pixels[:, 0]) + rng.normal(0, 0.5, (cam.size, 2))
    assert bool(mx.all(px.valid))
    res = bundle_adjust(p.cameras, p.poses, mx.array(start), obs, point_index=pt, camera_index=cam, max_iters=40)
    for a in (res.poses, res.points, res.residual, res.cost):
        assert np.all(np.isfinite(np.array(a)))
    assert bool(res.ok) and bool(np.all(np.array(res.valid)))
    assert res.cost.item() < 0.5 * 0.25 * 2 * cam.size  # at the noise level


def test_nan_pixels_and_points_behind_a_camera_drop_out():
    p = synthetic_problem(5, 200, noise=0.5, seed=5)
    obs = np.array(p.observations)
    obs[3] = np.nan
    points = np.array(p.points)
    behind = p.point_index[10]
    pose = np.array(p.poses[p.camera_index[10]])
    points[behind] = -pose[:3, :3].T @ pose[:3, 3] - 3.0 * pose[2, :3]  # 3 units behind camera c(10)
    res = bundle_adjust(p.cameras, p.poses, mx.array(points), obs, point_index=p.point_index,
                        camera_index=p.camera_index, loss="huber", loss_scale=2.0)
    valid = np.array(res.valid)
    assert not valid[3] and not valid[10] and valid.sum() >= valid.size - 10
    assert np.all(np.isfinite(np.array(res.residual))) and bool(res.ok)
    assert np.all(np.array(res.residual)[~valid] == 0.0)


def test_fixed_points_and_poses_stay_put():
    p = synthetic_problem(5, 200, noise=0.5, seed=6)
    res = bundle_adjust(p.cameras, p.poses, p.points, p.observations, point_index=p.point_index,
                        camera_index=p.camera_index, fix_poses=[0, 2], fix_points=np.arange(200) < 50)
    np.testing.assert_array_equal(np.array(res.poses[2]), np.array(p.poses[2]))
    np.testing.assert_array_equal(np.array(res.points[:50]), np.array(p.points[:50]))
    assert bool(res.ok) and res.cost.item() < 0.5 * res.initial_cost.item()


def test_bad_arguments_raise():
    p = synthetic_problem(3, 30, seed=0)
    kw = dict(point_index=p.point_index, camera_index=p.camera_index)
    with pytest.raises(ValueError, match="refine_intrinsics"):
        bundle_adjust(p.cameras, p.poses, p.points, p.observations, refine_intrinsics=("skew",), **kw)
    with pytest.raises(ValueError, match="linear_solver"):
        bundle_adjust(p.cameras, p.poses, p.points, p.observations, linear_solver="qr", **kw)
    with pytest.raises(ValueError, match="camera_index"):
        bundle_adjust(p.cameras, p.poses, p.points, p.observations, point_index=p.point_index,
                      camera_index=p.camera_index[:-1])


def test_fixed_points_alone_are_the_gauge():
    # surveyed control points fix the frame: pose 0 and the scale must then move freely
    p = synthetic_problem(4, 25, noise=0.5, seed=3, rotation_noise=0.01, translation_noise=0.05, point_noise=0.0)
    kw = dict(point_index=p.point_index, camera_index=p.camera_index, fix_points=np.ones(25, bool))
    alone = bundle_adjust(p.cameras, p.poses, p.points, p.observations, **kw)
    explicit = bundle_adjust(p.cameras, p.poses, p.points, p.observations, fix_poses=np.zeros(4, bool), **kw)
    assert bool(alone.ok) and not np.array_equal(np.array(alone.poses[0]), np.array(p.poses[0]))
    np.testing.assert_allclose(alone.cost.item(), explicit.cost.item(), rtol=1e-4)


@pytest.mark.parametrize("bad,match", [(dict(chunk=0), "chunk"), (dict(fix_poses=[7]), "fix_poses"),
                                       (dict(point_index_offset=0.3), "point_index"),
                                       (dict(point_index_offset=1000), "point_index")])
def test_bad_chunks_and_indices_raise_naming_them(bad, match):
    p = synthetic_problem(4, 25, seed=0)
    kw = dict(point_index=np.asarray(p.point_index) + bad.pop("point_index_offset", 0), camera_index=p.camera_index)
    with pytest.raises(ValueError, match=match):
        bundle_adjust(p.cameras, p.poses, p.points, p.observations, **kw, **bad)


def test_model_roundtrip_keeps_observations():
    p, model = _synthetic_model(cams=4, points=50)
    prob = model_problem(model)
    assert prob.observations.shape == p.observations.shape
    np.testing.assert_allclose(np.sort(np.array(prob.observations), axis=0), np.sort(np.array(p.observations), axis=0),
                               atol=1e-4)


@pytest.mark.parametrize("solver", ["dense", "pcg"])
def test_lm_iterations_hold_no_cpu_only_primitives(solver):
    from helpers import CPU_ONLY_PRIMITIVES, graph_primitives

    from mlxgeom.sfm.bundle import _setup
    from mlxgeom.solve import get_loss, lm_loop

    p = synthetic_problem(4, 40, noise=0.5, seed=7)
    problem, step, x = _setup(p.cameras, p.poses, p.points, p.observations, p.point_index, p.camera_index, None,
                              None, None, ("focal", "principal_point"), get_loss("cauchy", 2.0), solver, 10, 1e-6)

    def chunk(*x):
        return lm_loop(problem.linearize, x, problem.retract, (), solve_step=step, max_iters=2).x

    assert not graph_primitives(chunk, *x) & CPU_ONLY_PRIMITIVES
    res = chunk(*x)
    assert all(np.all(np.isfinite(np.array(v))) for v in res)


def test_float64_inputs_stay_float64():
    p = synthetic_problem(5, 150, noise=0.5, seed=8)
    with mx.stream(mx.cpu):  # float64 exists on the CPU only
        res = bundle_adjust(p.cameras, p.poses.astype(mx.float64), p.points.astype(mx.float64),
                            p.observations.astype(mx.float64), point_index=p.point_index, camera_index=p.camera_index)
        assert res.poses.dtype == res.points.dtype == res.cost.dtype == mx.float64
        assert bool(res.ok) and res.cost.item() < 0.05 * res.initial_cost.item()


def test_fisheye_focal_refined_to_the_truth():
    p = synthetic_problem(6, 300, noise=0.5, seed=9)
    truth = Camera(p.cameras.K[0], dist=mx.array([0.05, 0.0, 0.0, 0.0]), model="fisheye")
    px = truth.with_pose(p.true_poses[mx.array(p.camera_index)]).project(p.true_points[mx.array(p.point_index)][:, None])
    start = Camera(p.cameras.K[0] * mx.array([[1.02], [1.02], [1.0]]), dist=mx.zeros(4), model="fisheye")
    res = bundle_adjust(start, p.poses, p.points, px.pixels[:, 0], point_index=p.point_index,
                        camera_index=p.camera_index, refine_intrinsics=("focal", "k1"))
    assert type(res.cameras).__name__ == "FisheyeCamera"
    assert res.cameras.K[0, 0].item() == pytest.approx(500.0, rel=2e-3)
    assert res.cameras.dist[1:].tolist() == [0.0, 0.0, 0.0]  # only k1 was named
    assert res.cost.item() < 1e-3 * res.initial_cost.item()


def test_command_line_writes_the_adjusted_model(tmp_path, capsys):
    from mlxgeom.__main__ import main

    assert main(["ba", SCENE, str(tmp_path), "--max-iters", "3", "--ext", ".txt"]) == 0
    out = capsys.readouterr().out
    assert "RMS reprojection error" in out and "3 iterations" in out
    adjusted = colmap.read_model(str(tmp_path))
    assert len(adjusted.images) == 8 and len(adjusted.points3D) == 3000
