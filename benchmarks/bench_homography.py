"""Homographies: batched mlxgeom RANSAC vs a loop of cv2.findHomography(RANSAC); warp of a 4K image.

Correspondences: 1000 matches per pair in a 640 x 480 image, 0.5 px noise, 40 % outliers (uniform).
mlxgeom runs ``find_homography(method="ransac")`` compiled, all pairs in one call (``max_trials``
static hypotheses per pair + 2 DLT refits + 10 LM iterations); OpenCV runs ``findHomography``
(RANSAC, 3 px, adaptive stopping, its own LM refinement) pair by pair with one thread. Accuracy:
mean distance between the estimated and the true mapping of the true inliers (px), and recall
of the true inliers. Prints markdown tables; one run.

Usage: ``python benchmarks/bench_homography.py [--pairs 1 64 1024] [--trials 512]``.
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
from timing import machine, publish, time_ms  # noqa: E402

from mlxgeom.homography import find_homography, warp_perspective  # noqa: E402


def make_pairs(pairs: int, n: int = 1000, outliers: float = 0.4, seed: int = 0):
    rng = np.random.default_rng(seed)
    hs = np.tile(np.eye(3), (pairs, 1, 1))
    hs[:, :2, :2] += rng.normal(0, 0.1, (pairs, 2, 2))
    hs[:, :2, 2] = rng.uniform(-50, 50, (pairs, 2))
    hs[:, 2, :2] = rng.normal(0, 2e-4, (pairs, 2))
    src = rng.uniform(0, [640, 480], (pairs, n, 2))
    hom = np.einsum("bij,bnj->bni", hs, np.concatenate([src, np.ones((pairs, n, 1))], -1))
    dst = hom[..., :2] / hom[..., 2:] + rng.normal(0, 0.5, (pairs, n, 2))
    out = rng.random((pairs, n)) < outliers
    dst[out] = rng.uniform(0, [640, 480], (int(out.sum()), 2))
    return hs, src, dst, ~out


def accuracy(h_est: np.ndarray, hs: np.ndarray, src: np.ndarray, inl: np.ndarray, mask: np.ndarray):
    errs, recalls = [], []
    for b in range(len(hs)):
        p = src[b][inl[b]][None]
        e = cv2.perspectiveTransform(p, h_est[b].astype(np.float64))[0] - cv2.perspectiveTransform(p, hs[b])[0]
        errs.append(np.linalg.norm(e, axis=1).mean())
        recalls.append((mask[b] & inl[b]).sum() / inl[b].sum())
    return float(np.mean(errs)), float(np.mean(recalls))


def bench_ransac(pairs: int, trials: int, jit) -> str:
    hs, src, dst, inl = make_pairs(pairs)
    s, d = mx.array(src, mx.float32), mx.array(dst, mx.float32)
    fn = jit(lambda a, b: tuple(find_homography(a, b, method="ransac", max_trials=trials, key=mx.random.key(0))))
    t0 = time.perf_counter()
    res = fn(s, d)
    mx.eval(res)
    first = time.perf_counter() - t0
    ours = time_ms(lambda: fn(s, d), repeats=3 if pairs > 1 else 10, budget_s=30)
    err, rec = accuracy(np.array(res[0]), hs, src, inl, np.array(res[1]))
    ok = float(np.array(res[2]).mean())
    cv2.setNumThreads(1)
    cv2.findHomography(src[0], dst[0], cv2.RANSAC, 3.0)  # warm-up (first-call initialisation)
    h_cv, m_cv = [], []
    t0 = time.perf_counter()
    for b in range(pairs):
        h, m = cv2.findHomography(src[b], dst[b], cv2.RANSAC, 3.0)
        h_cv.append(h), m_cv.append(m[:, 0].astype(bool))
    cv_ms = 1e3 * (time.perf_counter() - t0)
    err_cv, rec_cv = accuracy(np.array(h_cv), hs, src, inl, np.array(m_cv))
    return (f"| {pairs:,} | {ours / pairs:.3g} | {cv_ms / pairs:.3g} | {cv_ms / ours:.2g}x | "
            f"{err:.3f} / {err_cv:.3f} | {100 * rec:.2f} / {100 * rec_cv:.2f} | {100 * ok:.0f} | {first:.1f} |")


def bench_warp() -> str:
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8), (0, 0), 3)
    h = np.array([[0.98, 0.03, 20.0], [-0.02, 1.01, -15.0], [1e-5, -8e-6, 1.0]])
    x, hm = mx.array(img.astype(np.float32)), mx.array(h, mx.float32)
    rows = []
    for interp, flag in (("bilinear", cv2.INTER_LINEAR), ("nearest", cv2.INTER_NEAREST)):
        fn = mx.compile(lambda a, b: warp_perspective(a, b, (3840, 2160), interpolation=interp))
        ours = time_ms(lambda: fn(x, hm), repeats=5, budget_s=30)
        ref = cv2.warpPerspective(img, h, (3840, 2160), flags=flag)
        cv_ms = time_ms(lambda: cv2.warpPerspective(img, h, (3840, 2160), flags=flag), repeats=5, budget_s=30)
        diff = np.abs(np.round(np.array(fn(x, hm))) - ref)[4:-4, 4:-4].max()
        rows.append(f"| {interp} | {ours:.3g} | {cv_ms:.3g} | {cv_ms / ours:.2g}x | {diff:.0f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, nargs="+", default=[1, 64, 1024])
    ap.add_argument("--trials", type=int, default=512, help="static RANSAC hypotheses per pair (mlxgeom)")
    ap.add_argument("--eager", action="store_true",
                    help="run RANSAC without mx.compile (on CUDA the first compiled call spends minutes in NVRTC)")
    ap.add_argument("--no-warp", action="store_true", help="skip the warp_perspective table")
    ap.add_argument("--out", help="also append the tables to this file")
    args = ap.parse_args()
    jit = (lambda f: f) if args.eager else mx.compile

    def emit(text: str) -> None:
        publish(text, args.out)

    threads = cv2.getNumThreads()
    emit(f"\n### homography on {machine()}; OpenCV {cv2.__version__}\n")
    emit(f"#### RANSAC homography, 1000 matches/pair, 40 % outliers, 0.5 px noise; mlxgeom max_trials={args.trials}, "
         f"{'eager' if args.eager else 'compiled'}\n")
    emit("| pairs | mlxgeom ms/pair | cv2 loop ms/pair | cv2 / mlxgeom | mean error px (mlxgeom / cv2) "
         "| inlier recall % (mlxgeom / cv2) | mlxgeom ok % | first call s (compile) |")
    emit("|---|---|---|---|---|---|---|---|")
    for p in args.pairs:
        emit(bench_ransac(p, args.trials, jit))
    cv2.setNumThreads(threads)
    if args.no_warp:
        return
    emit("\n#### warp_perspective, 3840 x 2160 x 3, float32 (mlxgeom) vs uint8 (cv2, all threads)\n")
    emit("| interpolation | mlxgeom ms | cv2 ms | cv2 / mlxgeom | max abs diff, interior (levels) |")
    emit("|---|---|---|---|---|")
    emit(bench_warp())


if __name__ == "__main__":
    main()
