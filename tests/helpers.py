"""Shared test machinery: device-safety checks, compile at two batch sizes, references."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from typing import Any, Callable, Sequence

import mlx.core as mx
import numpy as np

# Primitives that only exist on MLX's CPU backend (DESIGN.md rule 1). linalg.solve lowers to LUF.
CPU_ONLY_PRIMITIVES = frozenset({"Inverse", "SVD", "QRF", "Eigh", "Eig", "LUF", "Cholesky"})

ON_GPU = mx.default_device() == mx.gpu
# float64 exists only on MLX's CPU backend; conftest runs float64 cases on the CPU device.
FLOAT_DTYPES = [mx.float32, mx.float64]


def on_cpu(dtype: mx.Dtype = mx.float64) -> contextlib.AbstractContextManager:
    """Context for building ``dtype`` references: the CPU device for float64, else a no-op."""
    return mx.stream(mx.cpu) if dtype == mx.float64 else contextlib.nullcontext()


def graph_primitives(fn: Callable[..., Any], *args: Any) -> set[str]:
    """Names of the primitives in the graph of ``fn(*args)``, traced with compile disabled."""
    mx.disable_compile()
    try:
        out = fn(*args)
        leaves = [x for x in _leaves(out) if isinstance(x, mx.array)]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "g.dot")
            mx.export_to_dot(path, *leaves)
            text = open(path).read()
    finally:
        mx.enable_compile()
    return set(re.findall(r'label ="(\w+)"', text))


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, (list, tuple)):
        return [leaf for t in tree for leaf in _leaves(t)]
    if isinstance(tree, dict):
        return [leaf for t in tree.values() for leaf in _leaves(t)]
    return [tree]


def assert_device_safe(fn: Callable[..., Any], make_args: Callable[[int], Sequence[Any]]) -> None:
    """Check DESIGN.md rules 1 and 3 for ``fn``.

    ``make_args(batch)`` builds arguments of batch size ``batch``. The function must hold no
    CPU-only primitive, run under ``mx.compile`` (a host sync inside raises), and give the
    eager result when the compiled function is called at two batch sizes. On the GPU the
    fused kernels of a compiled graph round differently from the eager ops (FMA contraction,
    reduction order), so there the match is to 1e-4 of each output's magnitude; accuracy
    itself is checked against float64 references elsewhere.
    """
    found = graph_primitives(fn, *make_args(3)) & CPU_ONLY_PRIMITIVES
    assert not found, f"CPU-only primitives in the graph: {sorted(found)}"
    compiled = mx.compile(fn)
    for batch in (2, 5):
        args = make_args(batch)
        eager = [np.array(x) for x in _leaves(fn(*args)) if isinstance(x, mx.array)]
        comp = [np.array(x) for x in _leaves(compiled(*args)) if isinstance(x, mx.array)]
        assert len(eager) == len(comp)
        for e, c in zip(eager, comp):
            assert e.shape == c.shape
            scale = float(np.max(np.abs(e[np.isfinite(e)]), initial=1.0)) if e.dtype.kind == "f" else 1.0
            tol = 1e-4 * max(scale, 1.0) if ON_GPU else 1e-5
            np.testing.assert_allclose(c, e, rtol=tol if ON_GPU else 1e-5, atol=tol, equal_nan=True)


def to_np(x: mx.array) -> np.ndarray:
    """float64 numpy copy of an mx array (for references)."""
    return np.array(x.astype(mx.float32) if x.dtype in (mx.float16, mx.bfloat16) else x).astype(np.float64)


#: OpenCV lenses with 4, 5, 8, 12 and 14 coefficients (barrel, rational, thin prism, tilt).
LENSES = {4: [-0.28, 0.07, 1e-3, -5e-4], 5: [-0.28, 0.07, 1e-3, -5e-4, -0.01],
          8: [0.3, -0.1, 1e-3, -5e-4, 0.02, 0.5, -0.05, 0.03],
          12: [-0.28, 0.07, 1e-3, -5e-4, -0.01, 0.01, 0.0, 1e-3, 1e-3, -2e-4, 5e-4, 1e-4],
          14: [-0.28, 0.07, 1e-3, -5e-4, -0.01, 0.01, 0.0, 1e-3, 1e-3, -2e-4, 5e-4, 1e-4, 0.02, -0.015]}
FISHEYE_LENS = [0.05, -0.01, 0.002, -0.0005]  # k1..k4 of OpenCV's fisheye model, a wide-angle lens
