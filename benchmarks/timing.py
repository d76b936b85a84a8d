"""Shared timing and table helpers for the benchmark scripts (median of repeats after warm-up)."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import mlx.core as mx
import numpy as np


def machine() -> str:
    """One line naming the device, MLX version and date, for the tables' headers."""
    dev = mx.default_device()
    if dev == mx.gpu and mx.cuda.is_available():
        try:
            import torch

            name = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 -- torch is only a label source here
            name = "NVIDIA GPU"
        where = f"{name} (MLX CUDA backend)"
    elif dev == mx.gpu:
        where = "Apple GPU (Metal)"
    else:
        where = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return f"{where}; mlx {mx.__version__}; numpy {np.__version__}; {datetime.date.today().isoformat()}"


def _sync(out: Any) -> None:
    """Wait for ``out``: MLX arrays (in any tree) are evaluated, CUDA torch work is synchronised."""
    mx.eval([x for x in _leaves(out) if isinstance(x, mx.array)])
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, (list, tuple)):
        return [leaf for t in tree for leaf in _leaves(t)]
    if isinstance(tree, dict):
        return [leaf for t in tree.values() for leaf in _leaves(t)]
    return [tree]


def time_ms(fn: Callable[[], Any], repeats: int = 10, warmup: int = 2, budget_s: float = 20.0) -> float:
    """Median wall time of ``fn()`` in milliseconds; MLX and torch results are synchronised."""
    for _ in range(warmup):
        _sync(fn())
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        _sync(fn())
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return 1e3 * statistics.median(times)


def compiled_copy(x: mx.array) -> Callable[[], mx.array]:
    """A compiled same-size copy of ``x``: the memory-bandwidth ceiling for an op producing it."""
    f = mx.compile(lambda y: y * 1.0)
    return lambda: f(x)


def table(title: str, rows: list[dict[str, Any]], ref: str) -> str:
    """Markdown table of times (ms) with each column's ratio to the ``ref`` column."""
    cols = [c for c in rows[0] if c != "B"]
    rule = "|---" * (len(cols) + 1) + "|"
    head = f"\n#### {title}\n\n| B | " + " | ".join(cols) + f" |\n{rule}\n"
    lines = []
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            if v is None:
                cells.append("-")
            elif c == ref or not isinstance(r.get(ref), float):
                cells.append(f"{v:.3g}")
            else:
                cells.append(f"{v:.3g} ({v / r[ref]:.2g}x)")
        lines.append(f"| {r['B']:,} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + f"\n\nms, median; (Nx) = time / {ref} time.\n"


def publish(text: str, out: str | None) -> None:
    """Print ``text`` and, with ``out``, append it to that markdown file as it is produced, so a run
    cut short keeps the tables it finished."""
    print(text, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(text if text.endswith("\n") else text + "\n")
