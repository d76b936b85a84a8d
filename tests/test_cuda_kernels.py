"""CUDA fast paths equal their pure-mx reference paths on the device (skipped without CUDA)."""

import sys

import mlx.core as mx
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from helpers import FISHEYE_LENS, LENSES
from mlxgeom import camera, lie, linalg, optim
from mlxgeom.camera import distortion, distortion_cuda, projection_cuda
from mlxgeom.lie import lie_cuda, se3, so3
from mlxgeom.linalg import inverse_cuda, matrix_exp_cuda
from mlxgeom.linalg.inverse import _inverse_adjugate
from mlxgeom.optim import _pnp_init, _point_sums, pnp, pnp_cuda, solve_pnp

matrix_exp_module = sys.modules["mlxgeom.linalg.matrix_exp"]  # the module (the package exports the function)

pytestmark = pytest.mark.skipif(
    not (mx.cuda.is_available() and mx.default_device() == mx.gpu), reason="needs MLX's CUDA backend"
)


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("batch", [1, 255, 256, 1000, 70001])
def test_inverse_kernel_equals_pure_path(n, batch):
    # Well-conditioned inputs: the two paths differ only by FMA contraction in the kernel.
    a = 0.3 * mx.random.normal((batch, n, n), key=mx.random.key(batch)) + 3 * mx.eye(n)
    assert inverse_cuda.enabled(a)
    fast, ref = inverse_cuda.inverse(a), _inverse_adjugate(a)
    np.testing.assert_allclose(np.array(fast), np.array(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("scale", [1e-20, 1e10, 1e20])
def test_inverse_kernel_scales_matrices_whose_cofactors_would_overflow(n, scale):
    a = (0.3 * np.random.default_rng(n).normal(size=(300, n, n)) + 3 * np.eye(n)) * scale
    a32 = a.astype(np.float32)
    fast = np.array(inverse_cuda.inverse(mx.array(a32)))
    ref = np.linalg.inv(a32.astype(np.float64))
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("n", [3, 4])
def test_inverse_kernel_keeps_singular_entries_to_themselves(n):
    a = mx.stack([mx.eye(n) * 2, mx.zeros((n, n)), mx.eye(n) * 4])
    out = np.array(linalg.inv(a))
    np.testing.assert_allclose(out[0], np.eye(n) / 2)
    np.testing.assert_allclose(out[2], np.eye(n) / 4)
    assert not np.isfinite(out[1]).any()


def test_inverse_kernel_handles_batch_dims_strides_compile_and_derivatives():
    a = mx.random.normal((4, 5, 4, 4), key=mx.random.key(1)) + 2 * mx.eye(4)
    strided = a.swapaxes(-1, -2)
    ref = np.linalg.inv(np.array(strided).astype(np.float64))
    np.testing.assert_allclose(np.array(mx.compile(linalg.inv)(strided)), ref, rtol=1e-4, atol=1e-5)
    grad = mx.grad(lambda x: linalg.inv(x).sum())(a)
    assert np.isfinite(np.array(grad)).all()
    tangent = mx.random.normal(a.shape, key=mx.random.key(2))
    ainv = np.linalg.inv(np.array(a).astype(np.float64))
    np.testing.assert_allclose(np.array(mx.jvp(linalg.inv, [a], [tangent])[1][0]),
                               -ainv @ np.array(tangent) @ ainv, rtol=1e-3, atol=1e-4)


def _rotation_vectors(batch: int, seed: int) -> mx.array:
    """Angles 0, 1e-7, across the series/closed-form seam t = 1, up to and just below pi."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(batch, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angle = rng.choice([0.0, 1e-7, 0.5, 1.0 - 1e-6, 1.0 + 1e-6, 2.0, np.pi - 1e-4], size=batch) * rng.uniform(0.5, 1.0, batch)
    return mx.array((axes * angle[:, None]).astype(np.float32))


@pytest.mark.parametrize("batch", [1, 255, 1000, 70001])
def test_exp_and_log_kernels_equal_pure_paths(batch):
    phi = _rotation_vectors(batch, batch)
    xi = mx.concatenate([mx.random.normal((batch, 3), key=mx.random.key(batch)), phi], axis=-1)
    assert lie_cuda.enabled(phi)
    np.testing.assert_allclose(np.array(lie_cuda.so3_exp(phi)), np.array(so3._exp_pure(phi)), atol=2e-6)
    np.testing.assert_allclose(np.array(lie_cuda.se3_exp(xi)), np.array(se3._exp_pure(xi)), atol=1e-5)
    r, t = so3._exp_pure(phi), se3._exp_pure(xi)
    np.testing.assert_allclose(np.array(lie_cuda.so3_log(r)), np.array(so3._log_pure(r)), atol=1e-5)
    np.testing.assert_allclose(np.array(lie_cuda.se3_log(t)), np.array(se3._log_pure(t)), atol=1e-4)


@pytest.mark.parametrize("single", [False, True])
def test_act_kernels_equal_pure_paths_for_matched_and_single_transforms(single):
    xi = mx.random.normal((1 if single else 3001, 6), key=mx.random.key(2))
    p = 5 * mx.random.normal((3001, 3), key=mx.random.key(3))
    t = lie.se3_exp(xi)
    r = t[..., :3, :3]
    assert lie_cuda.act_enabled(r, p) and lie_cuda.act_enabled(t, p)
    np.testing.assert_allclose(np.array(lie_cuda.so3_act(r, p)), np.array(so3._act_pure(r, p)), atol=1e-5)
    np.testing.assert_allclose(np.array(lie_cuda.se3_act(t, p)), np.array(se3._act_pure(t, p)), atol=1e-5)


def test_lie_kernels_keep_batch_dims_and_fall_back_when_batches_broadcast():
    phi = _rotation_vectors(24, 5).reshape(2, 3, 4, 3)
    assert lie.so3_exp(phi).shape == (2, 3, 4, 3, 3)
    r = lie.so3_exp(_rotation_vectors(4, 6)).reshape(4, 1, 3, 3)
    p = mx.random.normal((4, 7, 3), key=mx.random.key(7))
    assert not lie_cuda.act_enabled(r, p)  # (4, 1) against (4, 7): the pure path broadcasts
    np.testing.assert_allclose(np.array(lie.so3_act(r, p)), np.array(so3._act_pure(r, p)), atol=1e-6)


def test_lie_kernel_gradients_equal_pure_gradients_and_compile_at_two_batch_sizes():
    w = mx.arange(16, dtype=mx.float32).reshape(4, 4) / 10

    def loss(exp, act, log):
        return lambda xi, p: mx.sum(w * exp(xi)) + mx.sum(act(exp(xi), p)) + mx.sum(log(exp(xi)) * p[:, :1])

    for batch in (5, 300):
        xi = mx.concatenate([mx.random.normal((batch, 3), key=mx.random.key(batch)), _rotation_vectors(batch, batch)], -1)
        p = mx.random.normal((batch, 3), key=mx.random.key(batch + 1))
        fast = mx.compile(mx.grad(loss(lie.se3_exp, lie.se3_act, lie.se3_log), argnums=(0, 1)))(xi, p)
        ref = mx.grad(loss(se3._exp_pure, se3._act_pure, se3._log_pure), argnums=(0, 1))(xi, p)
        for f, r in zip(fast, ref):
            np.testing.assert_allclose(np.array(f), np.array(r), rtol=1e-4, atol=1e-4)
        jvp = mx.jvp(lie.so3_exp, [xi[:, 3:]], [p])[1][0]
        np.testing.assert_allclose(np.array(jvp), np.array(mx.jvp(so3._exp_pure, [xi[:, 3:]], [p])[1][0]), atol=1e-4)


@pytest.mark.parametrize("in_axes", [(None, 0), (0, 1), (0, None)])
def test_vmap_works_with_the_fast_paths_switched_off(in_axes, monkeypatch):
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    r = so3._exp_pure(_rotation_vectors(4, 8))
    pts = mx.random.normal((6, 4, 3), key=mx.random.key(9))
    a = r if in_axes[0] is None else mx.stack([r] * 5)
    b = pts if in_axes[1] is None else (mx.stack([pts] * 5) if in_axes[1] == 0 else mx.stack([pts] * 5, axis=1))
    got = mx.vmap(lie.so3_act, in_axes=in_axes)(a, b)
    # Each mapped call acts (4,) rotations on (6, 4) points: a mapped rotation batch gains the points' axis.
    ref = so3._act_pure(a if in_axes[0] is None else a[:, None],
                        b if in_axes[1] is None else mx.moveaxis(b, in_axes[1], 0))
    np.testing.assert_allclose(np.array(got), np.array(ref), atol=1e-5)
    m = 0.5 * mx.random.normal((3, 7, 4, 4), key=mx.random.key(4))
    np.testing.assert_allclose(np.array(mx.vmap(linalg.matrix_exp, in_axes=1)(m)),
                               np.array(matrix_exp_module._expm(m.swapaxes(0, 1), 10)), atol=1e-5)


@pytest.mark.xfail(strict=True, raises=(ValueError, RuntimeError),
                   reason="MLX's custom kernels have no vmap rule (docs/conventions.md, CUDA fast paths)")
def test_vmap_over_the_inputs_of_a_fast_path():
    mx.eval(mx.vmap(lie.so3_exp, in_axes=1)(_rotation_vectors(30, 10).reshape(5, 6, 3)))


@pytest.mark.parametrize("n", [3, 4])
def test_matrix_exp_kernel_equals_pure_path_across_norms_and_shifts(n):
    rng = np.random.default_rng(n)
    parts = [rng.normal(size=(300, n, n)) * s for s in (1e-8, 1e-3, 0.5, 3.0, 10.0)]
    parts += [rng.normal(size=(300, n, n)) - 5 * np.eye(n), rng.normal(size=(50, n, n)) * 1e5]
    a = mx.array(np.concatenate(parts).astype(np.float32))
    assert matrix_exp_cuda.enabled(a)
    fast = np.array(mx.compile(linalg.matrix_exp)(a))
    ref = np.array(matrix_exp_module._expm(a, matrix_exp_module.DEFAULT_MAX_SQUARINGS))
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))  # 1-norms beyond the budget: NaN
    ok = np.isfinite(ref).all(axis=(1, 2))
    rel = np.linalg.norm(fast[ok] - ref[ok], axis=(1, 2)) / np.linalg.norm(ref[ok], axis=(1, 2))
    assert rel.max() < 2e-5


def test_matrix_exp_kernel_keeps_batch_dims_and_gradients():
    a = 0.5 * mx.random.normal((3, 70, 4, 4), key=mx.random.key(4))
    np.testing.assert_allclose(np.array(linalg.matrix_exp(a)), np.array(matrix_exp_module._expm(a, 10)), atol=1e-5)
    grad = mx.grad(lambda x: mx.sum(linalg.matrix_exp(x) * mx.arange(16.0).reshape(4, 4)))(a)
    ref = mx.grad(lambda x: mx.sum(matrix_exp_module._expm(x, 10) * mx.arange(16.0).reshape(4, 4)))(a)
    np.testing.assert_allclose(np.array(grad), np.array(ref), rtol=1e-4, atol=1e-4)
    tangent = mx.random.normal(a.shape, key=mx.random.key(5))
    jvp = mx.jvp(linalg.matrix_exp, [a], [tangent])[1][0]
    np.testing.assert_allclose(np.array(jvp), np.array(matrix_exp_module._frechet(a, tangent, 10)), rtol=1e-4, atol=1e-4)


def _pnp_points(batch: tuple, n: int, seed: int) -> tuple[mx.array, mx.array, mx.array]:
    """Pose, K and point blocks (1, 6, *batch, n) with noisy and outlying pixels, ignored
    points (w = 0, holding NaN-free zeros) and a few points behind the camera."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(batch))
    xi = np.concatenate([rng.normal(0, 0.2, (count, 3)), rng.normal(0, 0.3, (count, 3))], -1)
    pose = lie.se3_exp(mx.array(xi.astype(np.float32)))
    pose = pose + mx.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 6.0], [0, 0, 0, 0]])
    pw = rng.uniform(-2, 2, (count, n, 3))
    # A few points 2-5 units behind the camera (well clear of depth 0, where 1/z is ill-conditioned).
    behind = rng.uniform(-2, 2, (count, max(1, n // 10), 3)) * [1, 1, 0] - [0, 0, 1] * rng.uniform(2, 5, (count, max(1, n // 10), 1))
    rot, trans = np.array(pose)[:, :3, :3], np.array(pose)[:, :3, 3]
    pw[:, : max(1, n // 10)] = np.einsum("bji,bnj->bni", rot, behind - trans[:, None])
    k = np.broadcast_to(np.array([[500.0, 0.5, 320], [0, 480, 240], [0, 0, 1]]), (count, 3, 3)).copy()
    k[:, 0, 0] += rng.uniform(-50, 50, count)
    pc = np.einsum("bij,bnj->bni", np.array(pose)[:, :3, :3], pw) + np.array(pose)[:, None, :3, 3]
    uv = np.einsum("bij,bnj->bni", k, pc / pc[..., 2:])[..., :2] + rng.normal(0, 2, (count, n, 2))
    uv[:, n // 2:: 7] += 60  # outliers
    w = (rng.uniform(size=(count, n)) > 0.2).astype(np.float64)
    pw, uv = pw * w[..., None], uv * w[..., None]
    f32 = lambda a, *s: mx.array(a.astype(np.float32)).reshape(*batch, *s)  # noqa: E731
    points = pnp.pnp_blocks(f32(pw, n, 3), f32(uv, n, 2), f32(w, n), blocks=1)
    return pose.reshape(*batch, 4, 4), f32(k, 3, 3), points


@pytest.mark.parametrize("loss_name", [None, "huber", "cauchy", "tukey", "soft_l1", "geman_mcclure"])
@pytest.mark.parametrize("batch,n", [((1,), 5), ((37,), 100), ((3, 70), 33), ((1000,), 64)])
def test_pnp_normal_equation_kernel_equals_pure_path(loss_name, batch, n):
    pose, k, points = _pnp_points(batch, n, n)
    loss = optim.get_loss(loss_name, 3.0)
    assert pnp_cuda.enabled(pose, k, points, loss)
    fast = np.array(pnp_cuda.point_totals(pose, k, points, loss))
    ref = np.array(_point_sums.sum_blocks(lambda *rows: pnp._point_terms(pose, k, loss, *rows), points))
    assert fast.shape == (*batch, pnp_cuda.TERMS)
    scale = np.abs(ref).max(axis=-1, keepdims=True)  # each problem's terms, relative to its largest
    np.testing.assert_allclose(fast / scale, ref / scale, rtol=2e-4, atol=1e-3)


def test_pnp_normal_equation_kernel_gradients_equal_pure_gradients():
    pose, k, points = _pnp_points((40,), 50, 3)
    loss = optim.get_loss("huber", 3.0)
    weights = mx.random.normal((pnp_cuda.TERMS,), key=mx.random.key(0))

    def objective(fn):
        return lambda p, pts: mx.sum(fn(p, k, pts) * weights)

    pure = lambda p, kk, pts: _point_sums.sum_blocks(lambda *rows: pnp._point_terms(p, kk, loss, *rows), pts)  # noqa: E731
    fast = mx.grad(objective(pnp._point_totals(loss)), argnums=(0, 1))(pose, points)
    ref = mx.grad(objective(pure), argnums=(0, 1))(pose, points)
    for f, r in zip(fast, ref):
        np.testing.assert_allclose(np.array(f), np.array(r), rtol=1e-3, atol=1e-3 * float(mx.abs(r).max()))


def test_solve_pnp_on_cuda_uses_the_kernel_and_matches_the_pure_path(monkeypatch):
    rng = np.random.default_rng(11)
    rot = Rotation.random(300, random_state=12).as_matrix()
    t = rng.uniform(-0.5, 0.5, (300, 3)) + [0, 0, 6]
    pw = rng.uniform(-1, 1, (300, 100, 3))
    k = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    pc = np.einsum("bij,bnj->bni", rot, pw) + t[:, None]
    uv = np.einsum("ij,bnj->bni", k, pc / pc[..., 2:])[..., :2] + rng.normal(0, 1, (300, 100, 2))
    args = [mx.array(a.astype(np.float32)) for a in (pw, uv, k)]
    calls = []
    monkeypatch.setattr(pnp_cuda, "point_totals", lambda *a, _f=pnp_cuda.point_totals: calls.append(1) or _f(*a))
    fast = solve_pnp(*args, loss="huber")
    assert calls
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    ref = solve_pnp(*args, loss="huber")
    np.testing.assert_array_equal(np.array(fast.ok), np.array(ref.ok))
    # The two sums round differently and LM stops after a fixed count: poses agree to well under
    # their own uncertainty at 1 px noise (~1e-3).
    np.testing.assert_allclose(np.array(fast.pose), np.array(ref.pose), atol=5e-4)
    np.testing.assert_allclose(np.array(fast.reprojection_error), np.array(ref.reprojection_error), rtol=1e-3)


@pytest.mark.parametrize("batch,n", [((1,), 4), ((37,), 100), ((3, 70), 33), ((5000,), 64)])
def test_pnp_point_moment_kernel_equals_pure_path(batch, n):
    rng = np.random.default_rng(n)
    pw = mx.array((rng.uniform(-2, 2, (*batch, n, 3)) + [30.0, -4.0, 7.0]).astype(np.float32))
    xn = mx.array(rng.normal(0, 0.5, (*batch, n, 2)).astype(np.float32))
    w = mx.array((rng.uniform(size=(*batch, n)) > 0.2).astype(np.float32))
    assert pnp_cuda.moments_enabled(pw, xn, w)
    fast, ref = pnp_cuda.point_moments(pw, xn, w), _pnp_init._packed_moments(pw, xn, w)
    for f, r in zip(fast, ref):
        assert f.shape == r.shape
        np.testing.assert_allclose(np.array(f), np.array(r), rtol=1e-4, atol=1e-4 * float(mx.abs(r).max()))
    grads = [mx.grad(lambda p, fn=fn: mx.sum(fn(p, xn, w)[1] * mx.arange(40.0).reshape(4, 10)))(pw)
             for fn in (_pnp_init._packed_moments_fast, _pnp_init._packed_moments)]
    np.testing.assert_allclose(np.array(grads[0]), np.array(grads[1]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", sorted(LENSES))
@pytest.mark.parametrize("cameras", [1, 3])
def test_undistortion_kernel_equals_the_pure_newton_iterations(k, cameras):
    rng = np.random.default_rng(k)
    scale = np.linspace(1.0, 0.8, cameras)[:, None, None]  # per-camera coefficients (cameras, 1, k)
    dist = mx.array((np.array(LENSES[k]) * scale).astype(np.float32))
    coeffs = [dist[..., i] for i in range(k)]
    t = rng.uniform([-0.6, -0.4], [0.6, 0.4], (cameras, 5000, 2)).astype(np.float32)  # inside the lenses' images
    t[:, :3] = [[0, 0], [np.inf, 0], [np.nan, 1]]
    tx, ty = mx.array(t[..., 0]), mx.array(t[..., 1])
    assert distortion_cuda.enabled(tx, ty, coeffs)
    fast = np.stack([np.array(a) for a in distortion_cuda.newton_iterations(tx, ty, coeffs, 10)], -1)
    x, y = tx, ty
    if k == 14:
        x, y = distortion._inverse_tilt_start(tx, ty, coeffs[12], coeffs[13])
    for _ in range(10):
        x, y = distortion._newton_step(x, y, tx, ty, coeffs)
    ref = np.stack([np.array(x), np.array(y)], -1)
    np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(ref))
    converged = np.array(distortion.undistort_opencv(tx, ty, coeffs).converged)
    assert converged[:, 3:].all()
    # Converged iterates agree to a few float32 ulps (the kernel may contract to FMA).
    np.testing.assert_allclose(fast[converged], ref[converged], rtol=1e-5, atol=1e-6)


def test_unproject_on_cuda_uses_the_undistortion_kernel_and_keeps_values_and_gradients(monkeypatch):
    rng = np.random.default_rng(3)
    k = mx.array([[800.0, 0.0, 640.0], [0.0, 790.0, 360.0], [0.0, 0.0, 1.0]])
    dist = mx.array(np.array(LENSES[5], np.float32))
    pose = lie.se3_exp(mx.array([0.1, -0.2, 0.3, 0.05, -0.1, 0.2]))
    px = mx.array(rng.uniform([0, 0], [1280, 720], (4000, 2)).astype(np.float32))
    z = mx.array(rng.uniform(1, 5, 4000).astype(np.float32))
    calls = []
    monkeypatch.setattr(distortion_cuda, "newton_iterations",
                        lambda *a, _f=distortion_cuda.newton_iterations: calls.append(1) or _f(*a))

    def run():
        res = camera.unproject_points(px, z, k, pose, dist, return_valid=True)
        grads = mx.grad(lambda p, d: mx.sum(camera.unproject_points(p, z, k, pose, d) ** 2), argnums=(0, 1))(px, dist)
        return [np.array(a) for a in (res.points, res.valid, *grads)]

    fast = run()
    assert calls
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    ref = run()
    assert fast[1].all() and (fast[1] == ref[1]).all()
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-5, atol=1e-5)
    for f, r in zip(fast[2:], ref[2:]):
        np.testing.assert_allclose(f, r, rtol=1e-4, atol=1e-4 * np.abs(r).max())


_CAMERA_LAYOUTS = {  # points' shape, the cameras' batch
    "one camera": ((20000, 3), ()),
    "64 views of one cloud": ((3000, 3), (64,)),
    "a cloud per camera": ((8, 3000, 3), (8,)),
}


def _cameras(layout: str, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape, batch = _CAMERA_LAYOUTS[layout]
    z = rng.uniform(1, 6, shape[:-1])
    X = np.stack([rng.uniform(-0.55, 0.55, z.shape) * z, rng.uniform(-0.35, 0.35, z.shape) * z, z], -1)
    X.reshape(-1, 3)[:4] = [[0.1, 0.1, -1.0], [np.nan, 0, 1], [np.inf, 0, 1], [0, 0, 0]]
    K = np.broadcast_to(np.array([[800.0, 0.3, 640.0], [0.0, 790.0, 360.0], [0.0, 0.0, 1.0]]), (*batch, 3, 3))
    pose = lie.se3_exp(mx.array(rng.normal(0, 0.05, (*batch, 6)).astype(np.float32)))
    dist = mx.array((np.array(LENSES[k]) * np.ones((*batch, 1))).astype(np.float32)) if k else None
    return mx.array(X.astype(np.float32)), mx.array(K.astype(np.float32)), pose, dist


def _on_and_off(fn, monkeypatch):
    fast = [np.array(a) for a in fn()]
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    ref = [np.array(a) for a in fn()]
    monkeypatch.delenv("MLXGEOM_CUDA_KERNELS")
    return fast, ref


@pytest.mark.parametrize("layout", sorted(_CAMERA_LAYOUTS))
@pytest.mark.parametrize("k", [0, *sorted(LENSES)])
def test_projection_kernels_equal_the_pure_paths(layout, k, monkeypatch):
    X, K, pose, dist = _cameras(layout, k)
    (px, z, ok), (rpx, rz, rok) = _on_and_off(lambda: camera.project_points(X, K, pose, dist), monkeypatch)
    np.testing.assert_array_equal(ok, rok)
    assert ok.mean() > 0.99
    np.testing.assert_allclose(px[ok], rpx[rok], rtol=1e-5, atol=1e-3)  # pixels of a 1280 x 720 image
    np.testing.assert_allclose(z, rz, rtol=1e-6, atol=1e-6)
    pixels = mx.array(rpx) + 0.3
    fast, ref = _on_and_off(lambda: camera.unproject_points(pixels, mx.array(rz), K, pose, dist, return_valid=True),
                            monkeypatch)
    # Convergence is a threshold on a float32 residual: FMA contraction may flip a rare borderline point.
    assert (fast[2] != ref[2]).mean() < 1e-3 and fast[2].mean() > 0.98
    both = fast[2] & ref[2]
    for f, r in zip(fast[:2], ref[:2]):
        np.testing.assert_allclose(f[both], r[both], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("layout", sorted(_CAMERA_LAYOUTS))
def test_fisheye_projection_kernel_equals_the_pure_path_in_values_and_gradients(layout, monkeypatch):
    X, K, pose, _ = _cameras(layout, 0)
    dist = mx.array(np.array(FISHEYE_LENS, np.float32))
    calls = []
    monkeypatch.setattr(projection_cuda, "project", lambda *a, _f=projection_cuda.project: calls.append(a[-1]) or _f(*a))

    def run():
        proj = camera.project_points(X, K, pose, dist, model="fisheye")
        grad = mx.grad(lambda X: mx.sum(mx.where(proj.valid[..., None],
                                                 camera.project_points(X, K, pose, dist, model="fisheye").pixels, 0.0)))(X)
        return proj.pixels, proj.depth, proj.valid, grad

    (px, z, ok, g), (rpx, rz, rok, rg) = _on_and_off(run, monkeypatch)
    assert calls == ["fisheye", "fisheye"]
    np.testing.assert_array_equal(ok, rok)
    assert ok.mean() > 0.99
    np.testing.assert_allclose(px[ok], rpx[rok], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(z, rz, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g, rg, rtol=1e-4, atol=1e-4 * np.nanmax(np.abs(rg)))


def test_projection_kernels_compile_at_two_batch_sizes_and_differentiate_as_the_pure_paths(monkeypatch):
    calls = set()
    for name in ("project", "unproject"):
        fn = getattr(projection_cuda, name)
        monkeypatch.setattr(projection_cuda, name, lambda *a, _f=fn, _n=name: calls.add(_n) or _f(*a))

    def loss(X, K, pose, dist):
        proj = camera.project_points(X, K, pose, dist)
        back = camera.unproject_points(proj.pixels + 0.5, proj.depth, K, pose, dist)
        return mx.sum(mx.where(proj.valid[..., None], proj.pixels, 0.0) ** 2) * 1e-6 + mx.sum(back ** 2)

    def flat(value, grads):
        return [np.array(a) for a in (value, *grads)]

    compiled = mx.compile(mx.value_and_grad(loss, argnums=(0, 2, 3)))
    for layout in ("one camera", "64 views of one cloud"):
        X, K, pose, dist = _cameras(layout, 5, seed=1)
        X = mx.where(mx.all(mx.isfinite(X), axis=-1, keepdims=True) & (X[..., 2:] > 0), X, mx.array([0.1, 0.1, 2.0]))
        fast = flat(*compiled(X, K, pose, dist))
        monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
        ref = flat(*mx.value_and_grad(loss, argnums=(0, 2, 3))(X, K, pose, dist))
        monkeypatch.delenv("MLXGEOM_CUDA_KERNELS")
        for f, r in zip(fast, ref):
            np.testing.assert_allclose(f, r, rtol=1e-4, atol=1e-4 * np.abs(r).max())
    assert calls == {"project", "unproject"}
