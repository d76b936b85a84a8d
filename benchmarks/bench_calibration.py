"""Batched camera calibration: one mlxgeom.calibrate_camera call for B cameras vs a loop of cv2.calibrateCamera.

Every camera sees a 9 x 6 checkerboard (30 mm squares) from ``--views`` random tilted poses
(:func:`mlxgeom.calibration.synthetic_views`: 640 x 480, fx 800, fy 780, five-coefficient lens,
0.3 px Gaussian pixel noise, a different seed per camera). mlxgeom calibrates all B cameras in
one call (float32, Zhang's init + 30 LM iterations, ``model="opencv5"``); OpenCV runs
``cv2.calibrateCameraExtended`` (float64, default flags) once per camera. Each cell is the fastest
of ``--repeat`` timed runs after one warm-up run. Accuracy columns: the mean ratio of the RMS
reprojection errors (ours / OpenCV's) and the largest parameter difference in units of OpenCV's
standard deviation (fx, fy, cx, cy, k1, k2, p1, p2, k3).

Usage: ``python benchmarks/bench_calibration.py [--cameras 1 16] [--views 20] [--cv2-max 256] [--out f.md]``
(on the GPU: ``--cameras 1 16 256``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import machine, publish  # noqa: E402

from mlxgeom import calibrate_camera  # noqa: E402
from mlxgeom.calibration import synthetic_views  # noqa: E402

SIZE = (640, 480)


def problems(cameras: int, views: int) -> tuple[np.ndarray, np.ndarray]:
    data = [synthetic_views(num_views=views, noise=0.3, seed=1000 + c) for c in range(cameras)]
    return np.stack([np.array(d[0]) for d in data]), np.stack([np.array(d[1]) for d in data])


def run_cv2(obj: np.ndarray, img: np.ndarray, repeat: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    best, rms, params, std = np.inf, [], [], []
    for _ in range(repeat):
        rms, params, std = [], [], []
        t0 = time.perf_counter()
        for o, i in zip(obj, img):
            r, K, d, _, _, s, _, _ = cv2.calibrateCameraExtended(list(o), list(i), SIZE, None, None)
            rms.append(r)
            params.append(np.concatenate([K[[0, 1, 0, 1], [0, 1, 2, 2]], d.ravel()[:5]]))
            std.append(s.ravel()[:9])
        best = min(best, time.perf_counter() - t0)
    return best, np.array(rms), np.array(params), np.array(std)


def run_ours(obj: np.ndarray, img: np.ndarray, repeat: int):
    args = mx.array(obj), mx.array(img)
    mx.eval(args)
    mx.eval(calibrate_camera(*args, SIZE))  # warm-up
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = calibrate_camera(*args, SIZE)
        mx.eval(res)
        best = min(best, time.perf_counter() - t0)
    K = np.array(res.camera.K, np.float64)
    params = np.concatenate([K[:, [0, 1, 0, 1], [0, 1, 2, 2]], np.array(res.camera.dist, np.float64)], axis=-1)
    return best, np.array(res.rms, np.float64), params, float(np.array(res.ok).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_gpu = mx.default_device() == mx.gpu
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 16, 256] if on_gpu else [1, 16])
    ap.add_argument("--views", type=int, default=20)
    ap.add_argument("--cv2-max", type=int, default=256,
                    help="largest B for the OpenCV loop; beyond it its per-camera time at this B is reused")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per cell; the fastest is reported")
    ap.add_argument("--out", help="also append the table to this file")
    args = ap.parse_args()

    def emit(line: str) -> None:
        publish(line, args.out)

    emit(f"\n### Calibration, {args.views} views of a 9 x 6 board per camera, 0.3 px noise, LM iterations as compiled cores "
         f"({machine()}; OpenCV {cv2.__version__})\n")
    emit("| cameras | mlxgeom batched (ms) | cv2.calibrateCamera loop (ms) | speed-up | RMS ours / cv2 "
         "| max param. diff. / cv2 std | ok |")
    emit("|---|---|---|---|---|---|---|")
    per_camera = None
    for b in args.cameras:
        obj, img = problems(b, args.views)
        t_ours, rms, params, ok = run_ours(obj, img, args.repeat)
        if b <= args.cv2_max:
            t_cv, rms_cv, params_cv, std_cv = run_cv2(obj, img, args.repeat)
            per_camera = t_cv / b
            diff = np.max(np.abs(params - params_cv) / np.where(std_cv > 0, std_cv, np.inf))
            cells = [f"{1e3 * t_cv:.4g}", f"{t_cv / t_ours:.2g}x", f"{np.mean(rms / rms_cv):.5f}", f"{diff:.2g}"]
        elif per_camera is not None:
            cells = [f"({1e3 * per_camera * b:.4g})", f"{per_camera * b / t_ours:.2g}x", "-", "-"]
        else:
            cells = ["-", "-", "-", "-"]
        emit(f"| {b:,} | {1e3 * t_ours:.4g} | " + " | ".join(cells) + f" | {ok:.3f} |")
    emit("\nOpenCV times in parentheses are its per-camera time at the largest B it ran, times B.\n")


if __name__ == "__main__":
    main()
