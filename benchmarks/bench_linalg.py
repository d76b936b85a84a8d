"""Small-matrix inverse and matrix exponential: mlxgeom vs numpy, OpenCV, mx.linalg (CPU stream),
the split+compile formulation of MLX issue #1238, PyTorch (when installed) and a compiled copy.

    python benchmarks/bench_linalg.py [--max-batch N] [--out FILE]

Runs on MLX's default device (set MLXGEOM_DEVICE=cpu to force the CPU). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import mlx.core as mx
import numpy as np
import scipy.linalg

sys.path.insert(0, os.path.dirname(__file__))
from timing import compiled_copy, machine, publish, table, time_ms  # noqa: E402

from mlxgeom import linalg  # noqa: E402

try:
    import torch

    TORCH_DEV = "cuda" if torch.cuda.is_available() else "cpu"
except ImportError:
    torch = None

ON_GPU = mx.default_device() == mx.gpu


def split_inv3(x: mx.array) -> mx.array:
    """The formulation from the MLX issue #1238 discussion: split into 9 columns, cofactors, concat."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = mx.split(x.reshape(-1, 9), 9, axis=-1)
    c = [a4 * a8 - a5 * a7, a2 * a7 - a1 * a8, a1 * a5 - a2 * a4,
         a5 * a6 - a3 * a8, a0 * a8 - a2 * a6, a2 * a3 - a0 * a5,
         a3 * a7 - a4 * a6, a1 * a6 - a0 * a7, a0 * a4 - a1 * a3]
    det = a0 * c[0] + a1 * c[3] + a2 * c[6]
    return (mx.concatenate(c, axis=-1) / det).reshape(-1, 3, 3)


def cv2_invert_loop(a: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        cv2.invert(a[i], out[i])
    return out


def bench_inverse(n: int, batches: list[int]) -> str:
    rows = []
    ours = mx.compile(linalg.inv)
    split = mx.compile(split_inv3)
    for b in batches:
        a = mx.random.normal((b, n, n), key=mx.random.key(b)) + 3 * mx.eye(n)
        mx.eval(a)
        a_np = np.array(a)
        row = {"B": b, "copy": time_ms(compiled_copy(a)), "mlxgeom": time_ms(lambda: ours(a))}
        row["split+compile"] = time_ms(lambda: split(a)) if n == 3 else None
        if not ON_GPU:
            row["numpy"] = time_ms(lambda: np.linalg.inv(a_np), repeats=3)
            row["mx.linalg cpu"] = time_ms(lambda: mx.linalg.inv(a, stream=mx.cpu), repeats=3)
            row["cv2 loop"] = time_ms(lambda: cv2_invert_loop(a_np), repeats=1) if b <= 32768 else None
        if torch is not None:
            t = torch.from_numpy(a_np).to(TORCH_DEV)
            row["torch"] = time_ms(lambda: torch.linalg.inv(t), repeats=5)
        rows.append(row)
    return table(f"{n}x{n} inverse, float32", rows, ref="copy")


def bench_matrix_exp(n: int, batches: list[int]) -> str:
    rows = []
    ours = mx.compile(linalg.matrix_exp)
    for b in batches:
        a = mx.random.normal((b, n, n), key=mx.random.key(b))
        mx.eval(a)
        a_np = np.array(a).astype(np.float64)
        row = {"B": b, "copy": time_ms(compiled_copy(a)), "mlxgeom": time_ms(lambda: ours(a))}
        if not ON_GPU:
            # scipy's batched expm loops in Python: minutes at B = 1M.
            row["scipy expm"] = time_ms(lambda: scipy.linalg.expm(a_np), repeats=3) if b <= 32768 else None
        if torch is not None:
            t = torch.from_numpy(a_np.astype(np.float32)).to(TORCH_DEV)
            row["torch"] = time_ms(lambda: torch.linalg.matrix_exp(t), repeats=5)
        rows.append(row)
    return table(f"{n}x{n} matrix_exp, float32 (entries ~ N(0, 1))", rows, ref="copy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-batch", type=int, default=(1 << 22) if ON_GPU else (1 << 20))
    parser.add_argument("--ops", default="inverse,matrix_exp", help="comma-separated: inverse, matrix_exp")
    parser.add_argument("--out", help="also append the tables to this file")
    args = parser.parse_args()
    batches = [b for b in (1, 256, 8192, 32768, 1 << 20, 1 << 22) if b <= args.max_batch]
    ops = args.ops.split(",")
    parts = [lambda: f"### linalg on {machine()}\n"]
    if "inverse" in ops:
        parts += [lambda: bench_inverse(3, batches), lambda: bench_inverse(4, batches)]
    if "matrix_exp" in ops:
        small = [b for b in batches if b <= (1 << 20)]
        parts += [lambda: bench_matrix_exp(4, small), lambda: bench_matrix_exp(3, small)]
    for part in parts:
        publish(part(), args.out)


if __name__ == "__main__":
    main()
