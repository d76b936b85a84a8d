"""First-call latency of each public entry point, the cost a new process pays before steady state.

Each cell runs in its own Python process with an empty kernel cache (``MLX_PTX_CACHE_DIR`` set to a
fresh folder), so it sees what a user's first run sees: on CUDA, MLX compiles every fused kernel
(``mx.compile``), gather/scatter specialisation and custom kernel with NVRTC on first use; on the CPU,
``mx.compile`` runs g++ per fused kernel into ``$TMPDIR/mlx/<version>/cpu`` (``TMPDIR`` is set to the
fresh folder too). Reported per cell: the first call (trace + compile + run), the second call (steady
state), and how many kernel modules were compiled (PTX files on CUDA, shared libraries on the CPU).

Modes: ``library`` (the default: the library's compiled cores), ``eager`` (``MLXGEOM_COMPILE=0``),
``user`` (the call wrapped in the user's own ``mx.compile``, for the functions that allow it).

    python benchmarks/bench_first_call.py [--cases a,b] [--modes library,eager] [--jobs 4] [--out F] [--modules F.json]

``--modules`` lists what each cell compiled (on CUDA the PTX cache's names: MLX's ``gather_*``, ``scatter_*``,
``slice_update_*`` specialisations, the fused kernels of ``mx.compile``, mlxgeom's ``custom_kernel_*``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import machine, publish  # noqa: E402

import mlxgeom as mg  # noqa: E402

K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
DIST5 = [-0.2, 0.05, 1e-3, -1e-3, 0.01]


def _case_inv():
    a = mx.random.normal((1 << 20, 3, 3)) + 3 * mx.eye(3)
    return lambda a: mg.linalg.inv(a), (a,)


def _case_matrix_exp():
    a = 0.3 * mx.random.normal((1 << 18, 4, 4))
    return lambda a: mg.linalg.matrix_exp(a), (a,)


def _case_se3_exp():
    xi = 0.3 * mx.random.normal((1 << 20, 6))
    return lambda x: mg.se3_exp(x), (xi,)


def _case_project():
    cam = mg.Camera(mx.array(K, mx.float32), dist=mx.array(DIST5, mx.float32))
    p = mx.random.normal((1 << 20, 3)) + mx.array([0.0, 0.0, 5.0])
    return lambda p: cam.project(p).pixels, (p,)


def _case_undistort():
    px = mx.random.uniform(0, 1, (1 << 18, 2)) * mx.array([640.0, 480.0])
    k, d = mx.array(K, mx.float32), mx.array(DIST5, mx.float32)
    return lambda px: mg.undistort_points(px, k, d), (px,)


def _case_homography():
    from bench_homography import make_pairs

    _, src, dst, _ = make_pairs(64)
    args = mx.array(src, mx.float32), mx.array(dst, mx.float32)
    return lambda a, b: tuple(mg.find_homography(a, b, method="ransac", key=mx.random.key(0))), args


def _case_pnp():
    from bench_optim import problems

    pw, uv, _ = problems(64)
    k = mx.array(K, mx.float32)
    return lambda p, u: tuple(mg.solve_pnp_ransac(p, u, k, key=mx.random.key(0))), (mx.array(pw, mx.float32),
                                                                                     mx.array(uv, mx.float32))


def _case_essential():
    from bench_epipolar import make_pairs

    x1, x2, *_ = make_pairs(64)
    k = mx.array(K, mx.float32)

    def run(a, b):
        res = mg.find_essential_matrix(a, b, k, max_trials=256, key=mx.random.key(0))
        return mg.recover_pose(res.E, a, b, k, mask=res.inliers).pose

    return run, (mx.array(x1, mx.float32), mx.array(x2, mx.float32))


def _case_fundamental():
    from bench_epipolar import make_pairs

    x1, x2, *_ = make_pairs(64, seed=1)
    return (lambda a, b: mg.find_fundamental_matrix(a, b, method="ransac", max_trials=1024,
                                                    key=mx.random.key(0)).F,
            (mx.array(x1, mx.float32), mx.array(x2, mx.float32)))


def _case_bundle_adjust():
    p = mg.sfm.synthetic_problem(49, 7776, 4.1, noise=0.5, seed=0)

    def run(cameras, poses, points, obs):
        return mg.bundle_adjust(cameras, poses, points, obs, point_index=p.point_index,
                                camera_index=p.camera_index, max_iters=5).cost

    return run, (p.cameras, p.poses, p.points, p.observations)


def _case_calibrate():
    from bench_calibration import SIZE, problems

    obj, img = problems(4, 20)
    return lambda o, i: mg.calibrate_camera(o, i, SIZE).rms, (mx.array(obj), mx.array(img))


CASES = {
    "inv 3x3 (1M)": (_case_inv, True),
    "matrix_exp 4x4 (262k)": (_case_matrix_exp, True),
    "se3_exp (1M)": (_case_se3_exp, True),
    "Camera.project opencv5 (1M)": (_case_project, True),
    "undistort_points opencv5 (262k)": (_case_undistort, True),
    "find_homography ransac (64 x 1000)": (_case_homography, True),
    "solve_pnp_ransac (64 x 100)": (_case_pnp, True),
    "find_essential_matrix + recover_pose (64 x 1000, 256 trials)": (_case_essential, True),
    "find_fundamental_matrix ransac (64 x 1000, 1024 trials)": (_case_fundamental, True),
    "bundle_adjust (49 cams, 7.8k pts), 5 its": (_case_bundle_adjust, False),
    "calibrate_camera (4 cams x 20 views)": (_case_calibrate, True),
}
MODES = ("library", "eager", "user")


def _child(case: str, mode: str) -> None:
    make, compilable = CASES[case]
    fn, args = make()
    mx.eval(args)
    if mode == "user":
        if not compilable:
            print(json.dumps({"skip": "not for mx.compile"}))
            return
        fn = mx.compile(fn)
    t0 = time.perf_counter()
    mx.eval(fn(*args))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    mx.eval(fn(*args))
    second = time.perf_counter() - t0
    print(json.dumps({"first_s": first, "second_ms": 1e3 * second}))


def _cell(case: str, mode: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, MLX_PTX_CACHE_DIR=cache, TMPDIR=cache,
                   MLXGEOM_COMPILE="0" if mode == "eager" else "1")
        t0 = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, __file__, "--child", case, mode], env=env, timeout=timeout,
                                 capture_output=True, text=True)
            res = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else \
                {"error": f"exit {out.returncode}: " + (out.stderr.strip().splitlines() or ["(no message)"])[-1][:120]}
        except subprocess.TimeoutExpired:
            res = {"timeout": time.perf_counter() - t0}
        res["modules"] = sorted(os.path.splitext(f)[0] for _, _, fs in os.walk(cache) for f in fs
                                if f.endswith((".ptx", ".so")))
        res["ptx"] = len(res["modules"])
    return res


def _fmt(res: dict) -> str:
    if "skip" in res:
        return "n/a"
    if "timeout" in res:
        return f"> {res['timeout']:.0f} s (cut), {res['ptx']} modules"
    if "error" in res:
        return f"error: {res['error']}"
    mods = f", {res['ptx']} modules"
    return f"{res['first_s']:.1f} s / {res['second_ms']:.1f} ms{mods}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names (prefix match)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--jobs", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                    help="cells run in parallel (compiles are host-bound; steady-state times then share the device)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per cell")
    ap.add_argument("--out", help="also append the table to this file")
    ap.add_argument("--modules", help="write each cell's compiled module names (JSON) to this file")
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    cases = [c for c in CASES if any(c.startswith(p) for p in args.cases.split(","))]
    modes = args.modes.split(",")
    cells = [(c, m) for c in cases for m in modes]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(cells, pool.map(lambda cm: _cell(*cm, args.timeout), cells)))
    lines = [f"\n### First call against second call, each in a fresh process with an empty kernel cache "
             f"({machine()}; {args.jobs} processes at a time)\n",
             "| function | " + " | ".join(f"{m}: first s / second ms" for m in modes) + " |",
             "|---|" + "---|" * len(modes)]
    lines += [f"| {c} | " + " | ".join(_fmt(results[(c, m)]) for m in modes) + " |" for c in cases]
    publish("\n".join(lines), args.out)
    if args.modules:
        with open(args.modules, "w") as f:
            json.dump({f"{c} | {m}": r.get("modules", []) for (c, m), r in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
