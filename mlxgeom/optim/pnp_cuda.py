"""CUDA fast paths for PnP's sums over the points, one warp per problem: the 28 terms of
:func:`pnp._point_totals` (``kernels/pnp_normal_equations.cu``: one read of the points per
linearisation instead of dozens) and the centroid and 40 moments of :func:`_pnp_init.point_moments`
(``kernels/pnp_moments.cu``). ``pnp.py`` / ``_pnp_init.py`` wrap them with
:func:`mlxgeom._cuda.fast_path`, so they are differentiated as the pure paths.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .._cuda import constant, launch, on_cuda
from ..solve.losses import Cauchy, GemanMcClure, Huber, RobustLoss, SoftL1, Tukey

WARP = 32
TERMS = 28
# The kernel's LOSS codes.
_LOSSES = (type(None), Huber, Cauchy, Tukey, SoftL1, GemanMcClure)


def enabled(pose: mx.array, k: mx.array, points: mx.array, loss: RobustLoss | None) -> bool:
    """Whether the kernel applies: CUDA, float32, one point block, pose and K per problem."""
    batch = tuple(points.shape[2:-1])
    return (type(loss) in _LOSSES and points.dtype == pose.dtype == k.dtype == mx.float32
            and points.shape[0] == 1 and points.shape[1] == 6 and points.shape[-1] > 0
            and tuple(pose.shape) == (*batch, 4, 4) and tuple(k.shape) == (*batch, 3, 3) and on_cuda())


def point_totals(pose: mx.array, k: mx.array, points: mx.array, loss: RobustLoss | None) -> mx.array:
    """The 28 per-problem sums (*, 28) of :func:`pnp._point_totals`, one warp per problem."""
    batch = tuple(points.shape[2:-1])
    count = math.prod(batch)
    inputs = {"pose": pose.reshape(count, 16), "k": k.reshape(count, 9),
              "pts": points.reshape(1, 6, count, points.shape[-1]),
              "scale": constant(1.0 if loss is None else float(loss.scale))}
    template = [("LOSS", _LOSSES.index(type(loss))), ("TERMS", TERMS), ("WARP", WARP)]
    (out,) = launch("pnp_normal_equations", inputs, {"out": (count, TERMS)}, count * WARP, template)
    return out.reshape(*batch, TERMS)


def moments_enabled(pw: mx.array, xn: mx.array, w: mx.array) -> bool:
    """Whether the moments kernel applies: CUDA, float32, one row of points per problem."""
    return (pw.dtype == xn.dtype == w.dtype == mx.float32 and w.ndim >= 1 and w.shape[-1] > 0
            and tuple(pw.shape) == (*w.shape, 3) and tuple(xn.shape) == (*w.shape, 2) and on_cuda())


def point_moments(pw: mx.array, xn: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
    """Centroid (*, 3) and packed moments (*, 4, 10) of :func:`_pnp_init.point_moments`, one warp per problem."""
    batch = tuple(w.shape[:-1])
    count, n = math.prod(batch), w.shape[-1]
    inputs = {"pw": pw.reshape(count, n, 3), "xn": xn.reshape(count, n, 2), "w": w.reshape(count, n)}
    (out,) = launch("pnp_moments", inputs, {"out": (count, 43)}, count * WARP, [("WARP", WARP)])
    return out[:, :3].reshape(*batch, 3), out[:, 3:].reshape(*batch, 4, 10)
