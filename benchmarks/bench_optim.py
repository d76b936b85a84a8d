"""Batched PnP: compiled mlxgeom.optim.solve_pnp vs a Python loop of cv2.solvePnP.

Each problem has 100 points in a box 4.5-7.5 m in front of a 640 x 480 camera (f = 800),
a random rotation and 1 px Gaussian pixel noise. mlxgeom solves all B problems in one
``mx.compile``d call (float32): "EPnP" is the closed form alone, "EPnP + LM" adds 10
Levenberg-Marquardt iterations (SOLVEPNP_ITERATIVE's counterpart). OpenCV runs
``cv2.solvePnP`` (float64) once per problem with SOLVEPNP_EPNP and SOLVEPNP_ITERATIVE.
Each cell is the fastest of ``--repeat`` timed runs (default 3; the machine may be shared),
after two warm-up runs for mlxgeom (compilation is not timed); accuracy
columns: median rotation error (degrees) and the mean of the per-problem RMS reprojection
error divided by OpenCV ITERATIVE's. Prints a markdown table.

Usage: ``python benchmarks/bench_optim.py [--sizes 1 1000 10000] [--cv2-max 100000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import mlx.core as mx
import numpy as np
from scipy.spatial.transform import Rotation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import machine, publish  # noqa: E402

from mlxgeom.optim import solve_pnp  # noqa: E402

K = np.array([[800.0, 0.0, 320.0], [0.0, 800.0, 240.0], [0.0, 0.0, 1.0]])
N = 100


def problems(b: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rot = Rotation.random(b, random_state=seed).as_matrix()
    t = rng.normal(size=(b, 3)) * 0.3 + [0.0, 0.0, 6.0]
    pc = rng.uniform(-1, 1, (b, N, 3)) * [2.0, 1.5, 1.5] + [0.0, 0.0, 6.0]
    pw = np.einsum("bji,bnj->bni", rot, pc - t[:, None])
    uv = (pc[..., :2] / pc[..., 2:]) @ K[:2, :2].T + K[:2, 2] + rng.normal(size=(b, N, 2))
    return pw, uv, rot


def rot_err_deg(r_est: np.ndarray, rot: np.ndarray) -> np.ndarray:
    return np.degrees(np.linalg.norm(Rotation.from_matrix(r_est @ rot.transpose(0, 2, 1)).as_rotvec(), axis=-1))


def rms(pw: np.ndarray, uv: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    pc = np.einsum("bij,bnj->bni", r, pw) + t[:, None]
    proj = (pc[..., :2] / pc[..., 2:]) @ K[:2, :2].T + K[:2, 2]
    return np.sqrt(np.mean(np.sum((proj - uv) ** 2, -1), -1))


def run_cv2(pw: np.ndarray, uv: np.ndarray, flags: int, repeat: int = 1) -> tuple[float, np.ndarray, np.ndarray]:
    rs, ts = np.empty((len(pw), 3, 3)), np.empty((len(pw), 3))
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for b in range(len(pw)):
            _, rv, tv = cv2.solvePnP(pw[b], uv[b], K, None, flags=flags)
            rs[b], ts[b] = cv2.Rodrigues(rv)[0], tv[:, 0]
        best = min(best, time.perf_counter() - t0)
    return best, rs, ts


def run_ours(fn, pw: np.ndarray, uv: np.ndarray, repeat: int = 1) -> tuple[float, np.ndarray, np.ndarray, float]:
    args = (mx.array(pw.astype(np.float32)), mx.array(uv.astype(np.float32)), mx.array(K.astype(np.float32)))
    mx.eval(args)
    for _ in range(2):  # warm-up: tracing and compilation (the second call is still slow on the CPU)
        mx.eval(fn(*args))
    dt = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        pose, ok = fn(*args)
        mx.eval(pose, ok)
        dt = min(dt, time.perf_counter() - t0)
    p = np.array(pose).astype(np.float64)
    return dt, p[:, :3, :3], p[:, :3, 3], float(np.array(ok).mean())


def _pose_ok(res) -> tuple[mx.array, mx.array]:
    return res.pose, res.ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_gpu = mx.default_device() == mx.gpu
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 1000, 100000] if on_gpu else [1, 1000, 10000])
    ap.add_argument("--cv2-max", type=int, default=10000,
                    help="largest B for the OpenCV loop; beyond it its per-problem time at this B is reused")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per cell; the fastest is reported")
    ap.add_argument("--eager", action="store_true",
                    help="run without mx.compile (on CUDA the first compiled call spends minutes in NVRTC)")
    ap.add_argument("--out", help="also append the table to this file")
    args = ap.parse_args()
    jit = (lambda f: f) if args.eager else mx.compile

    def emit(line: str) -> None:
        publish(line, args.out)

    epnp = jit(lambda a, b, k: _pose_ok(solve_pnp(a, b, k, method="epnp", refine=False)))
    lm = jit(lambda a, b, k: _pose_ok(solve_pnp(a, b, k, method="iterative", max_iters=10)))
    emit(f"\n### PnP, {N} points per problem, 1 px noise, {'eager' if args.eager else 'compiled'} ({machine()}; OpenCV {cv2.__version__})\n")
    emit("| B | mlxgeom EPnP (ms) | mlxgeom EPnP + LM (ms) | cv2 EPNP loop (ms) | cv2 ITERATIVE loop (ms) "
          "| speed-up EPnP+LM vs cv2 ITERATIVE | median rot. err. (deg) ours / cv2 | RMS reproj. ours / cv2 ITERATIVE | ok |")
    emit("|---|---|---|---|---|---|---|---|---|")
    cv2_per_problem: tuple[float, float] | None = None
    for b in args.sizes:
        pw, uv, rot = problems(b)
        t_e, r_e, tr_e, _ = run_ours(epnp, pw, uv, args.repeat)
        t_l, r_l, tr_l, ok = run_ours(lm, pw, uv, args.repeat)
        if b <= args.cv2_max:
            t_ce, *_ = run_cv2(pw, uv, cv2.SOLVEPNP_EPNP, args.repeat)
            t_ci, r_ci, tr_ci = run_cv2(pw, uv, cv2.SOLVEPNP_ITERATIVE, args.repeat)
            cv2_per_problem = (t_ce / b, t_ci / b)
            ratio = np.mean(rms(pw, uv, r_l, tr_l) / rms(pw, uv, r_ci, tr_ci))
            cells = [f"{1e3 * t_ce:.3g}", f"{1e3 * t_ci:.3g}", f"{t_ci / t_l:.2g}x",
                     f"{np.median(rot_err_deg(r_l, rot)):.3g} / {np.median(rot_err_deg(r_ci, rot)):.3g}", f"{ratio:.5f}"]
        elif cv2_per_problem is not None:
            t_ce, t_ci = (b * t for t in cv2_per_problem)
            cells = [f"({1e3 * t_ce:.3g})", f"({1e3 * t_ci:.3g})", f"{t_ci / t_l:.2g}x",
                     f"{np.median(rot_err_deg(r_l, rot)):.3g} / -", "-"]
        else:
            cells = ["-", "-", "-", f"{np.median(rot_err_deg(r_l, rot)):.3g} / -", "-"]
        emit(f"| {b:,} | {1e3 * t_e:.3g} | {1e3 * t_l:.3g} | " + " | ".join(cells) + f" | {ok:.4f} |")


    emit("\nOpenCV times in parentheses are its per-problem time at the largest B it ran, times B.\n")


if __name__ == "__main__":
    main()
