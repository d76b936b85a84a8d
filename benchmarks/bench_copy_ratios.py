"""Each fast path's time as a multiple of a same-size compiled copy of its output, from one call to
the launch floor: ``matrix_exp`` (3x3, 4x4; a plain call, and inside the caller's ``mx.compile`` like the
copy, which replays its graph without the Python of the call) and ``Camera.project`` / ``unproject``
(pinhole, 5-coefficient and fisheye lenses). Every cell is the best of 5 interleaved rounds of a 40-call
median, so the copy and the op see the same device state. One JSON line per row.

    python benchmarks/bench_copy_ratios.py
"""
import json
import os
import sys
import time

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compiled_copy  # noqa: E402

import mlxgeom as mg  # noqa: E402

def med(f, reps=40):
    mx.eval(f())
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); mx.eval(f()); ts.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(ts))

def compare(cells, rounds=5):
    best = {k: 1e9 for k in cells}
    for f in cells.values():
        for _ in range(5): mx.eval(f())
    for _ in range(rounds):
        for k, f in cells.items():
            best[k] = min(best[k], med(f))
    return best

rows = []
for n in (4, 3):
    for b in (1, 256, 8192, 32768, 1 << 20, 1 << 22):
        a = 0.3 * mx.random.normal((b, n, n)) + mx.random.normal((b, n, n)) * 0.7; mx.eval(a)
        expm = mx.compile(mg.linalg.matrix_exp)
        r = compare({"copy": compiled_copy(a), "mlxgeom": lambda a=a: mg.linalg.matrix_exp(a),
                     "in mx.compile": lambda a=a: expm(a)})
        rows.append({"op": f"matrix_exp {n}x{n}", "B": b, **{k: round(v, 4) for k, v in r.items()},
                     "x": round(r["mlxgeom"] / r["copy"], 2), "compiled x": round(r["in mx.compile"] / r["copy"], 2)})
        print(json.dumps(rows[-1]), flush=True)
K = mx.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
d5 = mx.array([-0.2, 0.05, 1e-3, -1e-3, 0.01]); fe = mx.array([0.1, -0.05, 0.01, -0.002])
cam, camf = mg.Camera(K, dist=d5), mg.Camera(K, dist=fe, model="fisheye")
for n in (1024, 16384, 262144, 1 << 20, 1 << 22, 1 << 24):
    p = mx.random.normal((n, 3)) + mx.array([0.0, 0.0, 5.0]); mx.eval(p)
    px = cam.project(p).pixels; mx.eval(px)
    z = mx.full((n,), 5.0)
    r = compare({"copy": compiled_copy(px), "project": lambda: cam.project(p).pixels,
                 "project dist5": lambda: cam.project(p), "project fisheye": lambda: camf.project(p),
                 "unproject dist5": lambda: cam.unproject(px, z)})
    rows.append({"op": "camera", "B": n, **{k: round(v, 4) for k, v in r.items()},
                 **{f"{k} x": round(v / r["copy"], 2) for k, v in r.items() if k != "copy"}})
    print(json.dumps(rows[-1]), flush=True)
