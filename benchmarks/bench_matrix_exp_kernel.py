"""Where ``matrix_exp``'s CUDA time goes: kernels/matrix_exp.cu compiled by CuPy's NVRTC as a plain
kernel (threads per block 64 / 128 / 256, loads staged through shared memory or not), with its
register count, spill bytes and time at 1M matrices against a CuPy copy, beside the library call and
an MLX copy (so the gap between the kernel and the call is the per-call overhead). Needs CuPy and
MLX's CUDA backend.

    python benchmarks/bench_matrix_exp_kernel.py
"""
import sys, time, math, json
import numpy as np
import cupy as cp
import mlx.core as mx
import mlxgeom as mg
from mlxgeom._cuda import KERNELS

mod = sys.modules["mlxgeom.linalg.matrix_exp"]
coef = np.asarray(mod.coefficient_table(), np.float32).ravel()
thetas = mod._THETAS[mx.float32]
theta = np.array([*thetas, mod._SHIFT_LIMIT], np.float32)
grow_budget = math.ceil(math.log2(mod._SHIFT_LIMIT / thetas[-1]))
common = (KERNELS / "common.cuh").read_text()
head, _, body = (KERNELS / "matrix_exp.cu").read_text().partition("// @body")
body = body.split("\n", 1)[1]


def build(n, tb, staged):
    c = common if staged else common.replace("#define MLXGEOM_GPU 1", "")
    src = (c + "\n" + head + f"\nextern \"C\" __global__ void __launch_bounds__({tb}) mexp(const float* coef, const float* theta, const float* a, float* out, long long count) {{\n"
           f"  constexpr int N = {n}, NTHETA = {len(thetas)}, MAX_SQUARINGS = 10, GROW_BUDGET = {grow_budget}, TB = {tb};\n"
           "  const long long a_shape[] = {count};\n" + body + "\n}\n")
    m = cp.RawModule(code=src, options=("--std=c++17", "--device-as-default-execution-space"))
    return m.get_function("mexp")


def timeit(f, reps=50):
    for _ in range(5): f()
    cp.cuda.Device().synchronize()
    ts = []
    for _ in range(reps):
        s, e = cp.cuda.Event(), cp.cuda.Event()
        s.record(); f(); e.record(); e.synchronize()
        ts.append(cp.cuda.get_elapsed_time(s, e))
    return float(np.median(ts))


def mlx_time(f, reps=50):
    for _ in range(5): mx.eval(f())
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); mx.eval(f()); ts.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(ts))


rows = []
for n in (4, 3):
    B = 1 << 20
    a = (cp.random.standard_normal((B, n, n), dtype=cp.float32))
    ref = None
    cc, ct = cp.asarray(coef), cp.asarray(theta)
    copy_ms = timeit(lambda: a.copy())
    for tb in (64, 128, 256):
        for staged in (True, False):
            try:
                k = build(n, tb, staged)
            except Exception as ex:
                rows.append({"n": n, "tb": tb, "staged": staged, "error": str(ex)[-300:]}); continue
            out = cp.empty_like(a)
            run = lambda: k(((B + tb - 1) // tb,), (tb,), (cc, ct, a, out, cp.int64(B)))
            ms = timeit(run)
            if ref is None:
                ref = out.copy()
            err = float(cp.nanmax(cp.abs(out - ref)))
            rows.append({"n": n, "tb": tb, "staged": staged, "regs": k.attributes["num_regs"],
                         "local_bytes": k.attributes["local_size_bytes"], "ms": round(ms, 4),
                         "x_copy": round(ms / copy_ms, 2), "maxdiff_vs_first": err})
    am = mx.array(cp.asnumpy(a))
    mg_ms = mlx_time(lambda: mg.linalg.matrix_exp(am))
    copy_mx = mlx_time(lambda: am * 1.0)
    rows.append({"n": n, "cupy_copy_ms": round(copy_ms, 4), "mlxgeom_ms": round(mg_ms, 4), "mx_scale_ms": round(copy_mx, 4)})
    for small in (1, 256, 8192, 32768):
        s = mx.array(cp.asnumpy(a[:small]))
        rows.append({"n": n, "B": small, "mlxgeom_ms": round(mlx_time(lambda: mg.linalg.matrix_exp(s)), 4),
                     "mx_scale_ms": round(mlx_time(lambda: s * 1.0), 4)})
for r in rows:
    print(json.dumps(r))
