"""Cameras: compiled mlxgeom projection / unprojection / depth reprojection vs cv2.projectPoints.

Points are float32, in front of a 1920 x 1080 camera (f = 1500). "dist" uses five OpenCV
coefficients (k1, k2, p1, p2, k3), "fisheye" OpenCV's fisheye model (k1..k4). mlxgeom runs ``mx.compile``d functions; OpenCV runs
``cv2.projectPoints`` / ``cv2.fisheye.projectPoints`` (float64 internally) once per camera. "copy" is a compiled same-size
copy of the output pixels, the memory-bandwidth ceiling. On CUDA the projection tables add
PyTorch (closed form) and kornia (``transform_points`` + ``project_points``) on the same GPU,
without distortion ("pure mx": mlxgeom with its CUDA kernels off). Each cell is the median after
warm-up, all ratios from the same run. Prints markdown tables.

Usage: ``python benchmarks/bench_camera.py [--max-points 4194304] [--depth-size 1080 1920] [--views 64]``.
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from timing import compiled_copy, machine, publish, table, time_ms  # noqa: E402

from mlxgeom import lie  # noqa: E402
from mlxgeom.camera import Camera, project_points, unproject_points  # noqa: E402

ON_GPU = mx.default_device() == mx.gpu
ON_CUDA = ON_GPU and mx.cuda.is_available()
K = np.array([[1500.0, 0.0, 959.5], [0.0, 1500.0, 539.5], [0.0, 0.0, 1.0]])
DIST = np.array([-0.1, 0.02, 0.001, -0.001, 0.003])
FISHEYE = np.array([0.05, -0.01, 0.002, -0.0005])


def poses(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xi = np.concatenate([rng.normal(0, 0.05, (n, 3)), rng.normal(0, 0.03, (n, 3))], -1)
    return np.array(lie.se3_exp(mx.array(xi, dtype=mx.float32)))


def points(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.uniform(2, 8, n)
    return np.stack([rng.uniform(-0.6, 0.6, n) * z, rng.uniform(-0.35, 0.35, n) * z, z], -1).astype(np.float32)


def cv2_project(X: np.ndarray, T: np.ndarray, dist: np.ndarray | None, fisheye: bool = False) -> list[np.ndarray]:
    out = []
    for Ti in T.astype(np.float64):
        rvec = cv2.Rodrigues(Ti[:3, :3])[0]
        if fisheye:
            out.append(cv2.fisheye.projectPoints(X[:, None], rvec, Ti[:3, 3], K, dist)[0])
        else:
            out.append(cv2.projectPoints(X, rvec, Ti[:3, 3], K, dist)[0])
    return out



def pure_mx(fn):
    """``mx.compile(fn)`` traced and run with the CUDA fast paths off: the before/after on the GPU."""
    compiled = mx.compile(lambda *args: fn(*args))  # a new function: mx.compile caches traces by function

    def run(*args):
        os.environ["MLXGEOM_CUDA_KERNELS"] = "0"
        try:
            return compiled(*args)
        finally:
            os.environ.pop("MLXGEOM_CUDA_KERNELS")

    return run


def bench_project(cams: int, sizes: list[int], cv2_max: int) -> str:
    rows = []
    T = poses(cams)
    Km, Tm, dm = mx.array(K, dtype=mx.float32), mx.array(T), mx.array(DIST, dtype=mx.float32)
    fm = mx.array(FISHEYE, dtype=mx.float32)
    fns = {"mlxgeom": lambda X: project_points(X, Km, Tm)[0], "mlxgeom dist": lambda X: project_points(X, Km, Tm, dm)[0],
           "mlxgeom fisheye": lambda X: project_points(X, Km, Tm, fm, model="fisheye")[0]}
    timed = {name: mx.compile(fn) for name, fn in fns.items()}
    if ON_CUDA:
        timed.update({f"{name}, pure mx": pure_mx(fn) for name, fn in fns.items()})
    plain = timed["mlxgeom"]
    for n in sizes:
        X_np = points(n)
        X = mx.array(X_np)
        mx.eval(X)
        out = plain(X)
        mx.eval(out)
        reps = 10 if n * cams <= (1 << 22) else 3
        row = {"B": n, "copy": time_ms(compiled_copy(out), repeats=reps)}
        row.update({name: time_ms(lambda fn=fn: fn(X), repeats=reps) for name, fn in timed.items()})
        if ON_CUDA:
            row.update({name: time_ms(fn, repeats=reps) for name, fn in peers.project(X_np, K, T).items()})
        small = n * cams <= cv2_max
        X64 = X_np.astype(np.float64)
        row["cv2"] = time_ms(lambda: cv2_project(X64, T, None), repeats=3, warmup=1) if small else None
        row["cv2 dist"] = time_ms(lambda: cv2_project(X64, T, DIST), repeats=3, warmup=1) if small else None
        row["cv2 fisheye"] = time_ms(lambda: cv2_project(X64, T, FISHEYE, True), repeats=3, warmup=1) if small else None
        rows.append(row)
    return table(f"project N points through {cams} camera(s), float32 (B = N)", rows, ref="copy")


def bench_unproject(sizes: list[int]) -> str:
    rows = []
    Km, dm = mx.array(K, dtype=mx.float32), mx.array(DIST, dtype=mx.float32)
    T = mx.array(poses(1)[0])
    fns = {"mlxgeom": lambda p, z: unproject_points(p, z, Km, T),
           "mlxgeom dist (10 Newton)": lambda p, z: unproject_points(p, z, Km, T, dm)}
    timed = {name: mx.compile(fn) for name, fn in fns.items()}
    if ON_CUDA:
        timed.update({f"{name}, pure mx": pure_mx(fn) for name, fn in fns.items()})
    plain = timed["mlxgeom"]
    for n in sizes:
        rng = np.random.default_rng(n)
        px = mx.array(rng.uniform([0, 0], [1920, 1080], (n, 2)), dtype=mx.float32)
        z = mx.array(rng.uniform(1, 5, n), dtype=mx.float32)
        out = plain(px, z)
        mx.eval(out)
        reps = 10 if n <= (1 << 22) else 3
        row = {"B": n, "copy": time_ms(compiled_copy(out), repeats=reps)}
        row.update({name: time_ms(lambda fn=fn: fn(px, z), repeats=reps) for name, fn in timed.items()})
        if n <= (1 << 20):
            p64 = np.array(px).astype(np.float64)[:, None]
            row["cv2.undistortPoints dist"] = time_ms(lambda: cv2.undistortPoints(p64, K, DIST), repeats=3, warmup=1)
        else:
            row["cv2.undistortPoints dist"] = None
        rows.append(row)
    return table("unproject N pixels with depth, one camera, float32 (B = N)", rows, ref="copy")


def bench_reproject(h: int, w: int, views: int) -> str:
    scale = w / 1920
    Ks = K * [[scale], [scale], [1]]
    src = Camera(mx.array(Ks, dtype=mx.float32), mx.array(poses(1, 5)[0]), mx.array(DIST, dtype=mx.float32))
    T = poses(views, 6)
    dst = Camera(mx.array(Ks, dtype=mx.float32), mx.array(T), mx.array(DIST, dtype=mx.float32))
    depth = mx.array(np.random.default_rng(7).uniform(2, 6, (h, w)), dtype=mx.float32)
    fn = mx.compile(lambda d: tuple(src.reproject_depth(d, dst)))
    out = fn(depth)
    mx.eval(out)
    X = np.array(src.unproject(mx.array(np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).reshape(-1, 2),
                                        dtype=mx.float32), depth.reshape(-1))).astype(np.float64)
    scaled_K = Ks

    cv2_views = min(views, 8)  # OpenCV's time is linear in the views: time 8, scale to B

    def cv2_some():
        return [cv2.projectPoints(X, cv2.Rodrigues(Ti[:3, :3])[0], Ti[:3, 3], scaled_K, DIST)[0]
                for Ti in T[:cv2_views].astype(np.float64)]

    row = {"B": views, "copy": time_ms(compiled_copy(out[0]), repeats=5), "mlxgeom": time_ms(lambda: fn(depth), repeats=5),
           "cv2 (project only)": time_ms(cv2_some, repeats=2, warmup=1) * views / cv2_views}
    note = f" (cv2 timed on {cv2_views} views, times B / {cv2_views})" if cv2_views < views else ""
    return table(f"reproject_depth of a {h}x{w} depth map (5-coefficient lens) into B views, float32{note}", [row],
                 ref="copy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-points", type=int, default=(1 << 24) if ON_GPU else (1 << 22))
    parser.add_argument("--depth-size", type=int, nargs=2, default=(1080, 1920) if ON_GPU else (270, 480))
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--tables", nargs="+", default=["project", "project64", "unproject", "reproject"],
                        choices=["project", "project64", "unproject", "reproject"])
    parser.add_argument("--out", help="also append the tables to this file")
    args = parser.parse_args()
    sizes = [n for n in (1 << 10, 1 << 14, 1 << 18, 1 << 20, 1 << 22, 1 << 24) if n <= args.max_points]
    many = [n for n in sizes if n * 64 <= (args.max_points * (16 if ON_GPU else 4))]
    parts = {
        "project": lambda: bench_project(1, sizes, cv2_max=1 << 22),
        "project64": lambda: bench_project(64, many, cv2_max=1 << 22),
        "unproject": lambda: bench_unproject(sizes),
        "reproject": lambda: bench_reproject(*args.depth_size, args.views),
    }
    publish(f"### camera on {machine()}\n", args.out)
    for name in args.tables:
        publish(parts[name](), args.out)


if __name__ == "__main__":
    main()
