"""The CUDA kernels' C bodies, compiled with g++ for the CPU, equal the pure-mx paths they replace.

The kernels themselves run only on MLX's CUDA backend (tests/test_cuda_kernels.py); this checks
their arithmetic everywhere CI runs, element by element in a plain loop.
"""

import ctypes
import math
import shutil
import subprocess

import mlx.core as mx
import numpy as np
import pytest

from helpers import LENSES
from mlxgeom.camera import distortion, distortion_cuda

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

_FLOATS = ctypes.POINTER(ctypes.c_float)

def _run_body(body: str, c: np.ndarray, t: np.ndarray, tmp_path) -> np.ndarray:
    """Run a ``launch`` body with inputs c (one element, read by all) and t (2 per element), out 2."""
    src = ("#include <cmath>\nextern \"C\" void run(const float* c_r, const float* t, float* out, long n) {\n"
           "  for (long i = 0; i < n; ++i) {\n    const float* t_r = t + 2 * i; float out_r[2];\n"
           f"{body}\n    out[2 * i] = out_r[0]; out[2 * i + 1] = out_r[1];\n  }}\n}}\n")
    (tmp_path / "body.cpp").write_text(src)
    lib = tmp_path / "body.so"
    subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "body.cpp")], check=True)
    out = np.zeros_like(t)
    ctypes.CDLL(str(lib)).run(c.ctypes.data_as(_FLOATS), t.ctypes.data_as(_FLOATS), out.ctypes.data_as(_FLOATS),
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
