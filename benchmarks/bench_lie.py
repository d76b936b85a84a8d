"""SO(3)/SE(3) maps: mlxgeom (compiled) vs scipy Rotation (CPU), mlx3d, and on a GPU PyTorch
closed forms, torch.linalg.matrix_exp, kornia and PyPose, with a compiled copy of the output
as the bandwidth ceiling. One markdown table per op, ratios from the same run.

    python benchmarks/bench_lie.py [--max-batch N] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

import mlx.core as mx
import numpy as np
from scipy.spatial.transform import Rotation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from timing import compiled_copy, machine, publish, table, time_ms  # noqa: E402

from mlxgeom import lie  # noqa: E402

ON_GPU = mx.default_device() == mx.gpu


def _inputs(b: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(b)
    phi = (rng.standard_normal((b, 3)) * 0.8).astype(np.float32)
    xi = (rng.standard_normal((b, 6)) * 0.8).astype(np.float32)
    return {"phi": phi, "xi": xi, "r": Rotation.from_rotvec(phi).as_matrix().astype(np.float32),
            "t": np.array(lie.se3_exp(mx.array(xi))), "p": rng.standard_normal((b, 3)).astype(np.float32)}


def _ops(x: dict[str, np.ndarray]) -> dict[str, tuple[Callable, list[mx.array], dict[str, Callable[[], Any]]]]:
    m = {k: mx.array(v) for k, v in x.items()}
    rot = Rotation.from_matrix(x["r"].astype(np.float64))
    cpu_ref = (lambda d: d) if not ON_GPU else (lambda d: {})
    return {
        "so3_exp": (lie.so3_exp, [m["phi"]], {**cpu_ref({"scipy": lambda: Rotation.from_rotvec(x["phi"]).as_matrix()}),
                                              **peers.so3_exp(x["phi"])}),
        "so3_log": (lie.so3_log, [m["r"]], {**cpu_ref({"scipy": lambda: rot.as_rotvec()}), **peers.so3_log(x["r"])}),
        "se3_exp": (lie.se3_exp, [m["xi"]], {"mlxgeom matrix_exp path": mx.compile(
            lambda v: lie.se3_exp(v, method="matrix_exp")), **peers.se3_exp(x["xi"])}),
        "se3_log": (lie.se3_log, [m["t"]], peers.se3_log(x["t"])),
        "se3_compose": (lie.se3_compose, [m["t"], m["t"]], {}),
        "so3_act": (lie.so3_act, [m["r"], m["p"]], cpu_ref({"scipy": lambda: rot.apply(x["p"])})),
        "se3_act": (lie.se3_act, [m["t"], m["p"]], {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-batch", type=int, default=(1 << 22) if ON_GPU else (1 << 20))
    parser.add_argument("--out", help="also append the tables to this file")
    args = parser.parse_args()
    batches = [b for b in (1, 1024, 65536, 1 << 20, 1 << 22) if b <= args.max_batch]
    rows: dict[str, list[dict[str, Any]]] = {}
    for b in batches:
        x = _inputs(b)
        for name, (fn, fargs, others) in _ops(x).items():
            compiled = mx.compile(fn)
            out = compiled(*fargs)
            mx.eval(out)
            row: dict[str, Any] = {"B": b, "copy": time_ms(compiled_copy(out)), "mlxgeom": time_ms(lambda: compiled(*fargs))}
            for label, peer in others.items():
                call = (lambda p=peer: p(*fargs)) if label.startswith("mlxgeom") else peer
                row[label] = time_ms(call, repeats=5, budget_s=10)
            rows.setdefault(name, []).append(row)
    text = f"### lie on {machine()}\n"
    for name, r in rows.items():
        cols = sorted({c for row in r for c in row}, key=lambda c: list(r[-1]).index(c) if c in r[-1] else 99)
        text += table(f"{name}, float32", [{c: row.get(c) for c in cols} for row in r], ref="copy")
    publish(text, args.out)


if __name__ == "__main__":
    main()
