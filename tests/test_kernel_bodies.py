"""Every CUDA kernel (mlxgeom/kernels/*.cu), compiled with g++ for the CPU, equals the pure-mx path it replaces.

The kernels themselves run only on MLX's CUDA backend (tests/test_cuda_kernels.py). Here a stand-in for
``mx.fast.cuda_kernel`` compiles the same header and body with g++ (the kernels' ``#ifndef __CUDACC__``
branches read and write an element directly and give a warp one lane) and runs one call per thread of
the grid, so the public functions run through their kernels' wrappers (packing, broadcasting,
derivatives) everywhere CI runs; the GPU branches are compiled (not run) with shims for CUDA's intrinsics.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from helpers import FISHEYE_LENS, LENSES
from test_cuda_kernels import _pnp_points, _rotation_vectors
from mlxgeom import _cuda, lie, linalg
from mlxgeom.camera import distortion, distortion_cuda, projection, projection_cuda
from mlxgeom.lie import lie_cuda, se3, so3
from mlxgeom.linalg import inverse_cuda, matrix_exp_cuda
from mlxgeom.linalg.inverse import _inverse_adjugate
from mlxgeom import optim
from mlxgeom.optim import _pnp_init, _point_sums, pnp, pnp_cuda

matrix_exp_module = sys.modules["mlxgeom.linalg.matrix_exp"]
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

_FLOATS = ctypes.POINTER(ctypes.c_float)
_PRELUDE = """#include <cmath>
#include <math.h>
using std::isfinite;
#define __device__
#define __host__
#define __shared__ static
struct Dim { long long x; };
static Dim blockIdx, threadIdx, blockDim;
"""
# The kernels' GPU branches (shared-memory staging, warp shuffles) cannot run here; g++ checks that they compile.
_GPU_SHIMS = """#define MLXGEOM_GPU 1
static inline void __syncthreads() {}
static inline float __shfl_xor_sync(unsigned, float v, int) { return v; }
"""
_MODULES = (inverse_cuda, matrix_exp_cuda, lie_cuda, distortion_cuda, projection_cuda, pnp_cuda)


class _CpuKernel:
    """Stand-in for ``mx.fast.cuda_kernel``: g++ builds MLX's kernel function from the same header, template
    constants and body; the call evaluates its inputs (so it syncs: not for ``mx.compile``)."""

    def __init__(self, build_dir, name, input_names, output_names, source, header):
        self.build_dir, self.inputs, self.outputs, self.source, self.header = build_dir, input_names, output_names, source, header

    def __call__(self, inputs, template, grid, threadgroup, output_shapes, output_dtypes):
        assert grid[0] % threadgroup[0] == 0 and all(d == mx.float32 for d in output_dtypes)
        arrays = [np.ascontiguousarray(np.array(a), np.float32) for a in inputs]
        consts = "".join(f"  constexpr {'bool' if isinstance(v, bool) else 'int'} {n} = {str(v).lower()};\n"
                         for n, v in template if n != "WARP") + "  constexpr int WARP = 1;\n"
        shapes = "".join(f"  const long long {n}_shape[] = {{{', '.join(map(str, a.shape)) or '1'}}};\n"
                         for n, a in zip(self.inputs, arrays))
        params = ", ".join([f"const float* {n}" for n in self.inputs] + [f"float* {n}" for n in self.outputs])
        src = (_PRELUDE + self.header + f"\nstatic void thread({params}) {{\n" + consts + shapes + self.source
               + f"\n}}\nextern \"C\" void run(long long grid_, long long group_, {params}) {{\n  blockDim.x = group_;\n"
               "  for (long long i_ = 0; i_ < grid_; ++i_) {\n    blockIdx.x = i_ / group_; threadIdx.x = i_ % group_;\n"
               f"    thread({', '.join([*self.inputs, *self.outputs])});\n  }}\n}}\n")
        outs = [np.full(shape, np.nan, np.float32) for shape in output_shapes]
        _library(src, self.build_dir).run(ctypes.c_longlong(grid[0]), ctypes.c_longlong(threadgroup[0]),
                                          *(a.ctypes.data_as(_FLOATS) for a in arrays + outs))
        return [mx.array(o) for o in outs]


_LIBRARIES: dict[str, ctypes.CDLL] = {}


def _library(src: str, build_dir) -> ctypes.CDLL:
    """g++'s build of ``src``, once per source (a loaded library must not be overwritten), after a syntax
    check of the same source with the GPU branches on."""
    name = hashlib.sha1(src.encode()).hexdigest()[:16]
    if name not in _LIBRARIES:
        (build_dir / f"{name}.cpp").write_text(src)
        (build_dir / f"{name}_gpu.cpp").write_text(_GPU_SHIMS + src)
        subprocess.run(["g++", "-fsyntax-only", "-Werror=return-type", str(build_dir / f"{name}_gpu.cpp")], check=True)
        lib = build_dir / f"{name}.so"
        subprocess.run(["g++", "-O0", "-shared", "-fPIC", "-o", str(lib), str(build_dir / f"{name}.cpp")], check=True)
        _LIBRARIES[name] = ctypes.CDLL(str(lib))
    return _LIBRARIES[name]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernels")


@pytest.fixture
def kernels_on_cpu(build_dir, monkeypatch):
    """Every fast path on (unless MLXGEOM_CUDA_KERNELS=0), its kernel run by g++ on the CPU."""
    device = mx.default_device()
    mx.set_default_device(mx.cpu)
    # The stand-in evaluates its inputs on the host, which mx.compile forbids: library cores run eagerly here.
    monkeypatch.setenv("MLXGEOM_COMPILE", "0")
    for module in _MODULES:
        monkeypatch.setattr(module, "on_cuda", lambda: os.environ.get("MLXGEOM_CUDA_KERNELS", "1") != "0")
    monkeypatch.setattr(_cuda.mx.fast, "cuda_kernel", lambda **kw: _CpuKernel(build_dir, **kw))
    _cuda._kernel.cache_clear()
    yield
    mx.set_default_device(device)
    _cuda._kernel.cache_clear()


def _assert_same_values(got, ref, rtol: float = 1e-6, atol: float = 1e-7):
    got, ref = np.array(got), np.array(ref)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=rtol, atol=atol)


@pytest.mark.parametrize("n", [3, 4])
def test_inverse_kernel_equals_the_pure_adjugate_at_every_scale(n, kernels_on_cpu):
    rng = np.random.default_rng(n)
    a = 0.3 * rng.normal(size=(6, 300, n, n)) + 3 * np.eye(n)
    a *= np.array([1e-30, 1e-20, 1.0, 1e10, 1e20, 1e30])[:, None, None, None]
    a[2, :3] = [np.zeros((n, n)), np.full((n, n), np.nan), np.diag([np.inf] + [1.0] * (n - 1))]
    a = mx.array(a.astype(np.float32))
    assert inverse_cuda.enabled(a)
    _assert_same_values(inverse_cuda.inverse(a), _inverse_adjugate(a), rtol=1e-6, atol=0)
    ref = np.linalg.inv(np.array(a[[0, 1, 3, 4, 5]]).astype(np.float64))
    norm = np.abs(ref).max(axis=(-2, -1), keepdims=True)  # every scale's inverse fits float32
    np.testing.assert_allclose(np.array(linalg.inv(a[[0, 1, 3, 4, 5]])) / norm, ref / norm, atol=1e-5)


@pytest.mark.parametrize("n", [3, 4])
def test_matrix_exp_kernel_equals_the_pure_path_across_norms_and_shifts(n, kernels_on_cpu):
    rng = np.random.default_rng(n)
    parts = [rng.normal(size=(60, n, n)) * s for s in (0.0, 1e-8, 1e-3, 0.5, 3.0, 10.0)]
    parts += [rng.normal(size=(60, n, n)) - 5 * np.eye(n), rng.normal(size=(20, n, n)) * 1e5]
    a = mx.array(np.concatenate(parts).astype(np.float32))
    assert matrix_exp_cuda.enabled(a)
    fast = np.array(linalg.matrix_exp(a))
    ref = np.array(matrix_exp_module._expm(a, matrix_exp_module.DEFAULT_MAX_SQUARINGS))
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))  # 1-norms beyond the budget: NaN
    ok = np.isfinite(ref).all(axis=(1, 2))
    assert ok.mean() > 0.9
    rel = np.linalg.norm(fast[ok] - ref[ok], axis=(1, 2)) / np.linalg.norm(ref[ok], axis=(1, 2))
    # Entries ~ N(0, 10^2): exp mixes e^+-40, so rounding differences grow (the pure path is 2e-5 from scipy there).
    assert rel.max() < 1e-4 and np.median(rel) < 1e-6


def test_lie_kernels_equal_the_pure_closed_forms(kernels_on_cpu):
    phi = _rotation_vectors(700, 1)
    xi = mx.concatenate([mx.random.normal((700, 3), key=mx.random.key(1)), phi], axis=-1)
    r, t = so3._exp_pure(phi), se3._exp_pure(xi)
    p = 5 * mx.random.normal((700, 3), key=mx.random.key(2))
    assert lie_cuda.enabled(phi) and lie_cuda.act_enabled(r, p) and lie_cuda.act_enabled(t[:1], p)
    pairs = [(lie_cuda.so3_exp(phi), r, 2e-6), (lie_cuda.se3_exp(xi), t, 2e-6),
             (lie_cuda.so3_log(r), so3._log_pure(r), 2e-6), (lie_cuda.se3_log(t), se3._log_pure(t), 1e-5),
             (lie_cuda.so3_act(r, p), so3._act_pure(r, p), 1e-6), (lie_cuda.se3_act(t, p), se3._act_pure(t, p), 1e-6),
             (lie_cuda.se3_act(t[:1], p), se3._act_pure(t[:1], p), 1e-6)]
    for fast, ref, atol in pairs:
        _assert_same_values(fast, ref, rtol=1e-5, atol=atol)


def test_lie_fast_paths_keep_batch_dims_and_differentiate_as_the_pure_paths(kernels_on_cpu, monkeypatch):
    xi = mx.concatenate([mx.random.normal((2, 5, 3), key=mx.random.key(3)), _rotation_vectors(10, 4).reshape(2, 5, 3)], -1)
    p = mx.random.normal((2, 5, 3), key=mx.random.key(5))
    w = mx.arange(16, dtype=mx.float32).reshape(4, 4) / 10

    def run():
        loss = lambda x, q: mx.sum(w * lie.se3_exp(x)) + mx.sum(lie.se3_act(lie.se3_exp(x), q)) + mx.sum(lie.se3_log(lie.se3_exp(x)) * q[..., :1])  # noqa: E731
        return [lie.so3_exp(xi[..., 3:]), *mx.grad(loss, argnums=(0, 1))(xi, p)]

    fast = run()
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    for f, r in zip(fast, run()):
        assert f.shape == r.shape
        np.testing.assert_allclose(np.array(f), np.array(r), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", sorted(LENSES))
@pytest.mark.parametrize("iterations, cameras", [(0, 1), (10, 1), (10, 2)])  # the start, the loop, per-point lenses
def test_undistortion_kernel_equals_the_pure_newton_iterations(k, iterations, cameras, kernels_on_cpu, monkeypatch):
    rng = np.random.default_rng(k)
    t = rng.uniform([-0.9, -0.6], [0.9, 0.6], (cameras, 2000, 2)).astype(np.float32)  # beyond some lenses' images too
    t[:, :4] = [[0, 0], [np.inf, 0], [np.nan, 1], [1e30, -1e30]]
    c = (np.array(LENSES[k]) * np.linspace(1.0, 0.8, cameras)[:, None, None]).astype(np.float32)
    tx, ty, coeffs = mx.array(t[..., 0]), mx.array(t[..., 1]), [mx.array(c[..., i]) for i in range(k)]
    assert distortion_cuda.enabled(tx, ty, coeffs)
    fast = distortion._newton_iterations(tx, ty, coeffs, iterations)
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    for f, r in zip(fast, distortion._newton_iterations(tx, ty, coeffs, iterations)):
        _assert_same_values(f, r, rtol=1e-6, atol=1e-7)


def _scene(k: int, cameras: int, with_pose: bool):
    """Points (N, 3) before the cameras, some behind, at depth 0, NaN or inf; cameras (C,)."""
    rng = np.random.default_rng(k + 20 * cameras)
    n = 2000
    z = rng.uniform(0.5, 6, n)
    X = np.stack([rng.uniform(-0.8, 0.8, n) * z, rng.uniform(-0.5, 0.5, n) * z, z], -1).astype(np.float32)
    X[:6] = [[0, 0, 0], [1, 1, -2], [0.1, 0.2, 1e-7], [np.nan, 0, 1], [np.inf, 0, 1], [0, 0, np.inf]]
    K = np.array([[800.0, 0.5, 640.0], [0.0, 790.0, 360.0], [0.0, 0.0, 1.0]], np.float32) * np.ones((cameras, 1, 1), np.float32)
    K[-1, 1, 1] = -1.0 if cameras > 1 else K[-1, 1, 1]  # a camera with fy < 0: nothing valid
    pose = lie.se3_exp(mx.array(rng.normal(0, 0.1, (cameras, 6)).astype(np.float32))) if with_pose else None
    dist = mx.array((np.array(LENSES[k]) * np.linspace(1.0, 0.7, cameras)[:, None]).astype(np.float32)) if k else None
    return mx.array(X), mx.array(K), pose, dist


@pytest.mark.parametrize("k", [0, *sorted(LENSES)])
@pytest.mark.parametrize("cameras, with_pose", [(1, False), (1, True), (3, True)])
def test_projection_kernel_equals_the_pure_projection(k, cameras, with_pose, kernels_on_cpu):
    X, K, pose, dist = _scene(k, cameras, with_pose)
    _assert_projection_kernel_equals_the_pure_one(X, K, pose, dist, "opencv")


@pytest.mark.parametrize("cameras, with_pose", [(1, False), (3, True)])
def test_fisheye_projection_kernel_equals_the_pure_projection(cameras, with_pose, kernels_on_cpu):
    X, K, pose, _ = _scene(0, cameras, with_pose)
    dist = mx.array((np.array(FISHEYE_LENS) * np.linspace(1.0, 0.7, cameras)[:, None]).astype(np.float32))
    _assert_projection_kernel_equals_the_pure_one(X, K, pose, dist, "fisheye")


def _assert_projection_kernel_equals_the_pure_one(X, K, pose, dist, model):
    pixels, depth, valid = projection_cuda.project(X, K, pose, dist, 1e-6, model)
    ref = projection._project_values(X, K, pose, dist, model, 1e-6)
    _assert_same_values(pixels, ref[0], rtol=2e-6, atol=1e-4)
    _assert_same_values(depth, ref[1])
    np.testing.assert_array_equal(np.array(valid) == 1.0, np.array(ref[2]))
    assert np.array(ref[2]).sum() > 0.9 * X.shape[0]


@pytest.mark.parametrize("k", [0, *sorted(LENSES)])
@pytest.mark.parametrize("cameras, with_pose", [(1, False), (3, True)])
def test_unprojection_kernel_equals_the_pure_unprojection(k, cameras, with_pose, kernels_on_cpu):
    _, K, pose, dist = _scene(k, cameras, with_pose)
    rng = np.random.default_rng(k)
    px = rng.uniform([-100, -100], [1380, 820], (2000, 2)).astype(np.float32)  # some beyond a strong lens's image
    px[:3] = [[np.nan, 0], [np.inf, 5], [640, 360]]
    z = rng.uniform(0.5, 8, 2000).astype(np.float32)
    z[3:5] = [np.inf, 0.0]
    px, z = mx.array(px), mx.array(z)
    tol = distortion.newton_tol(mx.float32)
    fast = projection_cuda.unproject(px, z, K, pose, dist, 10, tol)
    ref = projection._unproject_values(px, z, K, pose, dist, "opencv", 10, None)
    _assert_same_values(fast[0], ref[0], rtol=1e-5, atol=1e-5)
    _assert_same_values(fast[1], ref[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.array(fast[2]) == 1.0, np.array(ref[2]))
    assert 0.5 * px.shape[0] < np.array(ref[2])[0].sum() < px.shape[0]


_LAYOUTS = {  # points' shape, K's batch, pose's batch
    "one camera": ((500, 3), (), ()),
    "64 views of one cloud": ((500, 3), (64,), (64,)),
    "a cloud per camera": ((4, 500, 3), (4,), (4,)),
    "one intrinsics, many poses": ((2, 1, 500, 3), (), (2, 3)),
    "a single point": ((3,), (), ()),
}


def _layout(name: str, k: int):
    rng = np.random.default_rng(len(name))
    shape, k_batch, pose_batch = _LAYOUTS[name]
    z = rng.uniform(1, 6, shape[:-1])
    X = np.stack([rng.uniform(-0.6, 0.6, z.shape) * z, rng.uniform(-0.4, 0.4, z.shape) * z, z], -1)
    K = np.broadcast_to(np.array([[800.0, 0.3, 640.0], [0.0, 790.0, 360.0], [0.0, 0.0, 1.0]]), (*k_batch, 3, 3))
    pose = lie.se3_exp(mx.array(rng.normal(0, 0.05, (*pose_batch, 6)).astype(np.float32)))
    dist = mx.array(np.array(LENSES[k], np.float32)) if k else None
    return mx.array(X.astype(np.float32)), mx.array(K.astype(np.float32)), pose, dist


@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
@pytest.mark.parametrize("k", [0, 5, 14])
def test_projection_fast_paths_keep_shapes_values_and_gradients(layout, k, kernels_on_cpu, monkeypatch):
    X, K, pose, dist = _layout(layout, k)
    fast_calls = set()
    for name in ("project", "unproject"):
        monkeypatch.setattr(projection_cuda, name, lambda *a, _f=getattr(projection_cuda, name), _n=name: fast_calls.add(_n) or _f(*a))

    def run():
        proj = projection.project_points(X, K, pose, dist)
        px = proj.pixels + 0.25
        un = projection.unproject_points(px, proj.depth, K, pose, dist, return_valid=True)
        grads = mx.grad(lambda X, pose: mx.sum(projection.project_points(X, K, pose, dist).pixels ** 2)
                        + mx.sum(projection.unproject_points(px, proj.depth, K, pose, dist) ** 2), argnums=(0, 1))(X, pose)
        return [np.array(a) for a in (*proj, *un, *grads)]

    fast = run()
    assert fast_calls == {"project", "unproject"}
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    ref = run()
    for f, r in zip(fast, ref):
        assert f.shape == r.shape and f.dtype == r.dtype
        if f.dtype == np.bool_:
            np.testing.assert_array_equal(f, r)
        else:
            np.testing.assert_allclose(f, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())
    assert fast[2].all() and fast[5].all()


@pytest.mark.parametrize("loss_name", [None, "huber", "cauchy", "tukey", "soft_l1", "geman_mcclure"])
def test_pnp_normal_equation_kernel_equals_the_pure_sums(loss_name, kernels_on_cpu, monkeypatch):
    pose, k, points = _pnp_points((3, 7), 45, 1)
    loss = optim.get_loss(loss_name, 3.0)
    assert pnp_cuda.enabled(pose, k, points, loss)
    fast = np.array(pnp_cuda.point_totals(pose, k, points, loss))
    ref = np.array(_point_sums.sum_blocks(lambda *rows: pnp._point_terms(pose, k, loss, *rows), points))
    assert fast.shape == (3, 7, pnp_cuda.TERMS)
    scale = np.abs(ref).max(axis=-1, keepdims=True)  # each problem's terms, relative to its largest
    np.testing.assert_allclose(fast / scale, ref / scale, rtol=1e-5, atol=1e-5)


def test_pnp_point_moment_kernel_equals_the_pure_moments(kernels_on_cpu):
    rng = np.random.default_rng(2)
    pw = mx.array((rng.uniform(-2, 2, (3, 5, 40, 3)) + [30.0, -4.0, 7.0]).astype(np.float32))
    xn = mx.array(rng.normal(0, 0.5, (3, 5, 40, 2)).astype(np.float32))
    w = mx.array((rng.uniform(size=(3, 5, 40)) > 0.2).astype(np.float32))
    assert pnp_cuda.moments_enabled(pw, xn, w)
    for f, r in zip(pnp_cuda.point_moments(pw, xn, w), _pnp_init._packed_moments(pw, xn, w)):
        assert f.shape == r.shape
        np.testing.assert_allclose(np.array(f), np.array(r), rtol=1e-5, atol=1e-5 * float(mx.abs(r).max()))
