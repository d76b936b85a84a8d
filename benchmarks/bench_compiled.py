"""The library's compiled pure-MLX cores (mlxgeom/_compiled.py) against the same public calls run
eagerly (``MLXGEOM_COMPILE=0``) in the same process, plus the peers the goals name: for the 3x3
inverse the split+compile formulation of MLX issue #1238 and numpy.linalg.inv.

    python benchmarks/bench_compiled.py [--batches 32768,262144] [--rounds 3] [--out FILE]

Columns are timed interleaved, ``--rounds`` times each, and the best median is kept (the machine
this ran on is shared). Runs on MLX's default device (MLXGEOM_DEVICE=cpu to force the CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

import cv2
import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_linalg import split_inv3  # noqa: E402
from timing import machine, publish, table, time_ms  # noqa: E402

from mlxgeom import camera, lie, linalg  # noqa: E402


def _switch(fn: Callable[..., Any], on: bool) -> Callable[..., Any]:
    def call(*args):
        os.environ["MLXGEOM_COMPILE"] = "1" if on else "0"
        return fn(*args)

    return call


def _general(b: int, n: int) -> mx.array:
    return mx.random.normal((b, n, n), key=mx.random.key(n)) + 3 * mx.eye(n)


def _spd(b: int, n: int) -> mx.array:
    m = mx.random.normal((b, n, n), key=mx.random.key(n))
    return m @ m.swapaxes(-1, -2) + n * mx.eye(n)


def _vec(b: int, n: int, scale: float = 1.0) -> mx.array:
    return scale * mx.random.normal((b, n), key=mx.random.key(100 + n))


def _pose(b: int) -> mx.array:
    return lie.se3_exp(_vec(b, 6))


_K = mx.array([[800.0, 0.0, 640.0], [0.0, 800.0, 360.0], [0.0, 0.0, 1.0]])
_LENS = mx.array([-0.28, 0.07, 1e-4, -2e-4, 0.01])

# name -> (public function, batch size -> arguments)
OPS: dict[str, tuple[Callable[..., Any], Callable[[int], tuple[mx.array, ...]]]] = {
    "det 3x3": (linalg.det, lambda b: (_general(b, 3),)),
    "inv 3x3": (linalg.inv, lambda b: (_general(b, 3),)),
    "inv 4x4": (linalg.inv, lambda b: (_general(b, 4),)),
    "inv_ex 4x4": (linalg.inv_ex, lambda b: (_general(b, 4),)),
    "solve 3x3": (linalg.solve, lambda b: (_general(b, 3), _vec(b, 3))),
    "matrix_exp 3x3": (linalg.matrix_exp, lambda b: (_general(b, 3) - 3 * mx.eye(3),)),
    "matrix_exp 4x4": (linalg.matrix_exp, lambda b: (_general(b, 4) - 3 * mx.eye(4),)),
    "solve_spd 6x6": (linalg.solve_spd, lambda b: (_spd(b, 6), _vec(b, 6))),
    "so3_exp": (lie.so3_exp, lambda b: (_vec(b, 3),)),
    "so3_log": (lie.so3_log, lambda b: (lie.so3_exp(_vec(b, 3)),)),
    "so3_act": (lie.so3_act, lambda b: (lie.so3_exp(_vec(b, 3)), _vec(b, 3, 2.0))),
    "se3_exp": (lie.se3_exp, lambda b: (_vec(b, 6),)),
    "se3_log": (lie.se3_log, lambda b: (_pose(b),)),
    "se3_compose": (lie.se3_compose, lambda b: (_pose(b), lie.se3_inverse(_pose(b)))),
    "se3_act": (lie.se3_act, lambda b: (_pose(b), _vec(b, 3, 2.0))),
    "sl3_exp": (lie.sl3_exp, lambda b: (_vec(b, 8, 0.3),)),
    "sl3_log": (lie.sl3_log, lambda b: (lie.sl3_exp(_vec(b, 8, 0.3)),)),
    "project_points 5-coefficient lens": (lambda x, pose: camera.project_points(x, _K, pose, _LENS),
                                           lambda b: (_vec(b, 3) + mx.array([0.0, 0.0, 6.0]), _pose(1)[0])),
    "unproject_points 5-coefficient lens": (lambda p, z: camera.unproject_points(p, z, _K, None, _LENS),
                                            lambda b: (mx.random.uniform(0, 1, (b, 2)) * mx.array([1280.0, 720.0]),
                                                       2.0 + mx.random.uniform(0, 1, (b,)))),
    "undistort_points 5-coefficient lens": (lambda p: camera.undistort_points(p, _K, _LENS),
                                            lambda b: (mx.random.uniform(0, 1, (b, 2)) * mx.array([1280.0, 720.0]),)),
}


def peers(name: str, args: tuple[mx.array, ...]) -> dict[str, Callable[[], Any]]:
    """Columns beside eager and compiled: the goals' peers (3x3 inverse, undistortion)."""
    if name.startswith("undistort_points"):
        px, k, lens = np.array(args[0])[:, None], np.array(_K), np.array(_LENS)
        # OpenCV's default stops after 5 iterations; mlxgeom runs 10 and a differentiable final step.
        return {"cv2.undistortPoints": lambda: cv2.undistortPoints(px, k, lens)}
    if name != "inv 3x3":
        return {}
    split = mx.compile(split_inv3)
    a_np = np.array(args[0])
    return {"split+compile": lambda: split(args[0]), "numpy": lambda: np.linalg.inv(a_np)}


def bench(name: str, batches: list[int], rounds: int) -> str:
    fn, make = OPS[name]
    rows = []
    for b in batches:
        args = make(b)
        mx.eval(args)
        cols = {"eager": _switch(fn, False), "compiled": _switch(fn, True)}
        calls = {k: (lambda f: lambda: f(*args))(f) for k, f in cols.items()}
        calls.update(peers(name, args))
        best = {k: float("inf") for k in calls}
        for _ in range(rounds):  # interleaved: each column once per round, best median kept
            for k, call in calls.items():
                best[k] = min(best[k], time_ms(call, repeats=5, warmup=1))
        rows.append({"B": b, **best})
    os.environ.pop("MLXGEOM_COMPILE", None)
    return table(f"{name}, float32", rows, ref="compiled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", default="32768,262144")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated names: " + ", ".join(OPS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", help="also append the tables to this file")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    publish(f"### compiled cores on {machine()} (best of {args.rounds} interleaved rounds)\n", args.out)
    for name in args.ops.split(","):
        sizes = batches + [1 << 20] if name == "inv 3x3" else batches
        publish(bench(name, sizes, args.rounds), args.out)


if __name__ == "__main__":
    main()
