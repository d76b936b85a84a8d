"""Sums over the points of many small problems, block by block.

PnP's normal equations and EPnP's moment matrices are dozens of sums over N points of
elementwise products of per-point rows (*, N). MLX materialises every product before its
reduction. On the CPU, with whole (B, N) rows at B = 10,000 those temporaries are several
MB each and dozens are alive at once, so they overflow MLX's CPU buffer cache (32 MB) and
glibc hands their pages back and faults them in again on every pass (2-3x slower than the
arithmetic). Cutting the points into P blocks and reducing each block completely before
the next one's products are formed keeps one block's temporaries alive at a time, under
:data:`CPU_BLOCK_ELEMENTS` each. GPU allocators keep large buffers: there P = 1.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import mlx.core as mx

#: On the CPU a block's per-point temporaries stay under this many elements (512 KB in float32).
CPU_BLOCK_ELEMENTS = 1 << 17


def n_blocks(batch_size: int, n: int) -> int:
    """Number of point blocks P for ``batch_size`` problems of ``n`` points (1 on the GPU)."""
    if mx.default_device() != mx.cpu:
        return 1
    per_block = max(1, CPU_BLOCK_ELEMENTS // max(batch_size, 1))
    return max(1, -(-n // per_block))


def split_points(rows: Sequence[mx.array], blocks: int | None = None) -> mx.array:
    """Per-point rows (R of them, (*, N), broadcast together) as (P, R, *, M) contiguous blocks
    of M = ceil(N / P) points; the last block is padded with zeros, so every sum over the
    points must carry a weight row that is zero there."""
    shape = mx.broadcast_shapes(*(r.shape for r in rows))
    n = shape[-1]
    p = n_blocks(math.prod(shape[:-1]), n) if blocks is None else max(1, min(blocks, n))
    m = -(-n // p)

    def cut(r: mx.array) -> mx.array:  # (*, N) -> (P, *, M), a view where no padding is needed
        r = mx.broadcast_to(r, shape)
        r = mx.pad(r, [(0, 0)] * (r.ndim - 1) + [(0, p * m - n)]) if p * m > n else r
        return mx.moveaxis(r.reshape(*shape[:-1], p, m), -2, 0)

    return mx.stack([cut(r) for r in rows], axis=1)  # one contiguous copy


def sum_blocks(terms: Callable[..., list[mx.array]], blocks: mx.array) -> mx.array:
    """``sum over the points of terms(*rows)`` (*, E): ``terms`` maps the R rows of one block
    ((*, M) each) to E per-point arrays; each block is reduced before the next."""
    total = None
    for j in range(blocks.shape[0]):
        rows = [blocks[j, i] for i in range(blocks.shape[1])]
        s = mx.stack([mx.sum(t, axis=-1) for t in terms(*rows)], axis=-1)
        total = s if total is None else total + s
    return total
