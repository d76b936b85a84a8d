"""Command line: ``python -m mlxgeom demo`` and ``python -m mlxgeom info``."""

from __future__ import annotations

import argparse
import platform
import sys
import time

import mlx.core as mx
import numpy as np

from . import __version__, linalg


def info() -> None:
    """Print versions, backend and default device."""
    gpu = mx.default_device() == mx.gpu
    backend = "cuda" if mx.cuda.is_available() else ("metal" if mx.metal.is_available() else "cpu")
    print(f"mlxgeom {__version__}, mlx {mx.__version__}, numpy {np.__version__}, python {platform.python_version()}")
    print(f"backend: {backend}; default device: {mx.default_device()}; GPU path active: {gpu}")


def demo(batch: int = 1 << 20) -> None:
    """Invert a large batch of 3x3 matrices on the default device and compare with numpy."""
    info()
    a = mx.random.normal((batch, 3, 3), key=mx.random.key(0)) + 3 * mx.eye(3)
    f = mx.compile(linalg.inv)
    mx.eval(f(a))
    t0 = time.perf_counter()
    out = f(a)
    mx.eval(out)
    t_mx = time.perf_counter() - t0
    a_np = np.array(a)
    t0 = time.perf_counter()
    ref = np.linalg.inv(a_np)
    t_np = time.perf_counter() - t0
    err = float(np.abs(np.array(out) - ref).max())
    print(f"inverted {batch:,} 3x3 matrices: mlxgeom {1e3 * t_mx:.1f} ms, numpy {1e3 * t_np:.1f} ms, max |diff| {err:.2e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlxgeom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the demonstration")
    sub.add_parser("info", help="print versions, backend and device")
    args = parser.parse_args(argv)
    {"demo": demo, "info": info}[args.command]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
