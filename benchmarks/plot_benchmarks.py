"""Bar charts of the benchmark ratios in benchmarks/README.md, for the docs site.

    python benchmarks/plot_benchmarks.py [--readme benchmarks/README.md] [--out docs/img]

Reads the markdown tables that the benchmark scripts print (``timing.table``: a ``#### title``
line, then ``| B | col | col ... |`` rows whose cells are ``time`` or ``time (ratio x)``, ``-``
where not measured) and draws, for each table with ratios, the ratios per row (batch size B)
and per column on a log axis (1 = the reference column, the one without ratios). Tables
without ratios are left to the docs page, which includes the README's tables as they are. The last ``##``/``###`` heading above
a table (the machine line) goes into the chart's title.

Writes ``<out>/bench-<n>-<slug>.png`` per table and ``<out>/benchmark_plots.md``, a Markdown
fragment listing the images that ``docs/benchmarks.md`` includes. If the README does not exist
yet, the fragment says how to make it and the script exits 0 with a message, so the docs still
build.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_README = os.path.join(ROOT, "benchmarks", "README.md")
DEFAULT_OUT = os.path.join(ROOT, "docs", "img")
FRAGMENT = "benchmark_plots.md"
_NUMBER = r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CELL = re.compile(rf"^\s*({_NUMBER})\s*(?:\(\s*({_NUMBER})\s*x\s*\))?\s*$")


@dataclass
class Table:
    """One benchmark table: ``ratios[column][i]`` for batch ``batches[i]`` (None: not measured)."""

    title: str
    context: str
    columns: list[str]
    key: str = "B"
    batches: list[str] = field(default_factory=list)
    times: dict[str, list[float | None]] = field(default_factory=dict)
    ratios: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def reference(self) -> str | None:
        """The column measured everywhere it appears but never given a ratio."""
        for c in self.columns:
            if any(t is not None for t in self.times[c]) and all(r is None for r in self.ratios[c]):
                return c
        return None


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_tables(text: str) -> list[Table]:
    """All tables of the README; the first column is the size the rows vary (batch ``B``)."""
    tables: list[Table] = []
    context, title = "", ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        heading = re.match(r"^(#+)\s+(.*)$", line)
        if heading:
            if len(heading.group(1)) <= 3:
                context = heading.group(2).strip()
            else:
                title = heading.group(2).strip()
            i += 1
            continue
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|?\s*:?-{3,}", lines[i + 1].strip()):
            head = _cells(line)
            i += 2
            table = Table(title or "benchmark", context, head[1:], key=head[0])
            for c in table.columns:
                table.times[c], table.ratios[c] = [], []
            while i < len(lines) and lines[i].strip().startswith("|"):
                row = _cells(lines[i])
                table.batches.append(row[0])
                for c, cell in zip(table.columns, row[1:] + ["-"] * (len(head) - len(row))):
                    m = _CELL.match(cell)
                    table.times[c].append(float(m.group(1).replace(",", "")) if m else None)
                    table.ratios[c].append(float(m.group(2).replace(",", "")) if m and m.group(2) else None)
                i += 1
            tables.append(table)
            title = ""
            continue
        i += 1
    return tables


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "table"


def plot_table(table: Table, path: str) -> None:
    """Grouped bars of ratio-to-reference per batch size, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ref = table.reference
    cols = [c for c in table.columns if c != ref and any(r is not None for r in table.ratios[c])]
    n, k = len(table.batches), max(len(cols), 1)
    x = np.arange(n)
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(7.5, 1.2 * n + 3.5), 3.8), dpi=110)
    for j, c in enumerate(cols):
        vals = [r if r is not None else np.nan for r in table.ratios[c]]
        bars = ax.bar(x + (j - (k - 1) / 2) * width, vals, width, label=c)
        for b, v in zip(bars, vals):
            if np.isfinite(v):
                ax.annotate(f"{v:.2g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{table.key}={b}" for b in table.batches])
    ax.set_ylabel((f"time / {ref} time" if ref else "time ratio") + " (lower is faster)", fontsize=8)
    ax.set_title(table.title + (f"\n{table.context}" if table.context else ""), fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", default=DEFAULT_README)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    fragment = os.path.join(args.out, FRAGMENT)
    if not os.path.exists(args.readme):
        msg = (f"{os.path.relpath(args.readme, ROOT)} does not exist yet: run the benchmarks first, e.g. "
               "`python benchmarks/bench_linalg.py --out benchmarks/README.md`, then this script again.")
        print(msg, file=sys.stderr)
        with open(fragment, "w") as f:
            f.write(f"!!! note \"No benchmark plots yet\"\n    {msg}\n")
        return 0
    with open(args.readme) as f:
        tables = parse_tables(f.read())
    for old in os.listdir(args.out):
        if old.startswith("bench-") and old.endswith(".png"):
            os.remove(os.path.join(args.out, old))
    tables = [t for t in tables if any(r is not None for c in t.columns for r in t.ratios[c])]
    lines = []
    for n, table in enumerate(tables):
        name = f"bench-{n:02d}-{_slug(table.title)}.png"
        plot_table(table, os.path.join(args.out, name))
        alt = f"{table.title} ({table.context})" if table.context else table.title
        lines.append(f"![{alt}](img/{name})\n")
        print(f"wrote {os.path.join(args.out, name)}")
    if not tables:
        lines.append(f"!!! note \"No benchmark tables with ratios found\"\n    {os.path.relpath(args.readme, ROOT)} "
                     "holds no table with `time (ratio x)` cells.\n")
        print(f"{args.readme}: no benchmark tables found", file=sys.stderr)
    with open(fragment, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {fragment} ({len(tables)} plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
