"""Bundle adjustment: mlxgeom.sfm.bundle_adjust against pycolmap.bundle_adjustment on the same problem.

Synthetic BAL-like problems (``mlxgeom.sfm.synthetic_problem``) of the public BAL sizes, or a BAL
file (``--bal problem-49-7776-pre.txt``, Agarwal et al. 2010's format) when one is at hand. Both
solvers start from the same perturbed poses and points and run the same number of LM iterations
(pycolmap: Ceres, all host cores, ``max_num_iterations``); the table gives the time per iteration,
mlxgeom's peak memory and the final costs (both measured by the same projection core).

    python benchmarks/bench_ba.py                     # Ladybug-49 size and the 1/10-scale problem (full size on a GPU)
    python benchmarks/bench_ba.py --scale 1           # 1,000 cameras, 100 k points, 1 M observations (GPU)
    python benchmarks/bench_ba.py --bal FILE          # a BAL problem (f, k1, k2 refined per camera)
    python benchmarks/bench_ba.py --growth            # time per iteration against the size: ba_scaling.png
    python benchmarks/bench_ba.py --phases            # the phases of one LM iteration, timed one by one
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import machine, publish, time_ms  # noqa: E402

from mlxgeom.camera import Camera, colmap, project_points_jacobian  # noqa: E402
from mlxgeom.sfm import bundle_adjust, bundle_adjust_model, problem_to_model, synthetic_problem  # noqa: E402
from mlxgeom.solve import BlockStructure, SchurStep, block_normal_equations  # noqa: E402
from mlxgeom.solve.sparse import flat_gradient  # noqa: E402

# (name, cameras, points, observations): Agarwal et al., "Bundle Adjustment in the Large", 2010.
LADYBUG = ("Ladybug-49 size", 49, 7776, 31843)
DUBROVNIK = ("Dubrovnik-356 size", 356, 226730, 1255268)
FULL = ("1000 cameras", 1000, 100000, 1000000)


def read_bal(path: str):
    """A BAL file as BA arrays in OpenCV conventions.

    BAL cameras look down -z with ``p = -P / P_z`` and pixel ``f r(p) p`` (y up, principal point 0):
    flipping the camera's y and z axes gives OpenCV's ``x_cam = R x + t`` with the pixel (u, -v).
    """
    with open(path) as f:
        c, p, o = (int(v) for v in f.readline().split())
        obs = np.loadtxt(f, max_rows=o).reshape(o, 4)
        params = np.loadtxt(f).reshape(-1)
    cams, pts = params[: 9 * c].reshape(c, 9), params[9 * c:].reshape(p, 3)
    theta = np.linalg.norm(cams[:, :3], axis=1, keepdims=True)
    k = cams[:, :3] / np.where(theta > 0, theta, 1.0)
    kx = np.zeros((c, 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx -= kx.transpose(0, 2, 1)
    s, co = np.sin(theta)[..., None], np.cos(theta)[..., None]
    R = np.eye(3) + s * kx + (1 - co) * kx @ kx
    flip = np.diag([1.0, -1.0, -1.0])
    T = np.tile(np.eye(4), (c, 1, 1))
    T[:, :3, :3], T[:, :3, 3] = flip @ R, cams[:, 3:6] @ flip
    K = np.zeros((c, 3, 3))
    K[:, 0, 0] = K[:, 1, 1] = cams[:, 6]
    K[:, 2, 2] = 1.0
    dist = np.c_[cams[:, 7:9], np.zeros((c, 2))]
    cameras = Camera(mx.array(K.astype(np.float32)), dist=mx.array(dist.astype(np.float32)))
    pixels = np.c_[obs[:, 2], -obs[:, 3]]
    return (cameras, mx.array(T.astype(np.float32)), mx.array(pts.astype(np.float32)),
            mx.array(pixels.astype(np.float32)), obs[:, 0].astype(np.int32), obs[:, 1].astype(np.int32))


def synthetic(cams: int, points: int, observations: int, seed: int = 0):
    p = synthetic_problem(cams, points, observations / points, noise=0.5, seed=seed)
    return p.cameras, p.poses, p.points, p.observations, p.camera_index, p.point_index


def run_ours(problem, iters: int, solver: str, refine, pcg_iterations: int = 50):
    cameras, poses, points, obs, cam, pt = problem
    kw = dict(point_index=pt, camera_index=cam, max_iters=iters, chunk=iters, linear_solver=solver,
              refine_intrinsics=refine, pcg_iterations=pcg_iterations)
    # First call: the observation graph's host analysis and MLX's kernel setup, not timed.
    bundle_adjust(cameras, poses, points, obs, **{**kw, "max_iters": 1, "chunk": 1})
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    res = bundle_adjust(cameras, poses, points, obs, **kw)
    seconds = time.perf_counter() - t0
    return res, seconds, mx.get_peak_memory()


def run_pycolmap(problem, iters: int, refine):
    import pycolmap

    cameras, poses, points, obs, cam, pt = problem
    model = problem_to_model(cameras, poses, points, obs, cam, pt, colmap_model="RADIAL" if refine else None)
    with tempfile.TemporaryDirectory() as d:
        colmap.write_model(model, d)
        rec = pycolmap.Reconstruction(d)
        opts = pycolmap.BundleAdjustmentOptions()
        opts.refine_focal_length = opts.refine_extra_params = bool(refine)
        opts.print_summary = False
        opts.ceres.solver_options.max_num_iterations = iters
        opts.ceres.solver_options.function_tolerance = opts.ceres.solver_options.gradient_tolerance = 0.0
        t0 = time.perf_counter()
        pycolmap.bundle_adjustment(rec, opts)
        seconds = time.perf_counter() - t0
        out = os.path.join(d, "out")
        os.makedirs(out)
        rec.write(out)
        refined = colmap.read_model(out)
    cost = bundle_adjust_model(refined, max_iters=0)[1].initial_cost  # the same cost function as ours
    return seconds, float(cost.item())


def row(name: str, problem, iters: int, solver: str, refine, peer: bool, pcg_iterations: int = 50) -> str:
    res, seconds, peak = run_ours(problem, iters, solver, refine, pcg_iterations)
    it = max(int(res.iterations.item()), 1)
    c, p, o = problem[1].shape[0], problem[2].shape[0], problem[3].shape[0]
    ours = (f"| {name} | {c:,} / {p:,} / {o:,} | {it} | {1e3 * seconds / it:,.0f} | {peak / 2**20:,.0f} | "
            f"{float(res.initial_cost.item()):.6g} | {float(res.cost.item()):.6g} |")
    if not peer:
        return ours + " | | |"
    pseconds, pcost = run_pycolmap(problem, it, refine)
    return ours + f" {1e3 * pseconds / it:,.0f} ({pseconds / seconds:.2g}x) | {pcost:.6g} |"


HEADER = ("| problem | cameras / points / observations | LM iterations | mlxgeom ms / iteration | "
          "peak MiB | initial cost | mlxgeom final cost | pycolmap ms / iteration (its time / ours) | "
          "pycolmap final cost |\n|---|---|---|---|---|---|---|---|---|")


def phases(problem, pcg_iterations: int, out: str | None) -> None:
    """The pieces of one LM iteration, each evaluated on its own (medians): the projection with its
    Jacobians, the block normal equations, the Schur step without PCG iterations (damped point
    blocks, their inverses, the reduced right-hand side, the block-Jacobi preconditioner,
    back-substitution and the predicted decrease) and with them; one S x is their difference over
    the count. Poses and points only, as the tables above."""
    cameras, poses, points, obs, cam, pt = problem
    c, p = poses.shape[0], points.shape[0]
    cam_a, pt_a = mx.array(cam), mx.array(pt)
    t0 = time.perf_counter()
    structure = BlockStructure(cam, pt, c, p, 6, with_pairs=False)
    analysis = 1e3 * (time.perf_counter() - t0)
    K = mx.broadcast_to(cameras.K, (c, 3, 3))[cam_a]

    def project():
        return project_points_jacobian(points[pt_a][:, None], K, poses[cam_a])

    pj = project()
    # In the structure's row layout, as bundle_adjust evaluates its residuals (no gather into it).
    r, jc, jp, w = (structure.rows.gather(a) for a in (pj.pixels[:, 0] - obs, pj.d_pose[:, 0], pj.d_points[:, 0],
                                                        mx.ones(obs.shape[:1])))

    def normal_equations():
        return block_normal_equations(structure, jc, jp, r, w, in_rows=True)

    system = normal_equations()
    g, mu = flat_gradient(system), mx.array(1e-4)
    mx.eval(system, g)
    step0, step = SchurStep(structure, "pcg", 0), SchurStep(structure, "pcg", pcg_iterations)
    times = {"host analysis of the observation graph (once per call)": analysis,
             "projection + Jacobians": time_ms(project, repeats=5),
             "block normal equations": time_ms(normal_equations, repeats=5),
             "Schur step, 0 PCG iterations": time_ms(lambda: step0(system, g, mu), repeats=5),
             f"Schur step, {pcg_iterations} PCG iterations": time_ms(lambda: step(system, g, mu), repeats=3)}
    keys = list(times)
    times["one S x (difference / count)"] = (times[keys[-1]] - times[keys[-2]]) / max(pcg_iterations, 1)
    lines = [f"| phase ({c:,} cameras, {p:,} points, {len(cam):,} observations) | ms |", "|---|---|"]
    lines += [f"| {k} | {v:,.2f} |" for k, v in times.items()]
    publish("\n".join(lines), out)


BASE = (20, 4000, 20000)
SWEEPS = {"cameras": [(c, 4000, 20000) for c in (10, 20, 40, 80)],
          "points": [(20, p, 20000) for p in (2000, 4000, 8000)],
          "observations": [(20, 4000, o) for o in (10000, 20000, 40000, 80000)]}


def growth(out: str, iters: int) -> None:
    """Time per iteration and peak memory against cameras, points and observations, one at a time
    from a base problem (a log-log plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for solver, style in (("dense", "o-"), ("pcg", "s--")):
        for k, (what, sizes) in enumerate(SWEEPS.items()):
            rows = []
            for c, p, o in sizes:
                _, sec, peak = run_ours(synthetic(c, p, o), iters, solver, False)
                rows.append((c, p, o, 1e3 * sec / iters, peak / 2**20))
                print(f"| {solver} | {what} | {c:,} | {p:,} | {o:,} | {rows[-1][3]:,.0f} | {rows[-1][4]:,.0f} |",
                      flush=True)
            r = np.array(rows)
            x = r[:, k] / BASE[k]
            ax[0].loglog(x, r[:, 3], style, color=f"C{k}", label=f"{what}, {solver}")
            ax[1].loglog(x, r[:, 4], style, color=f"C{k}", label=f"{what}, {solver}")
    for a, label in zip(ax, ("ms per LM iteration", "peak MiB")):
        a.set_xlabel(f"size / base ({BASE[0]} cameras, {BASE[1]:,} points, {BASE[2]:,} observations)")
        a.set_ylabel(label)
        a.legend(fontsize=7)
    fig.suptitle(f"bundle_adjust on {mx.default_device()}, one size varied at a time")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    on_gpu = mx.default_device() == mx.gpu
    ap.add_argument("--scale", type=float, default=1.0 if on_gpu else 0.1,
                    help="fraction of the 1000-camera problem (default 1 on the GPU, 0.1 on the CPU)")
    ap.add_argument("--bal", help="a BAL problem file")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--solver", default="auto", choices=["auto", "dense", "pcg"])
    ap.add_argument("--pcg-iterations", type=int, default=50, help="bundle_adjust's pcg_iterations")
    ap.add_argument("--phases", action="store_true", help="time the phases of one LM iteration at --scale")
    ap.add_argument("--no-pycolmap", action="store_true")
    ap.add_argument("--problems", nargs="+", default=["ladybug", "scaled"], choices=["ladybug", "dubrovnik", "scaled"],
                    help="which synthetic problems: the Ladybug-49 / Dubrovnik-356 sizes, the 1000-camera one x --scale")
    ap.add_argument("--growth", action="store_true", help="time against size, plot to benchmarks/ba_scaling.png")
    ap.add_argument("--out", help="also append the table to this file")
    args = ap.parse_args()
    publish(f"\n### bundle adjustment on {machine()}\n", args.out)
    if args.growth:
        print("| solver | varied | cameras | points | observations | ms / iteration | peak MiB |\n"
              "|---|---|---|---|---|---|---|")
        growth(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ba_scaling.png"), 3)
        return
    if args.phases:
        name, *size = FULL
        phases(synthetic(*(int(v * args.scale) for v in size)), args.pcg_iterations, args.out)
        return
    publish(HEADER, args.out)
    peer = not args.no_pycolmap
    if args.bal:
        publish(row(os.path.basename(args.bal), read_bal(args.bal), args.iters, args.solver, ("focal", "k1", "k2"),
                    peer, args.pcg_iterations), args.out)
        return
    name, *size = FULL
    sizes = {"ladybug": LADYBUG, "dubrovnik": DUBROVNIK,
             "scaled": (f"{name} x {args.scale:g}", *(int(v * args.scale) for v in size))}
    for name, c, p, o in (sizes[k] for k in args.problems):
        publish(row(name, synthetic(c, p, o), args.iters, args.solver, False, peer, args.pcg_iterations), args.out)


if __name__ == "__main__":
    main()
