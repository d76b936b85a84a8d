"""The CUDA kernels' C bodies, compiled with g++ for the CPU, equal the pure-mx paths they replace.

The kernels themselves run only on MLX's CUDA backend (tests/test_cuda_kernels.py); this checks
their arithmetic everywhere CI runs, element by element in a plain loop.
"""

import ctypes
import functools
import hashlib
import math
import shutil
import subprocess

import mlx.core as mx
import numpy as np
import pytest

from helpers import LENSES
from mlxgeom import lie
from mlxgeom.camera import distortion, distortion_cuda, projection, projection_cuda

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

_FLOATS = ctypes.POINTER(ctypes.c_float)


@functools.cache
def _compile(src: str, tmp_path) -> ctypes.CDLL:
    """The loaded library of ``src`` (a file name per source: a loaded library must not be overwritten)."""
    name = hashlib.sha1(src.encode()).hexdigest()[:16]
    (tmp_path / f"{name}.cpp").write_text(src)
    lib = tmp_path / f"{name}.so"
    subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / f"{name}.cpp")], check=True)
    return ctypes.CDLL(str(lib))


def _run_kernel(source: str, inputs: dict[str, np.ndarray], outputs: dict[str, tuple[int, ...]], tmp_path,
                threads: int | None = None):
    """Run an ``mx.fast.cuda_kernel`` source on the CPU, one call per thread index (``threads``, by default
    the first output's rows), with MLX's ``NAME_shape`` arrays; float32 inputs and outputs."""
    params = [f"const float* {n}" for n in inputs] + [f"float* {n}" for n in outputs]
    shapes = "".join(f"  const long long {n}_shape[] = {{{', '.join(map(str, a.shape))}}};\n" for n, a in inputs.items())
    src = ("#include <cmath>\nusing std::isfinite;\nstruct Dim { long long x; };\n"
           f"static void thread(long long t, {', '.join(params)}) {{\n"
           "  const Dim blockIdx{0}, blockDim{1}, threadIdx{t};\n" + shapes + source + "\n}\n"
           f"extern \"C\" void run(long long n, {', '.join(params)}) {{\n"
           f"  for (long long t = 0; t < n; ++t) thread(t, {', '.join([*inputs, *outputs])});\n}}\n")
    lib = _compile(src, tmp_path)
    ins = [np.ascontiguousarray(a, np.float32) for a in inputs.values()]
    outs = [np.full(shape, np.nan, np.float32) for shape in outputs.values()]
    lib.run(ctypes.c_longlong(outs[0].shape[0] if threads is None else threads), *(a.ctypes.data_as(_FLOATS) for a in ins + outs))
    return outs

def _run_body(body: str, c: np.ndarray, t: np.ndarray, tmp_path) -> np.ndarray:
    """Run a ``launch`` body with inputs c (one element, read by all) and t (2 per element), out 2."""
    src = ("#include <cmath>\nextern \"C\" void run(const float* c_r, const float* t, float* out, long n) {\n"
           "  for (long i = 0; i < n; ++i) {\n    const float* t_r = t + 2 * i; float out_r[2];\n"
           f"{body}\n    out[2 * i] = out_r[0]; out[2 * i + 1] = out_r[1];\n  }}\n}}\n")
    out = np.zeros_like(t)
    _compile(src, tmp_path).run(c.ctypes.data_as(_FLOATS), t.ctypes.data_as(_FLOATS), out.ctypes.data_as(_FLOATS),
                              ctypes.c_long(math.prod(t.shape[:-1])))
    return out


@pytest.mark.parametrize("k", sorted(LENSES))
@pytest.mark.parametrize("iterations", [0, 1, 10])
def test_undistortion_body_equals_the_pure_newton_iterations(k, iterations, tmp_path, monkeypatch):
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")  # the pure path, on the CPU, in every test mode
    rng = np.random.default_rng(k)
    t = rng.uniform([-0.9, -0.6], [0.9, 0.6], (4000, 2)).astype(np.float32)  # beyond some lenses' images too
    t[:4] = [[0, 0], [np.inf, 0], [np.nan, 1], [1e30, -1e30]]
    c = np.array(LENSES[k], np.float32)
    got = _run_body(distortion_cuda.newton_body(k, iterations), c, t, tmp_path)
    with mx.stream(mx.cpu):
        x, y = distortion._newton_iterations(mx.array(t[:, 0]), mx.array(t[:, 1]), [mx.array(v) for v in c], iterations)
        ref = np.stack([np.array(x), np.array(y)], -1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-6, atol=1e-7)


def _assert_same_values(got: np.ndarray, ref: np.ndarray, rtol: float = 1e-6, atol: float = 1e-7):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=rtol, atol=atol)


def _scene(k: int, cameras: int, with_pose: bool):
    """Points (P, N, 3) before the cameras, some behind, at depth 0, NaN or inf; (C, M) packed cameras."""
    rng = np.random.default_rng(k + 20 * cameras)
    n = 3000
    z = rng.uniform(0.5, 6, n)
    X = np.stack([rng.uniform(-0.8, 0.8, n) * z, rng.uniform(-0.5, 0.5, n) * z, z], -1).astype(np.float32)
    X[:6] = [[0, 0, 0], [1, 1, -2], [0.1, 0.2, 1e-7], [np.nan, 0, 1], [np.inf, 0, 1], [0, 0, np.inf]]
    K = np.array([[800.0, 0.5, 640.0], [0.0, 790.0, 360.0], [0.0, 0.0, 1.0]], np.float32) * np.ones((cameras, 1, 1), np.float32)
    K[-1, 1, 1] = -1.0 if cameras > 1 else K[-1, 1, 1]  # a camera with fy < 0: nothing valid
    pose = np.array(lie.se3_exp(mx.array(rng.normal(0, 0.1, (cameras, 6)).astype(np.float32)))) if with_pose else None
    dist = (np.array(LENSES[k]) * np.linspace(1.0, 0.7, cameras)[:, None]).astype(np.float32) if k else None
    return X, K, pose, dist


@pytest.mark.parametrize("k", [0, *sorted(LENSES)])
@pytest.mark.parametrize("cameras, with_pose", [(1, False), (1, True), (3, True)])
def test_projection_kernel_equals_the_pure_projection(k, cameras, with_pose, tmp_path, monkeypatch):
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    X, K, pose, dist = _scene(k, cameras, with_pose)
    with mx.stream(mx.cpu):
        arrays = [mx.array(a) if a is not None else None for a in (X, K, pose, dist)]
        cam = np.array(projection_cuda._pack_camera(*arrays[1:]))
        ref = [np.array(a) for a in projection._project_values(*arrays, "opencv", 1e-6)]
    src = projection_cuda.project_body(with_pose, k, 1e-6)
    n = X.shape[0] * cameras
    pixels, depth, valid = _run_kernel(src, {"cam": cam, "p": X[None]}, {"pixels": (n, 2), "depth": (n,), "valid": (n,)},
                                       tmp_path)
    _assert_same_values(pixels.reshape(ref[0].shape), ref[0], rtol=2e-6, atol=1e-4)
    _assert_same_values(depth.reshape(ref[1].shape), ref[1])
    np.testing.assert_array_equal(valid.reshape(ref[2].shape) == 1.0, ref[2])
    assert ref[2].sum() > 0.9 * X.shape[0]


@pytest.mark.parametrize("k", [0, *sorted(LENSES)])
@pytest.mark.parametrize("cameras, with_pose", [(1, False), (3, True)])
def test_unprojection_kernel_equals_the_pure_unprojection(k, cameras, with_pose, tmp_path, monkeypatch):
    monkeypatch.setenv("MLXGEOM_CUDA_KERNELS", "0")
    _, K, pose, dist = _scene(k, cameras, with_pose)
    rng = np.random.default_rng(k)
    px = rng.uniform([-100, -100], [1380, 820], (3000, 2)).astype(np.float32)  # some beyond a strong lens's image
    px[:3] = [[np.nan, 0], [np.inf, 5], [640, 360]]
    z = rng.uniform(0.5, 8, 3000).astype(np.float32)
    z[3:5] = [np.inf, 0.0]
    with mx.stream(mx.cpu):
        arrays = [mx.array(a) if a is not None else None for a in (px, z, K, pose, dist)]
        cam = np.array(projection_cuda._pack_camera(*arrays[2:]))
        ref = [np.array(a) for a in projection._unproject_values(*arrays, "opencv", 10, None)]
    src = projection_cuda.unproject_body(with_pose, k, 10, distortion.newton_tol(mx.float32))
    n = px.shape[0] * cameras
    points, points_cam, valid = _run_kernel(src, {"cam": cam, "px": px[None], "z": z[None, :, None]},
                                            {"points": (n, 3), "points_cam": (n, 3), "valid": (n,)}, tmp_path)
    _assert_same_values(points.reshape(ref[0].shape), ref[0], rtol=1e-5, atol=1e-5)
    _assert_same_values(points_cam.reshape(ref[1].shape), ref[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(valid.reshape(ref[2].shape) == 1.0, ref[2])
    assert 0.5 * px.shape[0] < ref[2][0].sum() < px.shape[0]


class _CpuKernel:
    """Stand-in for ``mx.fast.cuda_kernel`` that runs the source with g++ on evaluated inputs (so it syncs:
    not for ``mx.compile``), one call per thread of the grid."""

    def __init__(self, tmp_path, name, input_names, output_names, source):
        self.tmp_path, self.inputs, self.outputs, self.source = tmp_path / name, input_names, output_names, source
        self.tmp_path.mkdir(exist_ok=True)

    def __call__(self, inputs, grid, threadgroup, output_shapes, output_dtypes):
        assert grid[0] % threadgroup[0] == 0 and all(d == mx.float32 for d in output_dtypes)
        arrays = {n: np.array(a) for n, a in zip(self.inputs, inputs)}
        shapes = dict(zip(self.outputs, output_shapes))
        outs = _run_kernel(self.source, arrays, shapes, self.tmp_path, threads=grid[0])
        return [mx.array(o) for o in outs]


@pytest.fixture
def camera_kernels_on_cpu(tmp_path, monkeypatch):
    """The projection kernels' wrappers (packing, broadcasting, derivatives) with the kernels run by g++."""
    monkeypatch.setattr(projection_cuda, "on_cuda", lambda: True)
    device = mx.default_device()
    mx.set_default_device(mx.cpu)  # the other fast paths stay off, on a CUDA machine too
    monkeypatch.setattr(projection_cuda.mx.fast, "cuda_kernel",
                        lambda **kw: _CpuKernel(tmp_path, kw["name"], kw["input_names"], kw["output_names"], kw["source"]))
    for fn in (projection_cuda._project_kernel, projection_cuda._unproject_kernel):
        fn.cache_clear()
    yield
    mx.set_default_device(device)
    for fn in (projection_cuda._project_kernel, projection_cuda._unproject_kernel):
        fn.cache_clear()


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
def test_projection_fast_paths_keep_shapes_values_and_gradients(layout, k, camera_kernels_on_cpu, monkeypatch):
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
