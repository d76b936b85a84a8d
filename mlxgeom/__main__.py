"""Command line: ``python -m mlxgeom demo [--data DIR] [--out DIR] [--small]``, ``python -m mlxgeom info`` and
``python -m mlxgeom ba MODEL_DIR OUT_DIR`` (bundle adjustment of a COLMAP model)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import mlx.core as mx
import numpy as np

from . import __version__


def _backend() -> str:
    if mx.cuda.is_available():
        return "cuda"
    return "metal" if mx.metal.is_available() else "cpu"


def info() -> None:
    """Print versions, backend and default device."""
    gpu = mx.default_device() == mx.gpu
    print(f"mlxgeom {__version__}, mlx {mx.__version__}, numpy {np.__version__}, python {platform.python_version()}")
    print(f"backend: {_backend()}; default device: {mx.default_device()}; GPU path active: {gpu}")


def demo(data: str, out: str, small: bool = False, compiled: bool | None = None) -> None:
    """Run the batch-reprojection demo (:mod:`mlxgeom.demo`) and say where its files are."""
    from . import demo as pipeline

    info()
    t0 = time.perf_counter()
    result = pipeline.run_demo(data, out, small=small, compiled=compiled)
    print()
    print(result.report, end="")
    print()
    print(f"done in {time.perf_counter() - t0:.1f} s; wrote {len(result.files)} files to {os.path.abspath(out)}:")
    for f in result.files:
        print(f"  {os.path.abspath(f)}")


def main(argv: list[str] | None = None) -> int:
    from .demo import DEFAULT_DATA, DEFAULT_OUT

    parser = argparse.ArgumentParser(prog="mlxgeom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="unproject view 0, reproject into all views in one batch, verify, time, "
                                    "refine perturbed poses; writes PNG figures and report.txt")
    d.add_argument("--data", default=DEFAULT_DATA, help="the data/scene folder (default: %(default)s)")
    d.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: ./%(default)s)")
    d.add_argument("--small", action="store_true", help="every 4th pixel, fewer timing runs (CI)")
    d.add_argument("--compile", dest="compiled", action=argparse.BooleanOptionalAction, default=None,
                   help="also time an mx.compile-d projection (default: on the CPU unless --small; its first "
                        "call compiles, which takes tens of seconds with CUDA)")
    sub.add_parser("info", help="print versions, backend and device")
    b = sub.add_parser("ba", help="bundle-adjust a COLMAP model (cameras, images, points3D) and write the result")
    b.add_argument("model_dir")
    b.add_argument("out_dir")
    b.add_argument("--max-iters", type=int, default=50)
    b.add_argument("--refine-intrinsics", action="store_true", help="focal and distortion, as COLMAP's default")
    b.add_argument("--loss", default=None, help="robust loss: huber, cauchy, soft_l1, tukey, geman_mcclure")
    b.add_argument("--loss-scale", type=float, default=1.0, help="robust loss scale in pixels")
    b.add_argument("--solver", default="auto", choices=["auto", "dense", "pcg"], help="reduced camera system")
    b.add_argument("--ext", default=".bin", choices=[".bin", ".txt"], help="output format")
    args = parser.parse_args(argv)
    if args.command == "ba":
        from .sfm.model import adjust_model_dir

        print(adjust_model_dir(args.model_dir, args.out_dir, ext=args.ext, max_iters=args.max_iters,
                               refine_intrinsics=args.refine_intrinsics, loss=args.loss, loss_scale=args.loss_scale,
                               linear_solver=args.solver), end="")
    elif args.command == "demo":
        try:
            demo(args.data, args.out, args.small, args.compiled)
        except FileNotFoundError as e:
            print(f"mlxgeom demo: {e}", file=sys.stderr)
            return 2
    else:
        info()
    return 0


if __name__ == "__main__":
    sys.exit(main())
