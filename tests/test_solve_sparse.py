"""Block-sparse BA normal equations: the Schur-complement step equals a dense float64 solve."""

import mlx.core as mx
import numpy as np
import pytest

from helpers import CPU_ONLY_PRIMITIVES, graph_primitives
from mlxgeom.solve.sparse import (
    BlockStructure,
    SchurStep,
    block_normal_equations,
    cholesky_solve_blocked,
    flat_gradient,
    predicted_decrease,
)


def _problem(seed, cams=5, points=12, dc=6, extra=10):
    rng = np.random.default_rng(seed)
    # every point seen by two cameras at least, plus random extra observations
    cam = np.concatenate([rng.integers(0, cams, points), (np.arange(points) % cams + 1) % cams,
                          rng.integers(0, cams, extra)])
    pt = np.concatenate([np.arange(points), np.arange(points), rng.integers(0, points, extra)])
    o = cam.size
    jc, jp = rng.normal(size=(o, 2, dc)), rng.normal(size=(o, 2, 3))
    r, w = rng.normal(size=(o, 2)), rng.uniform(0.2, 1.0, o)
    return cam, pt, jc, jp, r, w


def _dense_step(structure, pt, jc, jp, r, w, mu):
    nc = structure.reduced_size
    n = nc + 3 * structure.num_points
    J = np.zeros((2 * pt.size, n))
    for i, (cols, p) in enumerate(zip(structure.columns_np, pt)):
        J[2 * i:2 * i + 2, cols] += jc[i]
        J[2 * i:2 * i + 2, nc + 3 * p:nc + 3 * p + 3] = jp[i]
    Wt = np.repeat(w, 2)
    A = J.T @ (Wt[:, None] * J)
    g = J.T @ (Wt * r.reshape(-1))
    D = np.diag(np.clip(np.diag(A), 1e-6, 1e32))  # Marquardt's diagonal
    return np.linalg.solve(A + mu * D, -g), A, g


def _mlx(structure, jc, jp, r, w):
    f = lambda a: mx.array(a.astype(np.float32))
    return block_normal_equations(structure, f(jc), f(jp), f(r), f(w))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("solver", ["dense", "pcg"])
def test_schur_step_equals_dense_float64_solve(seed, solver):
    cams, points, mu = 5, 12, 0.5
    cam, pt, jc, jp, r, w = _problem(seed, cams, points)
    st = BlockStructure(cam, pt, cams, points, 6)
    ref, A, g = _dense_step(st, pt, jc, jp, r, w, mu)
    system = _mlx(st, jc, jp, r, w)
    np.testing.assert_allclose(np.array(flat_gradient(system)), g, rtol=1e-4, atol=1e-4)
    h, ok, pred = SchurStep(st, solver, pcg_iterations=60)(system, flat_gradient(system), mx.array(mu))
    assert ok.item()
    np.testing.assert_allclose(np.array(h), ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    ref_pred = -g @ ref - 0.5 * ref @ A @ ref
    assert pred.item() == pytest.approx(ref_pred, rel=1e-3)


@pytest.mark.parametrize("solver", ["dense", "pcg"])
def test_shared_group_blocks_equal_dense_float64_solve(solver):
    cams, points, mu = 5, 15, 0.2
    cam, pt, jc, jp, r, w = _problem(7, cams, points, dc=9, extra=20)
    st = BlockStructure(cam, pt, cams, points, 6, group_of_camera=[0, 0, 1, 1, 1], num_groups=2, group_dof=3)
    ref, A, g = _dense_step(st, pt, jc, jp, r, w, mu)
    system = _mlx(st, jc, jp, r, w)
    h, ok, pred = SchurStep(st, solver, pcg_iterations=80)(system, flat_gradient(system), mx.array(mu))
    assert ok.item()
    np.testing.assert_allclose(np.array(h), ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    assert pred.item() == pytest.approx(-g @ ref - 0.5 * ref @ A @ ref, rel=1e-3)


def test_pcg_error_shrinks_with_iterations():
    cams, points, mu = 6, 20, 0.1
    cam, pt, jc, jp, r, w = _problem(3, cams, points, extra=30)
    st = BlockStructure(cam, pt, cams, points, 6, with_pairs=False)
    ref, _, _ = _dense_step(st, pt, jc, jp, r, w, mu)
    system = _mlx(st, jc, jp, r, w)
    errs = [np.abs(np.array(SchurStep(st, "pcg", pcg_iterations=k)(system, flat_gradient(system), mx.array(mu))[0])
                   - ref).max() for k in (2, 10, 80)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-3 * np.abs(ref).max()


def test_predicted_decrease_is_exact_for_any_step():
    cams, points = 3, 8
    cam, pt, jc, jp, r, w = _problem(4, cams, points)
    st = BlockStructure(cam, pt, cams, points, 6)
    _, A, g = _dense_step(st, pt, jc, jp, r, w, 1.0)
    system = _mlx(st, jc, jp, r, w)
    h = np.random.default_rng(0).normal(size=g.size)
    pred = predicted_decrease(st, system, flat_gradient(system), mx.array(h.astype(np.float32)))
    assert pred.item() == pytest.approx(-g @ h - 0.5 * h @ A @ h, rel=1e-4)


@pytest.mark.parametrize("n, block", [(1, 1), (7, 3), (40, 8), (50, 6)])
def test_blocked_cholesky_solves_spd_systems(n, block):
    rng = np.random.default_rng(n)
    m = rng.normal(size=(n, n))
    a = m @ m.T + n * np.eye(n)
    b = rng.normal(size=n)
    x, ok = cholesky_solve_blocked(mx.array(a.astype(np.float32)), mx.array(b.astype(np.float32)), block)
    assert ok.item()
    np.testing.assert_allclose(np.array(x), np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)


def test_blocked_cholesky_flags_indefinite_matrix():
    a = mx.array(np.diag([1.0, -1.0, 2.0, 3.0]).astype(np.float32))
    assert not cholesky_solve_blocked(a, mx.ones(4), 2)[1].item()


def test_fixed_camera_block_gets_zero_step():
    cams, points = 4, 10
    cam, pt, jc, jp, r, w = _problem(5, cams, points)
    jc[cam == 0] = 0.0  # camera 0 held constant: its Jacobian columns vanish
    st = BlockStructure(cam, pt, cams, points, 6)
    system = _mlx(st, jc, jp, r, w)
    for solver in ("dense", "pcg"):
        h, ok, _ = SchurStep(st, solver)(system, flat_gradient(system), mx.array(0.3))
        assert ok.item() and np.all(np.array(h[:6]) == 0.0)


def test_schur_step_has_no_cpu_only_primitives_and_compiles():
    cams, points = 4, 10
    cam, pt, jc, jp, r, w = _problem(6, cams, points)
    st = BlockStructure(cam, pt, cams, points, 6)
    system = _mlx(st, jc, jp, r, w)
    for solver in ("dense", "pcg"):
        step = SchurStep(st, solver, pcg_iterations=5)

        def fn(*arrays):
            sys = type(system)(*arrays)
            return step(sys, flat_gradient(sys), mx.array(0.3))

        assert not graph_primitives(fn, *system) & CPU_ONLY_PRIMITIVES
        eager = fn(*system)
        compiled = mx.compile(fn)(*system)  # a host sync inside would raise here
        for e, c in zip(eager, compiled):
            np.testing.assert_allclose(np.array(c), np.array(e), rtol=1e-4, atol=1e-4)


def test_structure_rejects_out_of_range_indices():
    with pytest.raises(ValueError, match="camera_index"):
        BlockStructure([0, 3], [0, 1], 2, 2, 6)


def test_camera_row_sums_equal_scatter_adds_for_uneven_segments():
    from mlxgeom.solve.sparse import _CameraRows

    rng = np.random.default_rng(3)
    # 0 rows for camera 1, exactly one chunk for camera 2, several chunks and a remainder for 0
    index = np.concatenate([np.zeros(9, int), np.full(4, 2), np.full(3, 3)])
    rng.shuffle(index)
    values = rng.normal(size=(index.size, 2, 3)).astype(np.float32)
    values[index == 3] = np.inf  # padding rows must not carry it into the other cameras
    rows = _CameraRows(index, np.arange(index.size), 4, index.size, chunk=4)
    assert rows.count == (3 + 1 + 1) * 4  # 9, 4 and 3 rows padded to whole chunks
    got = np.array(rows.sum(rows.gather(mx.array(values))))
    want = np.zeros((4, 2, 3), np.float32)
    np.add.at(want, index, values)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # another summation order
    camera, real, source = (np.array(a) for a in (rows.camera, rows.real, rows.source))
    np.testing.assert_array_equal(index[source[real]], camera[real])  # each real row in its camera's run
    np.testing.assert_array_equal(np.sort(source[real]), np.arange(index.size))
