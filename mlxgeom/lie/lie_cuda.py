"""CUDA fast paths for SO(3)/SE(3) exp, log and the point actions (``kernels/lie.cu``).

The pure-mx closed forms of ``so3.py`` / ``se3.py`` read (*, 3, 3) / (*, 4, 4) entries with strides on
CUDA, several times a same-size copy; the kernel evaluates the same formulas (``_scalar.py``'s float32
Taylor series, passed as an input) one element per thread. ``so3.py`` / ``se3.py`` wrap these with
:func:`mlxgeom._cuda.fast_path`, which differentiates them as the pure path.
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx

from .._cuda import elementwise, on_cuda
from . import _scalar as sc

_OPS = ("so3_exp", "se3_exp", "so3_log", "se3_log", "so3_act", "se3_act")  # the kernel's OP codes


@functools.cache
def _series() -> mx.array:
    """(1, 4 NT + 4): sin t / t, (1 - cos t) / t^2, (t - sin t) / t^3, the inverse-Jacobian factor
    (NT = float32 terms each), then atan(x) / x (4 terms)."""
    nt = sc._TERMS_FLOAT32
    terms = [*sc.SIN_T[:nt], *sc.ONE_MINUS_COS[:nt], *sc.T_MINUS_SIN[:nt], *sc.INV_JAC[:nt], *sc.ATAN_X[:4]]
    return mx.array([[float(t) for t in terms]], dtype=mx.float32)


def _run(op: str, m: mx.array, x: mx.array, trailing: tuple[int, int], out_tail: tuple[int, ...]) -> mx.array:
    """Kernel ``op`` on m (the series, or the transforms acting) and the batch x, of element ndims ``trailing``."""
    km, kx = (math.prod(a.shape[a.ndim - t:]) for a, t in zip((m, x), trailing))
    template = [("OP", _OPS.index(op)), ("KM", km), ("KX", kx), ("KOUT", math.prod(out_tail)),
                ("NT", sc._TERMS_FLOAT32)]
    return elementwise("lie", {"m": m, "x": x}, trailing, out_tail, template)


def enabled(v: mx.array) -> bool:
    """Whether exp / log of ``v`` (tangents (*, 3) / (*, 6) or matrices) take the kernels."""
    return v.dtype == mx.float32 and v.size > 0 and on_cuda()


def act_enabled(m: mx.array, p: mx.array) -> bool:
    """Whether the action of (*, 3, 3) / (*, 4, 4) ``m`` on points (*, 3) takes the kernel: float32,
    and either the same batch shape or a single rotation/pose for all points."""
    same = tuple(m.shape[:-2]) == tuple(p.shape[:-1])
    single = math.prod(m.shape[:-2]) == 1 and m.ndim - 2 <= p.ndim - 1
    return (m.dtype == mx.float32 and p.dtype == mx.float32 and p.size > 0 and (same or single)
            and on_cuda())


def so3_exp(phi: mx.array) -> mx.array:
    """Rotation matrices (*, 3, 3) of float32 rotation vectors (*, 3), by the kernel."""
    return _run("so3_exp", _series(), phi, (1, 1), (3, 3))


def se3_exp(xi: mx.array) -> mx.array:
    """Poses (*, 4, 4) of float32 twists [rho, phi] (*, 6), by the kernel."""
    return _run("se3_exp", _series(), xi, (1, 1), (4, 4))


def so3_log(r: mx.array) -> mx.array:
    """Rotation vectors (*, 3) of float32 rotation matrices (*, 3, 3), by the kernel."""
    return _run("so3_log", _series(), r, (1, 2), (3,))


def se3_log(m: mx.array) -> mx.array:
    """Twists [rho, phi] (*, 6) of float32 poses (*, 4, 4), by the kernel."""
    return _run("se3_log", _series(), m, (1, 2), (6,))


def so3_act(r: mx.array, p: mx.array) -> mx.array:
    """R p (*, 3) for float32 R (*, 3, 3) (or one R) and p (*, 3), by the kernel."""
    return _run("so3_act", r, p, (2, 1), (3,))


def se3_act(m: mx.array, p: mx.array) -> mx.array:
    """R p + t (*, 3) for float32 poses (*, 4, 4) (or one pose) and p (*, 3), by the kernel."""
    return _run("se3_act", m, p, (2, 1), (3,))
