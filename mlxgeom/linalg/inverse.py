"""Closed-form determinant, inverse and solve for batches of 2x2, 3x3 and 4x4 matrices.

The inverse is the adjugate over the determinant. The 4x4 adjugate uses the 2x2 minors
of the top and bottom row pairs (Laplace expansion by complementary minors), which
shares work between cofactors and keeps float32 error close to LU's for
well-conditioned matrices. Everything is elementwise arithmetic, so it runs on any MLX
device and fuses under ``mx.compile``.
"""

from __future__ import annotations

import functools

import mlx.core as mx

from .._checks import as_float, as_floats, cast_out, check_square, rhs_as_matrix
from .._compiled import compiled, on_cpu
from .._cuda import fast_path
from .._vmap import all_of, batched_vmap
from . import inverse_cuda
from .products import matmul

_SIZES = (2, 3, 4)
# What mlxgeom offers on the device first; MLX's own routines run on the CPU stream only.
_LARGE_N_HINT = ("for larger systems on the device, use mlxgeom.linalg.solve_spd / solve_spd_ex (symmetric "
                 "positive definite A, e.g. normal equations, any n) or mlxgeom.linalg.eigh (symmetric A: "
                 "A^-1 = V diag(1 / w) V^T); otherwise mx.linalg.inv / solve (..., stream=mx.cpu) run on the CPU only")


def _check(a: mx.array, name: str) -> int:
    try:
        return check_square(a, _SIZES, name)
    except ValueError as err:
        raise ValueError(f"{err}; {_LARGE_N_HINT}") from None


def _entries(a: mx.array, n: int) -> list[list[mx.array]]:
    flat = a.reshape(*a.shape[:-2], n * n)
    return [[flat[..., i * n + j] for j in range(n)] for i in range(n)]


# Bits of the exponent field: masking them off |x| gives the power of two 2^floor(log2 |x|).
_EXPONENT = {mx.float32: (mx.int32, 0x7F800000), mx.float64: (mx.int64, 0x7FF0000000000000)}


def _scaled_entries(a: mx.array) -> tuple[list[list[mx.array]], mx.array]:
    """Entries of B = A / s and s (*), s = 2^floor(log2 max |a_ij|) (the exponent bits of the max).

    Cofactors of an n x n matrix are products of n - 1 entries, so entries near 1e10 (4x4) or
    1e-13 overflow or underflow float32 although the inverse fits. Dividing by a power of two is
    exact, so the results equal the unscaled formulas' bit for bit wherever those stay in range.
    s is 1 where max |a_ij| is 0, subnormal or not finite (NaN and inf still propagate).
    """
    n = a.shape[-1]
    m = _entries(a, n)
    # Elementwise maximum over the entries (not mx.max): it fuses with the cofactors under compile.
    largest = functools.reduce(mx.maximum, [mx.abs(x) for row in m for x in row])
    # The results do not depend on s mathematically, so s carries no derivative (stopped before
    # the bit view, which has none in MLX).
    int_dtype, mask = _EXPONENT[a.dtype]
    s = (mx.stop_gradient(largest).view(int_dtype) & mask).view(a.dtype)
    s = mx.where(all_of(s > 0, mx.isfinite(s)), s, 1.0)
    r = 1.0 / s  # exact (a power of two; a subnormal one for s = 2^127), and cheaper than n^2 divisions
    return [[x * r for x in row] for row in m], s


def _times_power(x: mx.array, s: mx.array, k: int) -> mx.array:
    """x s^k, one factor at a time: overflow gives +-inf rather than inf * 0 = NaN when x is 0."""
    for _ in range(k):
        x = x * s
    return x


def _assemble(rows: list[list[mx.array]]) -> mx.array:
    # Stacking on a new leading axis writes each entry as one contiguous block; the
    # (*, n, n) result is a transposed view of it. Interleaving the entries with
    # stack(axis=-1) costs about two extra passes over memory on the CPU.
    n = len(rows)
    flat = mx.stack([x for row in rows for x in row], axis=0)
    planes = flat.reshape(n, n, *flat.shape[1:])
    return planes.transpose(*range(2, planes.ndim), 0, 1)


def _adjugate_det(m: list[list[mx.array]]) -> tuple[list[list[mx.array]], mx.array]:
    """Adjugate (as rows of entries) and determinant of the matrix with entries m, n in 2, 3, 4."""
    n = len(m)
    if n == 2:
        (p, q), (r, s) = m
        return [[s, -q], [-r, p]], p * s - q * r
    if n == 3:
        (p, q, r), (s, t, u), (v, w, x) = m
        c00, c01, c02 = t * x - u * w, r * w - q * x, q * u - r * t
        c10, c11, c12 = u * v - s * x, p * x - r * v, r * s - p * u
        c20, c21, c22 = s * w - t * v, q * v - p * w, p * t - q * s
        return [[c00, c01, c02], [c10, c11, c12], [c20, c21, c22]], p * c00 + q * c10 + r * c20
    (a00, a01, a02, a03), (a10, a11, a12, a13), (a20, a21, a22, a23), (a30, a31, a32, a33) = m
    s0, s1, s2 = a00 * a11 - a10 * a01, a00 * a12 - a10 * a02, a00 * a13 - a10 * a03
    s3, s4, s5 = a01 * a12 - a11 * a02, a01 * a13 - a11 * a03, a02 * a13 - a12 * a03
    c5, c4, c3 = a22 * a33 - a32 * a23, a21 * a33 - a31 * a23, a21 * a32 - a31 * a22
    c2, c1, c0 = a20 * a33 - a30 * a23, a20 * a32 - a30 * a22, a20 * a31 - a30 * a21
    # Summed in pairs: a shallower graph, which MLX's compile fuses into fewer kernels (as kernels/inverse.cu).
    det = (s0 * c5 - s1 * c4) + (s2 * c3 + s3 * c2) - (s4 * c1 - s5 * c0)
    adj = [
        [a11 * c5 - a12 * c4 + a13 * c3, -a01 * c5 + a02 * c4 - a03 * c3,
         a31 * s5 - a32 * s4 + a33 * s3, -a21 * s5 + a22 * s4 - a23 * s3],
        [-a10 * c5 + a12 * c2 - a13 * c1, a00 * c5 - a02 * c2 + a03 * c1,
         -a30 * s5 + a32 * s2 - a33 * s1, a20 * s5 - a22 * s2 + a23 * s1],
        [a10 * c4 - a11 * c2 + a13 * c0, -a00 * c4 + a01 * c2 - a03 * c0,
         a30 * s4 - a31 * s2 + a33 * s0, -a20 * s4 + a21 * s2 - a23 * s0],
        [-a10 * c3 + a11 * c1 - a12 * c0, a00 * c3 - a01 * c1 + a02 * c0,
         -a30 * s3 + a31 * s1 - a32 * s0, a20 * s3 - a21 * s1 + a22 * s0],
    ]
    return adj, det


def _det_unscaled(m: list[list[mx.array]]) -> mx.array:
    n = len(m)
    if n == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    if n == 3:
        (p, q, r), (s, t, u), (v, w, x) = m
        return p * (t * x - u * w) + q * (u * v - s * x) + r * (s * w - t * v)
    return _adjugate_det(m)[1]


@compiled
def _det_scaled(a: mx.array) -> mx.array:
    b, s = _scaled_entries(a)
    return _times_power(_det_unscaled(b), s, a.shape[-1])


@batched_vmap
@mx.custom_function
def _det(a: mx.array) -> mx.array:
    return _det_scaled(a)


@compiled
def _adjugate_transposed(a: mx.array) -> mx.array:
    """adj(A)^T = d det(A) / dA, scaled like the determinant (adj(A) = adj(A / s) s^(n - 1))."""
    b, s = _scaled_entries(a)
    adj = _adjugate_det(b)[0]
    return _times_power(_assemble(adj), s[..., None, None], a.shape[-1] - 1).swapaxes(-1, -2)


@_det.vjp
def _det_vjp(primal, cotangent, output):
    # d det = tr(adj(A) dA) (Jacobi's formula), defined at singular A too.
    return (cotangent[..., None, None] * _adjugate_transposed(primal),)


@_det.jvp
def _det_jvp(primal, tangent):
    return (mx.sum(_adjugate_transposed(primal) * tangent, axis=(-2, -1)),)


def _inverse_block(a: mx.array) -> mx.array:
    b, s = _scaled_entries(a)
    adj, det = _adjugate_det(b)
    # A^-1 = (A / s)^-1 / s; (c / det) is an entry of (A / s)^-1, in range wherever A^-1 is.
    inv_det, inv_s = 1.0 / det, 1.0 / s
    return _assemble([[c * inv_det * inv_s for c in row] for row in adj])


# On the CPU a batch larger than this (bytes) is inverted in blocks of _BLOCK_ROWS matrices, so
# that the fused kernels' intermediates (one plane per entry) stay in the caches: at 1M 3x3
# float32 matrices (38 MB) one pass over the whole batch costs 1.2-1.4x the blocked one.
_BLOCKED_ABOVE = 32 << 20
_BLOCK_ROWS = 1 << 15


@compiled
def _inverse_adjugate(a: mx.array) -> mx.array:
    n = a.shape[-1]
    flat = a.reshape(-1, n, n)
    rows = flat.shape[0]
    if not on_cpu() or a.nbytes <= _BLOCKED_ABOVE:
        return _inverse_block(a)
    blocks = [_inverse_block(flat[i:i + _BLOCK_ROWS]) for i in range(0, rows, _BLOCK_ROWS)]
    return mx.concatenate(blocks, axis=0).reshape(a.shape)


# The kernel on CUDA (float32 3x3/4x4), else the adjugate.
_inverse_any = fast_path(inverse_cuda.inverse, _inverse_adjugate, inverse_cuda.enabled)


@batched_vmap
@mx.custom_function
def _inverse(a: mx.array) -> mx.array:
    return _inverse_any(a)


@_inverse.vjp
def _inverse_vjp(primal, cotangent, output):
    # d(A^-1) = -A^-1 dA A^-1, so the cotangent pulls back to -A^-T G A^-T.
    inv_t = output.swapaxes(-1, -2)
    return (-matmul(matmul(inv_t, cotangent), inv_t),)


@_inverse.jvp
def _inverse_jvp(primal, tangent):
    # With a single input, MLX passes the arrays themselves rather than tuples.
    ainv = _inverse(primal)
    return (-matmul(matmul(ainv, tangent), ainv),)


@compiled
def _invertible(a: mx.array) -> mx.array:
    """inv_ex's mask: finite entries and |det B| > n eps prod_i ||B[i, :]|| for B = A / s."""
    eps = 2.220446049250313e-16 if a.dtype == mx.float64 else 1.1920929e-07
    b, _ = _scaled_entries(a)
    hadamard = functools.reduce(mx.multiply, [mx.sqrt(sum(x * x for x in row)) for row in b])
    return all_of(mx.all(mx.isfinite(a), axis=(-2, -1)), mx.abs(_det_unscaled(b)) > a.shape[-1] * eps * hadamard)


def det(a) -> mx.array:
    """Determinant of a batch of 2x2, 3x3 or 4x4 matrices, in closed form.

    Args:
        a: (*, n, n) with n in {2, 3, 4}; float32, float64 (CPU), float16/bfloat16
            (computed in float32), or integers (promoted to float32).

    Returns:
        (*) determinants in the input's float dtype; +-inf where the determinant
        overflows (it is computed from A / s, s a power of two near max |a_ij|, and scaled
        back one factor at a time). Gradient by Jacobi's formula ``d det = tr(adj(A) dA)``,
        defined at singular A too.

    Example:
        >>> import mlx.core as mx
        >>> det(mx.array([[2.0, 0.0], [0.0, 3.0]]))
        array(6, dtype=float32)
    """
    a, out = as_float(a, "a")
    _check(a, "a")
    return cast_out(_det(a), out)


def inv(a) -> mx.array:
    """Inverse of a batch of 2x2, 3x3 or 4x4 matrices (adjugate / determinant).

    A singular entry gets IEEE inf/nan in its own output only; use :func:`inv_ex` to get
    a mask of the entries that were invertible. The adjugate is taken of A / s, s a power of
    two near max |a_ij| (exact), so any well-conditioned A whose inverse fits the dtype is
    inverted (e.g. a 4x4 scaled by 1e20). The VJP is ``-A^-T G A^-T``.

    Args:
        a: (*, n, n), n in {2, 3, 4}. Dtypes as in :func:`det`.

    Returns:
        (*, n, n) inverses in the input's float dtype.

    Example:
        >>> import mlx.core as mx
        >>> a = mx.array([[2.0, 1.0], [1.0, 3.0]])
        >>> inv(a).tolist() == [[0.6000000238418579, -0.20000000298023224], [-0.20000000298023224, 0.4000000059604645]]
        True
    """
    a, out = as_float(a, "a")
    _check(a, "a")
    return cast_out(_inverse(a), out)


def inv_ex(a) -> tuple[mx.array, mx.array]:
    """Inverse plus a mask of the entries where it is meaningful.

    ``ok`` is True where every entry of A is finite and
    ``|det A| > n * eps * prod_i ||A[i, :]||`` (eps of the compute dtype). By
    Hadamard's inequality the ratio ``|det A| / prod_i ||A[i, :]||`` lies in [0, 1] and
    is invariant to scaling rows, so the test flags matrices whose rows are linearly
    dependent to working precision (condition numbers beyond about ``1 / (n eps)``). It is
    evaluated on A / s (as :func:`inv`), so it holds at any scale: the mask of ``c A`` is
    that of A for every ``c`` whose inverse fits the dtype.

    Args:
        a: (*, n, n), n in {2, 3, 4}.

    Returns:
        ``(inverse, ok)``: (*, n, n) as :func:`inv`, and a (*) bool mask.

    Example:
        >>> import mlx.core as mx
        >>> x, ok = inv_ex(mx.array([[[1.0, 2.0], [2.0, 4.0]], [[1.0, 0.0], [0.0, 1.0]]]))
        >>> ok
        array([False, True], dtype=bool)
    """
    a, out = as_float(a, "a")
    _check(a, "a")
    ainv = _inverse(a)
    return cast_out(ainv, out), _invertible(a)


def solve(a, b) -> mx.array:
    """Solve ``A x = b`` for batches of 2x2, 3x3 or 4x4 systems.

    ``b`` is a batch of vectors (*, n) when ``b.ndim == a.ndim - 1`` and its last size is
    n, otherwise a batch of right-hand-side matrices (*, n, k) (close to
    ``torch.linalg.solve``; add a trailing axis to force the matrix reading).
    Batch dimensions broadcast with numpy rules. The product with the inverse is
    written elementwise, so it stays float32-exact on CUDA where matmuls default to TF32.

    Args:
        a: (*, n, n), n in {2, 3, 4}.
        b: (*, n) or (*, n, k).

    Returns:
        x with b's trailing shape and the broadcast batch shape.

    Example:
        >>> import mlx.core as mx
        >>> solve(mx.array([[2.0, 0.0], [0.0, 4.0]]), mx.array([1.0, 1.0]))
        array([0.5, 0.25], dtype=float32)
    """
    (a, b), out = as_floats(a, b, names=("a", "b"))
    _check(a, "a")
    rhs, vector, _ = rhs_as_matrix(a, b)
    x = matmul(_inverse(a), rhs)
    return cast_out(x[..., 0] if vector else x, out)
