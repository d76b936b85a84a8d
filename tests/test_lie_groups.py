"""One axiom suite over SO3, SE3, SL3 x batch shapes x dtypes, plus the class-only API."""

import mlx.core as mx
import numpy as np
import pytest
from helpers import FLOAT_DTYPES, to_np
from scipy.spatial.transform import Rotation

from mlxgeom import lie
from mlxgeom.lie import SE3, SL3, SO3

HAT_VEE = {SO3: (lie.so3_hat, lie.so3_vee), SE3: (lie.se3_hat, lie.se3_vee), SL3: (lie.sl3_hat, lie.sl3_vee)}
GROUPS = [SO3, SE3, SL3]
SHAPES = [(), (4,), (2, 3)]


def _tol(group, dtype):
    base = 1e-12 if dtype == mx.float64 else 2e-5
    return base * (10 if group is SL3 else 1)


def _sample(group, shape, dtype, seed):
    if group is SL3:
        return SL3.random(shape, key=mx.random.key(seed), dtype=dtype)
    return group.random(shape, key=mx.random.key(seed), dtype=dtype)


def _tangent(group, shape, dtype, seed, scale=0.5):
    return mx.array(np.random.default_rng(seed).standard_normal((*shape, group.tangent_dim)) * scale, dtype=dtype)


def _close(a, b, tol):
    a = a.matrix if isinstance(a, lie.MatrixLieGroup) else a
    b = b.matrix if isinstance(b, lie.MatrixLieGroup) else b
    np.testing.assert_allclose(to_np(a), to_np(b), atol=tol, rtol=0)


axioms = pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
shapes = pytest.mark.parametrize("shape", SHAPES, ids=str)
dtypes = pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)


@axioms
@shapes
@dtypes
def test_identity_is_neutral_and_inverse_gives_identity(group, shape, dtype):
    x = _sample(group, shape, dtype, 0)
    e = group.identity(shape, dtype=dtype)
    assert x.batch_shape == shape and (x @ e).dtype == dtype
    _close(x @ e, x, _tol(group, dtype))
    _close(e @ x, x, _tol(group, dtype))
    _close(x @ x.inverse(), e, _tol(group, dtype))
    _close(x.inverse() @ x, e, _tol(group, dtype))


@axioms
@dtypes
def test_composition_is_associative(group, dtype):
    a, b, c = (_sample(group, (5,), dtype, s) for s in (1, 2, 3))
    _close((a @ b) @ c, a @ (b @ c), 5 * _tol(group, dtype))


@axioms
@shapes
@dtypes
def test_exp_log_round_trip(group, shape, dtype):
    v = _tangent(group, shape, dtype, 4)
    _close(group.exp(v).log(), v, 5 * _tol(group, dtype))
    x = _sample(group, shape, dtype, 5)
    _close(group.exp(x.log()), x, 5 * _tol(group, dtype))


@axioms
@dtypes
def test_adjoint_maps_tangents_like_conjugation(group, dtype):
    hat, vee = HAT_VEE[group]
    x = _sample(group, (6,), dtype, 6)
    v = _tangent(group, (6,), dtype, 7)
    conj = vee((x @ group(hat(v)) @ x.inverse()).matrix)
    _close(mx.sum(x.adjoint() * v[..., None, :], axis=-1), conj, 5 * _tol(group, dtype))
    # exp(Ad_X v) = X exp(v) X^-1
    _close(group.exp(mx.sum(x.adjoint() * v[..., None, :], axis=-1)), x @ group.exp(v) @ x.inverse(), 10 * _tol(group, dtype))


@axioms
@dtypes
def test_rplus_and_rminus_are_right_perturbations_and_inverse_to_each_other(group, dtype):
    x, y = _sample(group, (5,), dtype, 8), _sample(group, (5,), dtype, 9)
    d = _tangent(group, (5,), dtype, 10, scale=0.3)
    _close(x.rplus(d), x @ group.exp(d), _tol(group, dtype))
    _close(x.rplus(d).rminus(x), d, 10 * _tol(group, dtype))
    _close(y.rplus(x.rminus(y)), x, 10 * _tol(group, dtype))


@axioms
@dtypes
def test_jacobians_relate_through_the_adjoint(group, dtype):
    v = _tangent(group, (4,), dtype, 11)
    # J_l(v) = Ad(exp(v)) J_r(v) (Sola et al. eq. 145)
    jl, jr = group.left_jacobian(v), group.right_jacobian(v)
    ad = group.exp(v).adjoint()
    _close(jl, mx.sum(ad[..., :, :, None] * jr[..., None, :, :], axis=-2), 10 * _tol(group, dtype))


@axioms
def test_interpolate_hits_endpoints_and_geodesic_midpoint(group):
    a, b = _sample(group, (3,), mx.float32, 12), _sample(group, (3,), mx.float32, 13)
    tol = 20 * _tol(group, mx.float32)
    _close(group.interpolate(a, b, 0.0), a, tol)
    _close(group.interpolate(a, b, 1.0), b, tol)
    mid = group.interpolate(a, b, mx.array([0.5, 0.5, 0.5]))
    _close(mid.rminus(a), b.rminus(mid), tol)


@axioms
def test_action_on_points_is_the_matrix_product(group):
    x = _sample(group, (4,), mx.float32, 14)
    p = mx.array(np.random.default_rng(15).standard_normal((4, 3)), dtype=mx.float32)
    m = to_np(x.matrix)
    ref = np.einsum("bij,bj->bi", m[:, :3, :3], to_np(p)) + (m[:, :3, 3] if group is SE3 else 0)
    np.testing.assert_allclose(to_np(x @ p), ref, atol=1e-5)


@axioms
def test_groups_cross_grad_and_compile_as_tuples(group):
    x = _sample(group, (3,), mx.float32, 16)
    out = mx.compile(lambda a: a @ a.inverse())(x)
    assert type(out) is group
    g = mx.grad(lambda a: mx.sum(a.log() ** 2))(x)
    assert type(g) is group and np.all(np.isfinite(to_np(g.matrix)))


def test_composing_different_groups_raises_type_error():
    with pytest.raises(TypeError):
        SO3.identity() @ SE3.identity()


def test_so3_random_is_haar_uniform_and_reproducible():
    r = SO3.random((20000,), key=mx.random.key(3))
    assert np.abs(to_np(r.matrix).mean(axis=0)).max() < 0.03
    # The angle density of Haar rotations is (1 - cos t) / pi on [0, pi]: E[t] = pi/2 + 2/pi.
    assert abs(np.linalg.norm(to_np(r.log()), axis=-1).mean() - (np.pi / 2 + 2 / np.pi)) < 0.02
    _close(SO3.random((3,), key=mx.random.key(7)), SO3.random((3,), key=mx.random.key(7)), 0)


def test_so3_constructors_and_views_agree_with_scipy():
    rot = Rotation.random(8, random_state=np.random.default_rng(17))
    m = rot.as_matrix()
    x = SO3.from_quaternion(mx.array(rot.as_quat()), order="xyzw")
    _close(x, m, 1e-6)
    _close(SO3.from_rotvec(mx.array(rot.as_rotvec())), m, 1e-6)
    _close(SO3.from_euler(mx.array(rot.as_euler("ZYX")), "ZYX"), m, 1e-6)
    _close(SO3.from_6d(x.as_6d()), m, 1e-6)
    _close(x.as_euler("zxz"), rot.as_euler("zxz"), 3e-5)
    _close(x.as_rotvec(), rot.as_rotvec(), 2e-6)
    q = to_np(x.as_quaternion())
    np.testing.assert_allclose(np.abs(np.sum(q[:, [1, 2, 3, 0]] * rot.as_quat(), axis=-1)), 1.0, atol=1e-6)


def test_se3_from_rt_rotation_translation_round_trip():
    r = SO3.random((5,), key=mx.random.key(1))
    t = mx.array(np.random.default_rng(18).standard_normal((5, 3)), dtype=mx.float32)
    x = SE3.from_rt(r, t)
    _close(x.rotation, r, 0)
    _close(x.translation, t, 0)
    _close(SE3.from_matrix(x.matrix, project=False), x, 0)


def test_from_matrix_project_returns_the_nearest_rotation():
    rng = np.random.default_rng(19)
    m = Rotation.random(6, random_state=rng).as_matrix() + 0.05 * rng.standard_normal((6, 3, 3))
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    ref = u @ (np.eye(3) * np.r_[1, 1, 0][:, None] + np.diag([0, 0, 1]) * d[:, None, None]) @ vt
    _close(SO3.from_matrix(mx.array(m), project=True), ref, 1e-5)
    t = np.tile(np.eye(4), (6, 1, 1))
    t[:, :3, :3] = m
    _close(SE3.from_matrix(mx.array(t), project=True).rotation, ref, 1e-5)


def test_chordal_mean_matches_scipy_and_karcher_mean_zeroes_the_mean_residual():
    rng = np.random.default_rng(20)
    center = Rotation.random(random_state=rng)
    rot = center * Rotation.from_rotvec(0.3 * rng.standard_normal((50, 3)))
    x = SO3(mx.array(rot.as_matrix(), dtype=mx.float64))
    _close(x.mean(method="chordal"), rot.mean().as_matrix(), 1e-10)
    m = x.mean(method="karcher")
    resid = mx.mean(x.rminus(SO3(m.matrix[None])), axis=0)
    assert np.abs(to_np(resid)).max() < 1e-10
    poses = SE3.from_rt(x, mx.array(rng.standard_normal((50, 3)), dtype=mx.float64))
    pm = poses.mean(method="karcher")
    assert np.abs(to_np(mx.mean(poses.rminus(SE3(pm.matrix[None])), axis=0))).max() < 1e-10


def test_sl3_karcher_mean_and_chordal_is_rejected():
    h = SL3.random((10,), key=mx.random.key(2), scale=0.2)
    m = h.mean(method="karcher")
    assert np.abs(to_np(mx.mean(h.rminus(SL3(m.matrix[None])), axis=0))).max() < 1e-4
    with pytest.raises(ValueError, match="karcher"):
        h.mean(method="chordal")
    with pytest.raises(ValueError, match="axis"):
        h.mean(axis=2)


@pytest.mark.parametrize("group, m", [(SO3, 2 * np.eye(3)), (SE3, np.diag([2.0, 2.0, 2.0, 5.0])), (SL3, 2 * np.eye(3))])
def test_from_matrix_projects_a_non_member_onto_the_group(group, m):
    x = group.from_matrix(mx.array(m, dtype=mx.float32))
    np.testing.assert_allclose(to_np(x.matrix), np.eye(group.matrix_size), atol=1e-6)
    # project=False is the documented unchecked path: the matrix is stored as given.
    np.testing.assert_array_equal(to_np(group.from_matrix(mx.array(m, dtype=mx.float32), project=False).matrix), m)


def test_from_matrix_keeps_a_rotation():
    r = SO3.random((5,), key=mx.random.key(3))
    _close(SO3.from_matrix(r.matrix), r, 1e-6)
