"""Block-sparse Gauss-Newton normal equations of bundle adjustment and their Schur-complement solve.

Bundle adjustment has camera-side parameter blocks (C poses of 6, and G groups of intrinsics that
images share) and P point blocks (size 3); observation i couples its camera-side blocks and point
``p(i)`` only, so ``A = J^T W J`` is made of camera-side blocks ``U``, point blocks ``V_p`` (3 x 3)
and one coupling block ``W_i = J_c,i^T w_i J_p,i`` (D x 3) per observation (Triggs et al., "Bundle
Adjustment - A Modern Synthesis", 2000, sec. 6.1). Everything is accumulated with scatter-adds
(``mx.array.at[idx].add``) into points and chunked sums into cameras (:class:`_CameraRows`),
never as a dense (n x n) matrix.

The damped step solves ``(A + mu D) h = -g`` with Marquardt's diagonal ``D = diag(A)`` (clamped to
[1e-6, 1e32] as Ceres does). The points are eliminated with the closed-form batched 3x3 inverse of
``V*_p = V_p + mu D_p``, leaving the reduced camera system

    S h_c = b,   S = U + mu D_c - sum W_i V*_p(i)^-1 W_j^T (over observation pairs i, j of one point),
    b = -g_c + sum_i W_i V*_p(i)^-1 g_p(i),

then ``h_p = V*_p^-1 (-g_p - sum_i W_i^T h_c(i))``. S is solved either densely (a blocked
right-looking Cholesky in pure MLX, Golub and Van Loan, "Matrix Computations", 4th ed.,
Alg. 4.2.4) or by preconditioned conjugate gradients with the block-Jacobi preconditioner and
a fixed iteration count, applying ``S x = (U + mu D_c) x - sum W V*^-1 W^T x`` without forming S:
U per camera, the coupling in one pass over the observations each way (Agarwal et al., "Bundle
Adjustment in the Large", ECCV 2010, sec. 4).

The damping is Marquardt's scaled diagonal, not the ``mu I`` of the core's dense step: bundle
adjustment mixes parameters whose curvatures differ by many orders (a point at 1e5 scene units
against a nearby one), and ``mu I`` would freeze the weak ones (Marquardt 1963; Ceres'
``jacobi_scaling``). In the Jacobi-scaled variables the diagonal of A is 1, so :meth:`SchurStep.max_diagonal`
is 1 and the loop starts at ``mu_0 = tau``. The predicted decrease ``L(0) - L(h) = -g^T h - h^T A h / 2``
is evaluated exactly from the blocks, so an inexact PCG step is scored correctly in the gain ratio.

The observation graph (which camera and point each observation has) is static problem structure:
:class:`BlockStructure` analyses it once on the host, like Ceres' symbolic analysis; the numeric
work afterwards never synchronises with the host.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from .._compiled import compiled, eager
from .._vmap import all_of
from ..linalg import inv_ex, matmul, solve_spd_ex

#: Marquardt's diagonal is clamped to [DIAGONAL_MIN, DIAGONAL_MAX] (Ceres' min/max_lm_diagonal).
DIAGONAL_MIN, DIAGONAL_MAX = 1e-6, 1e32
#: Reduced camera systems up to this many unknowns are solved by dense Cholesky under "auto".
DENSE_MAX = 1024
LINEAR_SOLVERS = ("auto", "dense", "pcg")


class BlockStructure:
    """The static observation graph of a BA problem and the layout of its reduced unknowns.

    The camera-side unknowns are C camera blocks (``camera_dof`` each, e.g. a pose) followed by
    G group blocks (``group_dof`` each, e.g. intrinsics shared by the images of a group):
    observation i touches camera block ``c(i)``, group block ``group_of_camera[c(i)]`` and point
    ``p(i)``. Its D = camera_dof + group_dof camera-side columns in the reduced vector are
    ``columns[i]``. Observation pairs that share a point (the non-zero blocks of the reduced
    system) are listed for the dense solver, by their rows. The numeric work runs on the
    observations' row layout ``rows`` (sorted by camera, each camera's run padded to whole chunks,
    :class:`_CameraRows`); ``rows.slot`` (O,) is the row of each observation.

    Args:
        camera_index: (O,) ints in [0, C).
        point_index: (O,) ints in [0, P).
        num_cameras: C.
        num_points: P.
        camera_dof: parameters per camera block.
        group_of_camera: (C,) ints in [0, G), or None for no group blocks.
        num_groups: G.
        group_dof: parameters per group block (0: none).
        with_pairs: build the observation pairs (the dense solver needs them).

    Example:
        >>> s = BlockStructure([0, 1, 1], [0, 0, 1], 2, 2, 6)
        >>> s.num_pairs, s.reduced_size, s.column_count
        (5, 12, 6)
    """

    def __init__(self, camera_index: Any, point_index: Any, num_cameras: int, num_points: int, camera_dof: int,
                 group_of_camera: Any = None, num_groups: int = 0, group_dof: int = 0, with_pairs: bool = True):
        cam = np.asarray(camera_index, dtype=np.int64).reshape(-1)
        pt = np.asarray(point_index, dtype=np.int64).reshape(-1)
        if cam.shape != pt.shape:
            raise ValueError(f"camera_index {cam.shape} and point_index {pt.shape}: expected the same shape (O,)")
        _check_range(cam, num_cameras, "camera_index")
        _check_range(pt, num_points, "point_index")
        if group_dof and group_of_camera is None:
            raise ValueError("group_of_camera: expected (C,) group indices when group_dof > 0")
        self.num_cameras, self.num_points, self.num_observations = num_cameras, num_points, cam.size
        self.camera_dof, self.num_groups, self.group_dof = camera_dof, num_groups if group_dof else 0, group_dof
        self.reduced_size = num_cameras * camera_dof + self.num_groups * group_dof
        cols = cam[:, None] * camera_dof + np.arange(camera_dof)[None, :]
        self.group_of_camera = None
        if group_dof:
            groups = np.asarray(group_of_camera, dtype=np.int64).reshape(-1)
            if groups.shape != (num_cameras,):
                raise ValueError(f"group_of_camera: expected shape ({num_cameras},), got {groups.shape}")
            _check_range(groups, num_groups, "group_of_camera")
            gcols = num_cameras * camera_dof + groups[cam][:, None] * group_dof + np.arange(group_dof)[None, :]
            cols = np.concatenate([cols, gcols], axis=1)
            self.group_of_camera = mx.array(groups.astype(np.int32))
        self.columns_np = cols
        self.columns = mx.array(cols.astype(np.int32))
        self.camera_index = mx.array(cam.astype(np.int32))
        self.point_index = mx.array(pt.astype(np.int32))
        self.rows = _CameraRows(cam, pt, num_cameras, num_points)
        self.pair_first = self.pair_second = self.pair_blocks = self.own_blocks = None
        self.num_pairs = 0
        if with_pairs:
            first, second = _observation_pairs(pt)
            slot = self.rows.slot_np
            self.pair_first, self.pair_second = (mx.array(slot[k].astype(np.int32)) for k in (first, second))
            self.num_pairs = first.size
            grp = groups[cam] if group_dof else None
            self.pair_blocks = self._block_rows(cam[first], cam[second], grp, first, second)
            own = np.arange(num_cameras)
            self.own_blocks = self._block_rows(own, own, groups if group_dof else None, own, own)

    def _block_rows(self, cam_a: np.ndarray, cam_b: np.ndarray, groups: np.ndarray | None, a: np.ndarray,
                    b: np.ndarray) -> list[mx.array]:
        """Where the (D x D) block coupling entry a[k] (of camera cam_a[k]) to entry b[k] lands in the
        reduced matrix's sub-matrices camera-camera (C C, dc, dc) and, with groups, camera-group,
        group-camera and group-group (the pieces of :func:`schur_dense`): one row index per block."""
        c, g = self.num_cameras, self.num_groups
        rows = [cam_a * c + cam_b]
        if self.group_dof:
            ga, gb = groups[a], groups[b]
            rows += [cam_a * g + gb, ga * c + cam_b, ga * g + gb]
        return [mx.array(r.astype(np.int32)) for r in rows]

    @property
    def column_count(self) -> int:
        """D, the camera-side columns of one observation."""
        return self.camera_dof + self.group_dof


def _check_range(idx: np.ndarray, n: int, name: str) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"{name}: expected values in [0, {n})")


def _observation_pairs(point_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (i, j) of observations of the same point, i == j included."""
    order = np.argsort(point_index, kind="stable")
    sorted_pts = point_index[order]
    starts = np.flatnonzero(np.r_[True, sorted_pts[1:] != sorted_pts[:-1]]) if sorted_pts.size else np.zeros(0, int)
    counts = np.diff(np.r_[starts, sorted_pts.size])
    first, second = [], []
    for k in np.unique(counts):  # one vectorised block per track length
        members = order[starts[counts == k][:, None] + np.arange(k)[None, :]]  # (tracks, k)
        first.append(np.repeat(members, k, axis=1).reshape(-1))
        second.append(np.tile(members, (1, k)).reshape(-1))
    if not first:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate(first).astype(np.int32), np.concatenate(second).astype(np.int32)


class BlockSystem(NamedTuple):
    """Block-sparse normal equations ``A = J^T W J``, ``g = J^T W r`` of one BA problem.

    The camera-side blocks of A are kept as the weighted per-observation Jacobians
    ``B_i = sqrt(w_i) J_c,i`` (products ``U x`` are gathers and scatter-adds; the dense solver
    scatters ``B_i^T B_i``), which take 2 D floats per observation instead of D^2.

    Attributes:
        B: (rows, 2, D) weighted camera-side Jacobians, in the row layout ``structure.rows``
            (observations sorted by camera, zero on the padding rows).
        V: (P, 3, 3) point blocks ``sum_i w_i J_p,i^T J_p,i``.
        W: (rows, D, 3) coupling block ``w_i J_c,i^T J_p,i`` of each observation, likewise.
        g_c: (n_c,) camera-side gradient, in the reduced layout.
        g_p: (P, 3) point gradient.
    """

    B: mx.array
    V: mx.array
    W: mx.array
    g_c: mx.array
    g_p: mx.array


def _tmat(j: mx.array, k: mx.array) -> mx.array:
    """(O, a, b) = J^T K for (O, 2, a) and (O, 2, b), exact float32."""
    return matmul(j.swapaxes(-1, -2), k)


def block_normal_equations(structure: BlockStructure, jac_camera: mx.array, jac_point: mx.array,
                           residual: mx.array, weight: mx.array, in_rows: bool = False) -> BlockSystem:
    """Accumulate the block-sparse normal equations from per-observation Jacobians.

    Args:
        structure: the observation graph.
        jac_camera: (O, 2, D) d residual / d camera-side parameters (``structure.columns`` order).
        jac_point: (O, 2, 3) d residual / d point.
        residual: (O, 2).
        weight: (O,) IRLS weights >= 0 (0 drops an observation).
        in_rows: the four arrays are already in the row layout ``structure.rows`` (rows, ...)
            (observation ``structure.rows.source[k]`` in row k where ``rows.real[k]``, weight 0
            elsewhere), as a caller that evaluates its residuals row by row passes them: no gather.

    Returns:
        :class:`BlockSystem`.

    Example:
        >>> s = BlockStructure([0], [0], 1, 1, 1)
        >>> sys = block_normal_equations(s, mx.ones((1, 2, 1)), mx.ones((1, 2, 3)), mx.ones((1, 2)), mx.ones(1))
        >>> sys.g_c.tolist(), sys.g_p.tolist()
        ([2.0], [[2.0, 2.0, 2.0]])
    """
    if jac_camera.shape[-1] != structure.column_count:
        raise ValueError(f"jac_camera: expected (O, 2, {structure.column_count}), got {tuple(jac_camera.shape)}")
    rows = structure.rows
    if not in_rows:
        jac_camera, jac_point, residual, weight = (rows.gather(a) for a in (jac_camera, jac_point, residual, weight))
    root = mx.sqrt(mx.maximum(weight, 0.0))[:, None, None]
    b, bp = jac_camera * root, jac_point * root
    br = residual[..., None] * root  # (rows, 2, 1)
    p = rows.point
    V = mx.zeros((structure.num_points, 3, 3), dtype=b.dtype).at[p].add(_tmat(bp, bp))
    g_c = _scatter_columns(structure, _tmat(b, br)[..., 0])
    g_p = mx.zeros((structure.num_points, 3), dtype=b.dtype).at[p].add(_tmat(bp, br)[..., 0])
    return BlockSystem(b, V, _tmat(b, bp), g_c, g_p)


def _mv(m: mx.array, x: mx.array) -> mx.array:
    """(*, a) = M x for (*, a, b) and (*, b), elementwise (exact float32)."""
    return mx.sum(m * x[..., None, :], axis=-1)


def _mtv(m: mx.array, x: mx.array) -> mx.array:
    """(*, b) = M^T x for (*, a, b) and (*, a)."""
    return mx.sum(m * x[..., :, None], axis=-2)


# The per-observation and per-point products contract 3 or D <= ~15 entries: written out as sums
# of columns and compiled, each is one fused kernel that reads M once (a broadcast product and a
# reduction over a short axis are two passes and a slow reduction, ~3x the time on the CPU). The
# columns are kept-dimension slices (one view node each, not a slice, a squeeze and an expand):
# every graph node costs host time at evaluation, and PCG runs these products 4 times per iteration.
# (One mx.split per operand would be fewer nodes still, but inside a caller's mx.compile MLX 0.32.4
# fails on it with IndexError "_Map_base::at".)
@compiled
def _small_mv(m: mx.array, x: mx.array) -> mx.array:
    """:func:`_mv` for a short contracted axis."""
    xe = x[..., None, :]
    out = m[..., 0:1] * xe[..., 0:1]
    for k in range(1, m.shape[-1]):
        out = out + m[..., k:k + 1] * xe[..., k:k + 1]
    return out.squeeze(-1)


@compiled
def _small_mtv(m: mx.array, x: mx.array) -> mx.array:
    """:func:`_mtv` for a short contracted axis."""
    xe = x[..., :, None]
    out = m[..., 0:1, :] * xe[..., 0:1, :]
    for k in range(1, m.shape[-2]):
        out = out + m[..., k:k + 1, :] * xe[..., k:k + 1, :]
    return out.squeeze(-2)


def _eye_like(a: mx.array) -> mx.array:
    return mx.eye(a.shape[-1], dtype=a.dtype)


def _chunk_size(num_observations: int, num_cameras: int) -> int:
    """Rows per chunk of a camera's run: 64, or a smaller power of two when the cameras have few
    observations (the padding, under one chunk per camera, stays near 1/16 of the rows or less)."""
    mean = num_observations / max(num_cameras, 1)
    return 2 ** int(np.clip(np.floor(np.log2(max(mean / 8.0, 1.0))), 0, 6))


class _CameraRows:
    """The observations laid out as rows sorted by camera, each camera's run padded to whole chunks
    of ``chunk`` rows, so every aligned chunk belongs to one camera.

    Sums over a camera's observations are then a reshape, a sum per chunk and a scatter-add of the
    chunk sums (no gather, no mask; a scatter-add per observation into the C camera rows costs one
    contended atomic add per entry on a GPU, ``chunk`` times more than here), and a camera's values
    reach its rows as one row per chunk broadcast over the chunk. A padding row is an inert
    observation (zero Jacobian, weight 0) of its chunk's camera; its point index runs over the
    points so that its zero adds spread out instead of piling onto one point.

    >>> rows = _CameraRows(np.array([1, 0, 1]), np.array([0, 1, 2]), 2, 3, chunk=2)
    >>> rows.count, rows.source.tolist(), rows.real.tolist(), rows.camera.tolist()
    (4, [1, 0, 0, 2], [True, False, True, True], [0, 0, 1, 1])
    >>> rows.sum(mx.array([[1.0], [0.0], [2.0], [4.0]])).tolist()
    [[1.0], [6.0]]
    """

    def __init__(self, camera_index: np.ndarray, point_index: np.ndarray, num_cameras: int, num_points: int,
                 chunk: int | None = None):
        o = camera_index.size
        self.chunk = _chunk_size(o, num_cameras) if chunk is None else chunk
        counts = np.bincount(camera_index, minlength=num_cameras)
        chunks = -(-counts // self.chunk)
        # numpy's stable sort of 16-bit keys is a radix sort: ~7x faster than on int64 at 1 M entries.
        keys = camera_index.astype(np.int16) if num_cameras <= np.iinfo(np.int16).max else camera_index
        order = np.argsort(keys, kind="stable")
        first = np.r_[0, np.cumsum(counts)[:-1]]  # of each camera in the sorted order
        padded_first = np.r_[0, np.cumsum(chunks)[:-1]] * self.chunk  # ... in the row layout
        seg = camera_index[order]
        slot = np.empty(o, dtype=np.int64)
        slot[order] = padded_first[seg] + np.arange(o) - first[seg]
        self.count = int(chunks.sum()) * self.chunk
        real = np.zeros(self.count, dtype=bool)
        source = np.zeros(self.count, dtype=np.int64)
        real[slot], source[slot] = True, np.arange(o)
        point = np.arange(self.count) % max(num_points, 1)
        point[slot] = point_index
        self.slot_np, self.slot = slot, mx.array(slot.astype(np.int32))
        self.real, self.source = mx.array(real), mx.array(source.astype(np.int32))
        self.camera = mx.array(np.repeat(np.arange(num_cameras), chunks * self.chunk).astype(np.int32))
        self.point = mx.array(point.astype(np.int32))
        self.owner = mx.array(np.repeat(np.arange(num_cameras), chunks).astype(np.int32))
        self.num_cameras = num_cameras

    def chunks(self, values: mx.array) -> mx.array:
        """(n_chunks, chunk, ...) view of per-row values (rows, ...)."""
        return values.reshape(-1, self.chunk, *values.shape[1:])

    def sum(self, values: mx.array) -> mx.array:
        """(C, ...) sums of per-row values (rows, ...) by camera."""
        return mx.zeros((self.num_cameras, *values.shape[1:]), dtype=values.dtype).at[self.owner].add(
            mx.sum(self.chunks(values), axis=1))

    def gather(self, values: mx.array) -> mx.array:
        """Per-observation values (O, ...) in the row layout (rows, ...), zero on the padding rows."""
        return _masked_rows(values[self.source], self.real.reshape((-1,) + (1,) * (values.ndim - 1)))


@compiled
def _masked_rows(values: mx.array, real: mx.array) -> mx.array:
    # where, not a product: a padding row repeats observation 0, which may hold inf.
    return mx.where(real, values, 0.0)


class _Reduced(NamedTuple):
    v_inv: mx.array  # (P, 3, 3) (V + mu D_p)^-1
    y: mx.array  # (rows, D, 3) Y_i = W_i V*_p(i)^-1, formed once per step (PCG applies it every iteration)
    u: mx.array  # (C, D, D) camera-side block of A per camera (its pose and its group's columns)
    rhs: mx.array  # (n_c,) b of the reduced system
    damp: mx.array  # (n_c,) mu D_c, the camera-side damping
    ok: mx.array  # () every point block invertible


# Camera-side values move between the observations (O, D) and the reduced layout (n_c,) through
# per-camera rows (C, D) (a camera's pose and its group's columns): a row gather from the
# cameras, and a segment sum into them (then the group columns summed over each group's C
# cameras), instead of one flat index per column.
def _camera_columns(structure: BlockStructure, x: mx.array) -> mx.array:
    """(C, D) camera-side entries of x (n_c,) of each camera: its pose and its group's."""
    nc = structure.num_cameras * structure.camera_dof
    xc = x[:nc].reshape(structure.num_cameras, -1)
    if not structure.group_dof:
        return xc
    return mx.concatenate([xc, x[nc:].reshape(structure.num_groups, -1)[structure.group_of_camera]], axis=-1)


def _camera_rows(structure: BlockStructure, rows: mx.array) -> mx.array:
    """(n_c,) from per-camera rows (C, D): the pose columns as they are, the group columns summed."""
    if not structure.group_dof:
        return rows.reshape(-1)
    dc = structure.camera_dof
    grp = mx.zeros((structure.num_groups, structure.group_dof), dtype=rows.dtype).at[structure.group_of_camera].add(
        rows[:, dc:])
    return mx.concatenate([rows[:, :dc].reshape(-1), grp.reshape(-1)])


def _chunk_columns(structure: BlockStructure, x: mx.array) -> mx.array:
    """(n_chunks, 1, D) camera-side entries of x (n_c,) of each chunk's camera: one row per chunk of
    the row layout, broadcast over its rows inside the fused products (no per-observation gather)."""
    return _camera_columns(structure, x)[structure.rows.owner][:, None]


def _coupling_t(structure: BlockStructure, system: BlockSystem, x: mx.array) -> mx.array:
    """(rows, 3) ``W_i^T x[cols_i]`` of each observation."""
    return _small_mtv(structure.rows.chunks(system.W), _chunk_columns(structure, x)).reshape(-1, 3)


def _scatter_columns(structure: BlockStructure, values: mx.array) -> mx.array:
    """(n_c,) sum of per-observation camera-side values (O, D) into the reduced layout."""
    return _camera_rows(structure, structure.rows.sum(values))


def _marquardt(diag: mx.array) -> mx.array:
    return mx.clip(diag, DIAGONAL_MIN, DIAGONAL_MAX)


def camera_blocks(structure: BlockStructure, system: BlockSystem) -> mx.array:
    """(C, D, D) ``sum B_i^T B_i`` over each camera's observations: U, camera by camera.

    Every observation of a camera has the same D columns (its pose and its group's), so these
    blocks hold all of U (the group-group and pose-group parts summed over a group's cameras):
    ``U x`` costs O(C) instead of a pass over the observations.
    """
    return structure.rows.sum(_tmat(system.B, system.B))


def _reduce(structure: BlockStructure, system: BlockSystem, mu: mx.array) -> _Reduced:
    dv = _marquardt(mx.diagonal(system.V, axis1=-2, axis2=-1))
    # Eager: the compiled 3x3 inverse and its check are 9 kernels to compile on the first call, for
    # about 1 ms per step at 10k points.
    with eager():
        v_inv, v_ok = inv_ex(system.V + mu * dv[..., None] * _eye_like(system.V))
    u = camera_blocks(structure, system)
    du = _camera_rows(structure, mx.diagonal(u, axis1=-2, axis2=-1))
    # W_i V*^-1 g_p = W_i (V*^-1 g_p): one 3-vector per point instead of a (D, 3) block per observation.
    s_p = _small_mv(v_inv, system.g_p)[structure.rows.point]
    rhs = -system.g_c + _scatter_columns(structure, _small_mv(system.W, s_p))
    y = matmul(system.W, v_inv[structure.rows.point])
    return _Reduced(v_inv, y, u, rhs, mu * _marquardt(du), mx.all(v_ok))


def schur_apply(structure: BlockStructure, system: BlockSystem, red: _Reduced, x: mx.array) -> mx.array:
    """``S x`` (n_c,) without forming S: ``(U + mu D_c) x - sum_i Y_i (sum_j W_j^T x[cols_j])``.

    One pass over the observations each way (a (D, 3) product with the camera's entries broadcast
    over each chunk and a scatter into the points; a point gather, a (D, 3) product with
    ``Y = W V*^-1`` and the chunked sum into the cameras); U acts per camera.
    """
    rows, p = structure.rows, structure.rows.point
    t = mx.zeros((structure.num_points, 3), dtype=x.dtype).at[p].add(_coupling_t(structure, system, x))
    # Per camera (C rows) the broadcast product and reduction: 3 graph nodes, and C is small.
    out = _mv(red.u, _camera_columns(structure, x)) - rows.sum(_small_mv(red.y, t[p]))
    return _camera_rows(structure, out) + red.damp * x


def schur_dense(structure: BlockStructure, system: BlockSystem, red: _Reduced) -> mx.array:
    """(n_c, n_c) reduced camera system S, from the observations and their pairs per point."""
    if structure.pair_blocks is None:
        raise ValueError("schur_dense: the BlockStructure was built with with_pairs=False")
    pairs = matmul(red.y[structure.pair_first],
                   system.W[structure.pair_second].swapaxes(-1, -2))  # (K, D, D) Y_i W_j^T
    dc, c, g = structure.camera_dof, structure.num_cameras, structure.num_groups
    cam, grp = slice(0, dc), slice(dc, None)
    pieces = [(cam, cam, c, c)]
    if structure.group_dof:
        pieces += [(cam, grp, c, g), (grp, cam, g, c), (grp, grp, g, g)]
    # Block rows (one index per D x D block, not per entry) into one array per sub-matrix, then
    # one transpose each into the (n_c, n_c) layout.
    parts = []
    for (ra, rb, na, nb), pair_rows, own_rows in zip(pieces, structure.pair_blocks, structure.own_blocks):
        u = red.u if len(pieces) == 1 else red.u[:, ra, rb]
        y_w = pairs if len(pieces) == 1 else pairs[:, ra, rb]
        zero = mx.zeros((na * nb, *u.shape[1:]), dtype=u.dtype)
        part = zero.at[own_rows].add(u) - zero.at[pair_rows].add(y_w)
        parts.append(part.reshape(na, nb, *u.shape[1:]).transpose(0, 2, 1, 3).reshape(na * u.shape[1], -1))
    s = parts[0] if len(parts) == 1 else mx.concatenate(
        [mx.concatenate(parts[:2], axis=1), mx.concatenate(parts[2:], axis=1)], axis=0)
    return s + mx.diag(red.damp)


def schur_block_jacobi(structure: BlockStructure, system: BlockSystem, red: _Reduced) -> list[mx.array]:
    """Inverses of the diagonal blocks of S: camera blocks (C, dc, dc) and group blocks (G, dg, dg).

    Each observation adds ``B_i^T B_i - Y_i W_i^T`` (its own pair); the pairs of two observations of
    one point through the same group are left out (a preconditioner only has to be close).
    """
    own = structure.rows.sum(matmul(red.y, system.W.swapaxes(-1, -2)))
    own = red.u - own  # (C, D, D): B_i^T B_i - Y_i W_i^T summed per camera
    dc, dg = structure.camera_dof, structure.group_dof
    blocks = [own[:, :dc, :dc]]
    if dg:
        blocks.append(mx.zeros((structure.num_groups, dg, dg), dtype=own.dtype).at[structure.group_of_camera].add(
            own[:, dc:, dc:]))
    out = []
    offset = 0
    for diag in blocks:
        size = diag.shape[0] * diag.shape[-1]
        diag = diag + red.damp[offset:offset + size].reshape(diag.shape[0], -1)[..., None] * _eye_like(diag)
        offset += size
        # Eager: once per step on C small blocks, ~1 ms, where compiled it is 14 kernels to build.
        with eager():
            inv, ok = solve_spd_ex(diag, mx.broadcast_to(_eye_like(diag), diag.shape))
        out.append(mx.where(ok[:, None, None], inv, 0.0))
    return out


@compiled
def _inverse_factor(a: mx.array, below: mx.array, pivot_row: mx.array) -> tuple[mx.array, mx.array]:
    """``(L^-1, ok)`` of a diagonal block's Cholesky factor L, by b right-looking elimination steps
    on ``[A | I]``: step j divides row j by the root of its pivot (row j of ``[L^T | L^-1]``) and
    takes its multiples off the rows below (the trailing update ``A22 - l l^T`` and the forward
    substitution at once). Every step is the same full-size graph, the step's row and column picked
    by views and masks rather than by shrinking slices, so the b steps compile to one fused kernel
    (and the pivot flags to one more; every block has the same shape, so one trace serves them all). Failed pivots are
    replaced by 1 and flagged. ``below`` (b, b) is 1 under the diagonal and 0 elsewhere, ``pivot_row``
    the bool identity: given by the caller, so that building them compiles no kernel of its own."""
    b = a.shape[-1]
    m = mx.concatenate([a, mx.eye(b, dtype=a.dtype)], axis=1)
    ok = mx.array(True)
    for j in range(b):
        d = m[j, j]
        good = d > 0
        ok = all_of(ok, good)
        root = mx.sqrt(mx.where(good, d, 1.0))
        row = m[j:j + 1] / root
        m = mx.where(pivot_row[:, j:j + 1], row, m - (m[:, j:j + 1] / root * below[:, j:j + 1]) * row)
    return m[:, b:], ok


def cholesky_solve_blocked(a: mx.array, b: mx.array, block: int = 8) -> tuple[mx.array, mx.array]:
    """Solve ``A x = b`` for one SPD (n, n) matrix by a blocked right-looking Cholesky.

    Pure MLX (no ``mx.linalg``): per diagonal block the inverse factor ``L11^-1`` (one compiled elimination on
    ``[A11 | I]``), the panel ``A21 L11^-T`` and the trailing update
    ``A22 - L21 L21^T`` as exact float32 rank-``block`` products (GVL Alg. 4.2.4); then blocked
    forward and back substitution. n is padded to a multiple of ``block`` with identity rows.

    Args:
        a: (n, n) symmetric positive definite.
        b: (n,).
        block: block size (<= 16 keeps the products unrolled).

    Returns:
        ``(x (n,), ok ())``: ok False where a pivot was not positive or not finite (x is then
        not meaningful).

    Example:
        >>> x, ok = cholesky_solve_blocked(mx.array([[4.0, 2.0], [2.0, 3.0]]), mx.array([2.0, 1.0]), block=1)
        >>> [round(v, 4) for v in x.tolist()], ok.item()
        ([0.5, 0.0], True)
    """
    n = a.shape[-1]
    pad = (-n) % block
    if pad:
        a = mx.concatenate([mx.concatenate([a, mx.zeros((n, pad), dtype=a.dtype)], axis=1),
                            mx.concatenate([mx.zeros((pad, n), dtype=a.dtype), mx.eye(pad, dtype=a.dtype)], axis=1)])
        b = mx.concatenate([b, mx.zeros((pad,), dtype=b.dtype)])
    nb = a.shape[-1] // block
    ok = mx.all(mx.isfinite(a))
    inv_diag, panels = [], []
    trailing = 0.5 * (a + a.T)
    below, pivot_row = mx.tri(block, k=-1, dtype=a.dtype), mx.eye(block, dtype=mx.bool_)
    for k in range(nb):
        linv, ok_k = _inverse_factor(trailing[:block, :block], below, pivot_row)
        ok = all_of(ok, ok_k)
        inv_diag.append(linv)
        if k + 1 < nb:
            panel = matmul(trailing[block:, :block], linv.T)  # L21 = A21 L11^-T
            panels.append(panel)
            trailing = trailing[block:, block:] - matmul(panel, panel.T)
    y = []
    r = b
    for k in range(nb):  # L y = b, right-looking
        yk = _mv(inv_diag[k], r[:block])
        y.append(yk)
        if k + 1 < nb:
            r = r[block:] - _mv(panels[k], yk)
    x: list[mx.array] = [mx.array(0.0)] * nb
    for k in reversed(range(nb)):  # L^T x = y
        rk = y[k]
        if k + 1 < nb:
            rk = rk - _mtv(panels[k], mx.concatenate(x[k + 1:]))
        x[k] = _mtv(inv_diag[k], rk)
    sol = mx.concatenate(x)[:n]
    return sol, all_of(ok, mx.all(mx.isfinite(sol)))


def pcg(apply: Any, rhs: mx.array, precondition: Any, iterations: int) -> mx.array:
    """Preconditioned conjugate gradients with a fixed iteration count (no host sync).

    Args:
        apply: ``x (n,) -> S x`` for SPD S.
        rhs: (n,).
        precondition: ``r (n,) -> M^-1 r``.
        iterations: static count.

    Returns:
        x (n,). A direction whose curvature is not positive, or a residual that reached zero,
        stops the updates (the iterate is frozen with ``mx.where``).

    Example:
        >>> A = mx.array([[4.0, 1.0], [1.0, 3.0]])
        >>> x = pcg(lambda v: _mv(A, v), mx.array([1.0, 2.0]), lambda r: r, 2)
        >>> [round(v, 4) for v in x.tolist()]
        [0.0909, 0.6364]
    """
    x = mx.zeros_like(rhs)
    r = rhs
    z = precondition(r)
    d = z
    rz = mx.sum(r * z)
    for _ in range(iterations):
        q = apply(d)
        x, r, go = _cg_advance(x, r, d, q, rz)
        d, rz = _cg_direction(r, precondition(r), d, rz, go)
    return x


# The vector part of a CG iteration, ~20 small ops, as two compiled kernels (on a GPU each op of
# an n_c-vector is a launch that costs more than its arithmetic).
@compiled
def _cg_advance(x: mx.array, r: mx.array, d: mx.array, q: mx.array, rz: mx.array) -> tuple[mx.array, ...]:
    curv = mx.sum(d * q)
    go = all_of(curv > 0, rz > 0, mx.isfinite(curv))
    alpha = mx.where(go, rz / mx.where(go, curv, 1.0), 0.0)
    return x + alpha * d, r - alpha * q, go


@compiled
def _cg_direction(r: mx.array, z: mx.array, d: mx.array, rz: mx.array, go: mx.array) -> tuple[mx.array, mx.array]:
    rz_new = mx.sum(r * z)
    beta = mx.where(go, rz_new / mx.where(rz > 0, rz, 1.0), 0.0)
    return mx.where(go, z + beta * d, d), mx.where(go, rz_new, rz)


def _block_precondition(structure: BlockStructure, inverses: list[mx.array]) -> Any:
    cams = structure.num_cameras * structure.camera_dof

    def apply(r: mx.array) -> mx.array:
        parts = [_mv(inverses[0], r[:cams].reshape(structure.num_cameras, -1)).reshape(-1)]
        if len(inverses) > 1:
            parts.append(_mv(inverses[1], r[cams:].reshape(structure.num_groups, -1)).reshape(-1))
        return mx.concatenate(parts) if len(parts) > 1 else parts[0]

    return apply


class SchurStep:
    """The damped block-sparse step as a ``StepSolver`` for :func:`mlxgeom.solve.lm_loop`.

    ``__call__(system, g, mu) -> (h, ok, predicted)`` with ``system`` a :class:`BlockSystem`,
    ``g`` the flat gradient ``[g_c, g_p.ravel()]`` (n,) (:func:`flat_gradient`), h likewise flat
    (n,) and ``predicted = -g^T h - h^T A h / 2`` evaluated exactly. Damping ``mu D``, Marquardt's
    clamped diagonal of A (see the module docstring); ``max_diagonal`` is 1, the diagonal of the
    Jacobi-scaled system, so ``mu_0 = tau``.

    Args:
        structure: the observation graph.
        linear_solver: ``"dense"`` (blocked Cholesky of S), ``"pcg"`` (block-Jacobi PCG, S never
            formed) or ``"auto"`` (dense when the reduced system has at most ``DENSE_MAX`` unknowns).
        pcg_iterations: static PCG iteration count.

    Example:
        >>> s = BlockStructure([0, 0], [0, 1], 1, 2, 1)
        >>> sys = block_normal_equations(s, mx.ones((2, 2, 1)), mx.ones((2, 2, 3)), mx.ones((2, 2)), mx.ones(2))
        >>> h, ok, pred = SchurStep(s)(sys, flat_gradient(sys), mx.array(1.0))
        >>> h.shape, ok.item(), pred.item() > 0, SchurStep(s).max_diagonal(sys).item()
        ((7,), True, True, 1.0)
    """

    def __init__(self, structure: BlockStructure, linear_solver: str = "auto", pcg_iterations: int = 50):
        self.linear_solver = resolve_linear_solver(structure.reduced_size, linear_solver)
        if self.linear_solver == "dense" and structure.pair_blocks is None:
            raise ValueError("linear_solver='dense' needs a BlockStructure built with with_pairs=True")
        self.structure, self.pcg_iterations = structure, pcg_iterations

    def max_diagonal(self, system: BlockSystem) -> mx.array:
        """1 (a scalar): the diagonal of the Jacobi-scaled system, so ``mu_0 = tau``."""
        return mx.ones((), dtype=system.V.dtype)

    def __call__(self, system: BlockSystem, g: mx.array, mu: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        st = self.structure
        mu = mx.reshape(mu, ())
        # x * 0 is 0 for finite x and NaN for inf or NaN: one summed pass per array finds any
        # non-finite entry (a reduction of isfinite masks is ~3x slower on the CPU).
        finite = mx.isfinite(mu + sum(mx.sum(a * 0.0) for a in (g, *system)))
        red = _reduce(st, system, mu)
        if self.linear_solver == "dense":
            h_c, ok = cholesky_solve_blocked(schur_dense(st, system, red), red.rhs)
        else:
            pre = _block_precondition(st, schur_block_jacobi(st, system, red))
            h_c = pcg(lambda x: schur_apply(st, system, red, x), red.rhs, pre, self.pcg_iterations)
            ok = mx.all(mx.isfinite(h_c))
        p = st.rows.point
        back = mx.zeros_like(system.g_p).at[p].add(_coupling_t(st, system, h_c))
        h = mx.concatenate([h_c, _small_mv(red.v_inv, -system.g_p - back).reshape(-1)])
        ok = all_of(ok, red.ok, finite, mx.all(mx.isfinite(h)))
        h = mx.where(ok, h, 0.0)
        return h, ok, predicted_decrease(st, system, g, h)


def resolve_linear_solver(reduced_size: int, linear_solver: str) -> str:
    """``"dense"`` or ``"pcg"`` for ``"auto"`` (by ``DENSE_MAX``), else the name, checked."""
    if linear_solver not in LINEAR_SOLVERS:
        raise ValueError(f"linear_solver: expected one of {LINEAR_SOLVERS}, got {linear_solver!r}")
    if linear_solver == "auto":
        return "dense" if reduced_size <= DENSE_MAX else "pcg"
    return linear_solver


def flat_gradient(system: BlockSystem) -> mx.array:
    """``g = [g_c, g_p.ravel()]`` (n_c + 3 P,), the tangent order of :class:`SchurStep`."""
    return mx.concatenate([system.g_c, system.g_p.reshape(-1)])


def split_step(structure: BlockStructure, h: mx.array) -> tuple[mx.array, mx.array]:
    """Flat h (n,) -> camera-side part (n_c,) and point part (P, 3)."""
    n = structure.reduced_size
    return h[:n], h[n:].reshape(structure.num_points, 3)


def predicted_decrease(structure: BlockStructure, system: BlockSystem, g: mx.array, h: mx.array) -> mx.array:
    """``L(0) - L(h) = -g^T h - ||J h||^2 / 2`` of the undamped Gauss-Newton model, per observation."""
    h_c, h_p = split_step(structure, h)
    # sqrt(w) J_p h_p is not stored; ||J h||^2 = ||B h_c||^2 + 2 h_c^T W h_p + h_p^T V h_p.
    rows = structure.rows
    hc = _chunk_columns(structure, h_c)  # (n_chunks, 1, D)
    bh = _small_mv(rows.chunks(system.B), hc)
    cross = mx.sum(hc * _small_mv(rows.chunks(system.W), rows.chunks(h_p[rows.point])))
    quad = mx.sum(bh * bh) + 2.0 * cross + mx.sum(h_p * _small_mv(system.V, h_p))
    return -mx.sum(g * h) - 0.5 * quad
