"""Robustness campaign for mlxgeom.optim (tests/ROBUSTNESS.md; machinery in test_robustness_harness.py).

Observations are made inside the wrapped call (pixels = project(pose, points)) so that batch,
NaN and gradient checks reach every input through one consistent problem.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from helpers import ON_GPU

from mlxgeom import lie, optim
from mlxgeom._checks import check_trailing
from test_robustness_harness import Arg, Spec, const, define_tests, intrinsics, normal

N, V = 8, 3


def world_points(rng, b):
    p = rng.uniform(-1, 1, size=b + (N, 3))
    p[..., 2] += 5.0
    return p


def small_twists(rng, b):
    return 0.05 * rng.normal(size=b + (6,))


def _pixels(pw, xi, k) -> mx.array:
    pw, xi, k = (x if isinstance(x, mx.array) else mx.array(np.asarray(x, dtype=np.float32)) for x in (pw, xi, k))
    pose = lie.se3_exp(xi)
    return optim.reprojection_residuals(pose, pw, mx.zeros(pw.shape[:-1] + (2,), dtype=pw.dtype), k)


PW, XI, K = Arg((None, 3), world_points), Arg((6,), small_twists), Arg((3, 3), intrinsics)
COPLANAR = np.concatenate([np.random.default_rng(3).uniform(-1, 1, (N, 2)), np.full((N, 1), 5.0)], axis=-1)
BEHIND = np.array([0.2, 0.1, -5.0])
K_F = lambda f: np.array([[f, 0.0, 320.0], [0.0, f, 240.0], [0.0, 0.0, 1.0]])  # noqa: E731


def pnp_cases() -> dict[str, tuple[list, str]]:
    return {"coplanar": ([COPLANAR], "flagged"), "coincident": ([np.array([0.1, 0.2, 5.0])], "flagged"),
            "behind_camera": ([BEHIND], "flagged"), "focal_1e6": ([None, None, K_F(1e6)], "any"),
            "focal_1e-3": ([None, None, K_F(1e-3)], "any")}


def view_poses(rng, b):
    t = np.broadcast_to(np.eye(4), b + (V, 4, 4)).copy()
    t[..., :, 0, 3] = np.arange(V) - 1.0 + 0.05 * rng.normal(size=b + (V,))
    return t


def _triangulate(x, k, poses):
    x, k, poses = (v if isinstance(v, mx.array) else mx.array(np.asarray(v, dtype=np.float32)) for v in (x, k, poses))
    check_trailing(x, (3,), "x")  # x only generates the observations: its shape is checked here
    # The pinhole image of x in every view, mirrored for points behind a camera (the library's
    # projection core flags those instead), so that the special cases reach triangulate_points.
    pc = mx.sum(poses[..., :3, :3] * x[..., None, None, :], axis=-1) + poses[..., :3, 3]
    z = mx.where(mx.abs(pc[..., 2:]) > 1e-12, pc[..., 2:], 1e-12)
    pix = mx.sum(k[..., :2, :2] * (pc[..., None, :2] / z[..., None, :]), axis=-1) + k[..., :2, 2]
    return optim.triangulate_points(k, pix, poses)


def _lm(x0, target):
    return optim.levenberg_marquardt(lambda x: x * x - target, x0, max_iters=5)


def _specs() -> list[Spec]:
    ok = lambda r: r.ok  # noqa: E731
    kv = Arg((None, 3, 3), lambda rng, b: np.broadcast_to(intrinsics(rng, b)[..., None, :, :], b + (V, 3, 3)).copy())
    return [
        Spec("solve_pnp", lambda pw, xi, k: optim.solve_pnp(pw, _pixels(pw, xi, k), k, max_iters=3), [PW, XI, K],
             mask=ok, specials=pnp_cases()),
        Spec("solve_pnp_dlt", lambda pw, xi, k: optim.solve_pnp(pw, _pixels(pw, xi, k), k, method="dlt", refine=False),
             [PW, XI, K], mask=ok, specials=pnp_cases()),
        Spec("solve_pnp_ransac",
             lambda pw, xi, k: optim.solve_pnp_ransac(pw, _pixels(pw, xi, k), k, num_hypotheses=8, refit_rounds=1,
                                                      max_iters=2, min_inliers=5),
             [PW, XI, K], mask=ok, specials=pnp_cases(), grad=False),
        Spec("reprojection_residuals", lambda xi, pw, px, k: optim.reprojection_residuals(lie.se3_exp(xi), pw, px, k),
             [XI, PW, Arg((None, 2), normal(N, 2, scale=100.0)), K], low_precision=False),
        Spec("refine_pnp", lambda xi, pw, k: optim.refine_pnp(lie.se3_exp(xi), pw, _pixels(pw, xi * 0.9, k), k,
                                                             mx.ones(pw.shape[:-1], dtype=pw.dtype), max_iters=3),
             [XI, PW, K], mask=lambda r: r.status >= 0, low_precision=False, broadcast=False,
             outputs=lambda r: [r.x, r.cost]),
        Spec("triangulate_points", _triangulate, [Arg((3,), lambda rng, b: rng.normal(size=b + (3,)) + [0, 0, 6]), kv,
                                                  Arg((None, 4, 4), view_poses)], mask=ok,
             specials={"behind_cameras": ([np.array([0.0, 0.0, -6.0])], "flagged"),
                       "at_camera_centre": ([np.array([0.0, 0.0, 0.0])], "flagged"),
                       "coordinates_1e6": ([np.array([1e6, 1e6, 1e6])], "any"),
                       "coincident_cameras": ([None, None, np.eye(4)], "flagged")}),
        Spec("levenberg_marquardt", _lm, [Arg((2,), const([1.0, 3.0])), Arg((2,), const([2.0, 5.0]))],
             mask=lambda r: r.status >= 0, outputs=lambda r: [r.x, r.cost],
             specials={"huge_start_1e6": ([np.full(2, 1e6)], "any"), "zero_start": ([np.zeros(2)], "any")}),
        Spec("batched_jacobian", lambda x: optim.batched_jacobian(lambda y: mx.sin(y) * y, x, 3, x.shape[:-1]), [Arg((3,), normal(3))]),
        Spec("vector_retract", optim.vector_retract, [Arg((3,), normal(3)), Arg((3,), normal(3))], low_precision=False),
        Spec("squared_loss", optim.squared_loss, [Arg((), normal())], low_precision=False),
    ] + [
        Spec(f"{cls.__name__}.rho_weight", lambda s, c=cls: (c(2.0).rho(s), c(2.0).weight(s)),
             [Arg((), lambda rng, b: rng.uniform(0, 20, size=b))], low_precision=False,
             specials={"zero": ([0.0], "valid"), "huge_1e12": ([1e12], "valid"), "tiny_1e-30": ([1e-30], "valid")})
        for cls in (optim.Huber, optim.Cauchy, optim.Tukey, optim.SoftL1, optim.GemanMcClure)
    ]


# Found by this campaign, not fixed here (tests/ROBUSTNESS.md, "Left open").
MX_ONLY = "low-level helper typed mx.array: numpy/list inputs and wrong trailing dims are not checked"

SPECS = _specs()
for _s in SPECS:
    if _s.name.startswith(("solve_pnp", "triangulate")):
        _s.lowp_atol = 50.0 if _s.name == "solve_pnp_dlt" else 5.0  # pixels from float16/bfloat16 points are rounded too
    if _s.name == "levenberg_marquardt":
        _s.broadcast, _s.wrong_trailing = False, False  # x0 is (*batch, *param): no fixed trailing shape
    if _s.name in ("batched_jacobian", "vector_retract"):
        _s.wrong_trailing = False  # generic parameter shapes
    if _s.name in ("reprojection_residuals", "refine_pnp", "batched_jacobian", "squared_loss") or ".rho_weight" in _s.name:
        # MX_ONLY: documented as taking mx.array; not driven with numpy/lists or wrong shapes.
        _s.kinds, _s.wrong_trailing = ("int", "float64", "float16", "bfloat16"), False
    if _s.name == "levenberg_marquardt":
        _s.kinds = ("numpy", "int", "float64")  # the test's residual closure takes mx arrays
    if _s.name == "solve_pnp_dlt" and ON_GPU:
        # the float32 DLT is ~0.4 px off on exact data; on CUDA its reductions round differently
        # per batch shape, which moves that error by up to ~0.005 px between batched calls
        _s.tol = 2e-2
    if _s.name == "Tukey.rho_weight":
        _s.nan_must_show = False  # rho(inf) = c^2 / 3 is the right, finite value
globals().update(define_tests(SPECS, hypothesis_examples=3))


def test_pnp_ransac_with_all_outliers_is_not_ok():
    rng = np.random.default_rng(0)
    pw = rng.uniform(-1, 1, (2, 30, 3)) + [0, 0, 5]
    px = rng.uniform(0, 640, (2, 30, 2))
    res = optim.solve_pnp_ransac(pw, px, K_F(500.0), num_hypotheses=32, min_inliers=12, threshold=2.0)
    assert not np.array(res.ok).any()
    assert np.isfinite(np.array(res.pose)).all()


@pytest.mark.parametrize("n", [0, 3])
def test_pnp_with_too_few_points_is_not_ok(n):
    pw = np.random.default_rng(1).uniform(-1, 1, (2, n, 3)) + [0, 0, 5]
    res = optim.solve_pnp(pw, np.zeros((2, n, 2)), K_F(500.0))
    assert res.ok.shape == (2,) and not np.array(res.ok).any()


@pytest.mark.parametrize("name", ["huber", "cauchy", "tukey", "soft_l1", "geman_mcclure", "linear", None])
def test_get_loss_resolves_names(name):
    loss = optim.get_loss(name, 2.0)
    assert (loss is None) == (name in ("linear", None))


def test_get_loss_rejects_unknown_names():
    with pytest.raises(ValueError):
        optim.get_loss("l7")


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_losses_reject_non_positive_scales(scale):
    with pytest.raises(ValueError):
        optim.Huber(scale)
