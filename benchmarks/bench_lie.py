"""SO(3)/SE(3) kernels: mlxgeom (compiled) vs scipy Rotation vs a compiled copy of the output.

Prints a markdown table of median milliseconds (after warm-up, ``mx.eval`` around results)
and ratios to the copy (the bandwidth ceiling). A column for the ``mlx3d`` package appears
only if it imports. Usage: ``python benchmarks/bench_lie.py [--max-batch 1048576]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import mlx.core as mx
import numpy as np
from scipy.spatial.transform import Rotation

from mlxgeom import lie

try:  # optional peer; not a dependency
    import mlx3d  # type: ignore

    _MLX3D = mlx3d
except Exception:  # noqa: BLE001
    _MLX3D = None


def _time(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(2):
        mx.eval(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _time_np(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _cases(b: int) -> dict[str, tuple[Callable, list[mx.array], Callable[[], Any] | None, Callable | None]]:
    rng = np.random.default_rng(0)
    phi_np = rng.standard_normal((b, 3)).astype(np.float32)
    xi = mx.array(rng.standard_normal((b, 6)).astype(np.float32))
    phi = mx.array(phi_np)
    r = lie.so3_exp(phi)
    t = lie.se3_exp(xi)
    p = mx.array(rng.standard_normal((b, 3)).astype(np.float32))
    mx.eval(r, t)
    rot = Rotation.from_rotvec(phi_np.astype(np.float64))
    r_np = rot.as_matrix()
    p_np = np.array(p).astype(np.float64)
    mlx3d_so3 = mlx3d_se3 = None
    if _MLX3D is not None:
        so3_map = getattr(_MLX3D, "so3_exp_map", None)
        se3_map = getattr(_MLX3D, "se3_exp_map", None)
        mlx3d_so3 = (lambda: so3_map(phi)) if so3_map else None
        mlx3d_se3 = (lambda: se3_map(xi)) if se3_map else None
    return {
        "so3_exp": (lie.so3_exp, [phi], lambda: Rotation.from_rotvec(phi_np).as_matrix(), mlx3d_so3),
        "so3_log": (lie.so3_log, [r], lambda: Rotation.from_matrix(r_np).as_rotvec(), None),
        "se3_exp closed_form": (lie.se3_exp, [xi], None, mlx3d_se3),
        "se3_exp matrix_exp": (lambda x: lie.se3_exp(x, method="matrix_exp"), [xi], None, None),
        "se3_log": (lie.se3_log, [t], None, None),
        "se3_compose": (lie.se3_compose, [t, t], None, None),
        "so3_compose": (lie.so3_compose, [r, r], lambda: (rot * rot).as_matrix(), None),
        "se3_act": (lie.se3_act, [t, p], None, None),
        "so3_act": (lie.so3_act, [r, p], lambda: rot.apply(p_np), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-batch", type=int, default=4 * 2**20 if mx.default_device() == mx.gpu else 2**20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    batches = [b for b in (1, 1024, 65536, 2**20, 4 * 2**20) if b <= args.max_batch]
    copy = mx.compile(lambda x: x + 0)
    print(f"device: {mx.default_device()}, mlx {mx.__version__}, float32, median of {args.repeats}")
    cols = "| op | B | mlxgeom ms | copy ms | mlxgeom / copy | scipy ms | scipy / mlxgeom |"
    cols += " mlx3d ms |" if _MLX3D is not None else ""
    print(cols)
    print("|" + "---|" * (cols.count("|") - 1))
    for b in batches:
        for name, (fn, fargs, sp, m3) in _cases(b).items():
            compiled = mx.compile(fn)
            ms = _time(lambda: compiled(*fargs), args.repeats)
            out = compiled(*fargs)
            mx.eval(out)
            cms = _time(lambda: copy(out), args.repeats)
            row = f"| {name} | {b} | {ms:.3f} | {cms:.3f} | {ms / cms:.1f} |"
            if sp is not None:
                sms = _time_np(sp, max(3, args.repeats // 2))
                row += f" {sms:.3f} | {sms / ms:.1f} |"
            else:
                row += " - | - |"
            if _MLX3D is not None:
                row += f" {_time(m3, args.repeats):.3f} |" if m3 is not None else " - |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
