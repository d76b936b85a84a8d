"""SL(3): 3x3 matrices of determinant 1 (homographies up to scale), tangents x (*, 8).

Basis of sl(3) (Benhimane and Malis, "Real-time image-based tracking of planes using
efficient second-order minimization", IROS 2004), ``hat(x) = sum_i x_i A_i``::

    A1 = e13, A2 = e23, A3 = e12, A4 = e21,
    A5 = diag(1, -1, 0), A6 = diag(0, -1, 1), A7 = e31, A8 = e32

so ``hat(x) = [[x5, x3, x1], [x4, -x5 - x6, x2], [x7, x8, x6]]`` (x1, x2: translation,
x3, x4: shear/rotation, x5, x6: scale/aspect, x7, x8: perspective).
``exp`` is ``linalg.matrix_exp``; ``log`` is inverse scaling and squaring (below).
"""

from __future__ import annotations

import mlx.core as mx

from .. import linalg
from .._checks import as_checked, cast_out
from .._compiled import compiled
from . import so3
from .._vmap import all_of, any_of
from .se3 import _blocks

# Inverse scaling and squaring (Higham, "Functions of Matrices", SIAM 2008, sec. 11.5):
# square roots (Denman-Beavers, fixed iteration counts) until |X - I|_F <= _THETA, then
# the Gregory series log X = 2 sum_{m odd} Z^m / m, Z = (X - I)(X + I)^-1, |Z| <~ 0.15.
_THETA = 0.25
_ROOT_ITERS = (12, 10, 8, 7, 6, 6, 6, 5, 5, 5)
_GREGORY_TERMS = 10


def _hat(x: mx.array) -> mx.array:
    x1, x2, x3, x4, x5, x6, x7, x8 = (x[..., i] for i in range(8))
    m = mx.stack([x5, x3, x1, x4, -x5 - x6, x2, x7, x8, x6], axis=-1)
    return m.reshape(*m.shape[:-1], 3, 3)


def _vee(m: mx.array) -> mx.array:
    # The trace part is not in sl(3): drop it, so vee(hat(x) + c I) = x.
    d = (m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]) / 3.0
    return mx.stack([m[..., 0, 2], m[..., 1, 2], m[..., 0, 1], m[..., 1, 0], m[..., 0, 0] - d, m[..., 2, 2] - d,
                     m[..., 2, 0], m[..., 2, 1]], axis=-1)


def _exp(x: mx.array) -> mx.array:
    return linalg.matrix_exp(_hat(x))


def _unit_det(h: mx.array) -> mx.array:
    d = linalg.det(h)
    cbrt = mx.sign(d) * mx.power(mx.abs(d), 1.0 / 3.0)
    return h / cbrt[..., None, None]


def _sqrt(a: mx.array, iters: int) -> mx.array:
    """Denman-Beavers: Y -> A^(1/2), Z -> A^(-1/2), quadratically convergent."""
    y, z = a, mx.broadcast_to(mx.eye(3, dtype=a.dtype), a.shape)
    for _ in range(iters):
        y, z = 0.5 * (y + linalg.inv(z)), 0.5 * (z + linalg.inv(y))
    return y


def _near_eye(a: mx.array) -> mx.array:
    d = mx.stop_gradient(a) - mx.eye(3, dtype=a.dtype)
    return _frob_sq(d) <= _THETA**2


def _gregory(a: mx.array) -> mx.array:
    eye = mx.eye(3, dtype=a.dtype)
    z = linalg.matmul(a - eye, linalg.inv(a + eye))
    z2 = linalg.matmul(z, z)
    acc = eye / (2 * _GREGORY_TERMS - 1)
    for m in range(2 * _GREGORY_TERMS - 3, 0, -2):
        acc = eye / m + linalg.matmul(z2, acc)
    return 2.0 * linalg.matmul(z, acc)


@compiled
def _log_ex(h: mx.array) -> tuple[mx.array, mx.array]:
    x = _unit_det(h)
    roots = mx.zeros(x.shape[:-2], dtype=x.dtype)
    # A root whose square misses X by more than sqrt(eps) did not converge (no real root).
    ok = mx.ones(x.shape[:-2], dtype=mx.bool_)
    tol = float(mx.finfo(x.dtype).eps) ** 0.5
    for iters in _ROOT_ITERS:
        done = _near_eye(x)
        root = _sqrt(x, iters)
        # Masks compare squared norms of stopped values: a sqrt at 0 would put 0 * inf = NaN into gradients.
        r, xs = mx.stop_gradient(root), mx.stop_gradient(x)
        miss = _frob_sq(linalg.matmul(r, r) - xs) > tol**2 * _frob_sq(xs)
        ok = all_of(ok, any_of(done, ~miss))
        x = mx.where(done[..., None, None], x, root)
        roots = roots + mx.where(done, 0.0, 1.0)
    ok = all_of(ok, _near_eye(x))
    log = mx.power(2.0, roots)[..., None, None] * _gregory(x)
    return _vee(log), ok


def _frob_sq(a: mx.array) -> mx.array:
    return mx.sum(a * a, axis=(-2, -1))


def sl3_hat(x) -> mx.array:
    """(*, 8) -> traceless (*, 3, 3) in the Benhimane-Malis basis (module docstring).

    >>> sl3_hat(mx.arange(1.0, 9.0)).tolist()
    [[5.0, 3.0, 1.0], [4.0, -11.0, 2.0], [7.0, 8.0, 6.0]]
    """
    return so3._single(_hat, x, (8,), "x")


def sl3_vee(m) -> mx.array:
    """(*, 3, 3) -> (*, 8), coordinates of the traceless part of m.

    >>> sl3_vee(sl3_hat(mx.arange(1.0, 9.0))).tolist()
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    """
    return so3._single(_vee, m, (3, 3), "m")


def sl3_exp(x) -> mx.array:
    """Matrix exponential of ``sl3_hat(x)``: (*, 8) -> (*, 3, 3) with det 1.

    Through ``linalg.matrix_exp`` (Bader-Blanes-Casas Taylor, exact Frechet-derivative VJP).

    >>> sl3_exp(mx.zeros(8)).tolist()[0]
    [1.0, 0.0, 0.0]
    """
    return so3._single(_exp, x, (8,), "x")


def sl3_log_ex(h) -> tuple[mx.array, mx.array]:
    """Principal logarithm (*, 3, 3) -> (x (*, 8), ok (*) bool) of homographies up to scale.

    H is first scaled to det 1 (``H / cbrt(det H)``; a negative det flips the sign), so any
    nonsingular H up to scale is accepted. Method: inverse scaling and squaring with up to
    10 Denman-Beavers square roots (fixed iteration counts, chosen per entry by masks)
    until ``|X - I|_F <= 0.25``, then 10 terms of the Gregory series, times 2^roots.
    Domain: the normalised H has no eigenvalue on the closed negative real axis and
    ``|log H|`` below ~50; ``ok`` is False where a square root did not converge (``|Y^2 - X| > sqrt(eps) |X|``)
    or the roots did not reach the neighbourhood of I (outside that domain, or singular H);
    x is then meaningless.
    Accuracy: float32 ~1e-5 relative, float64 ~1e-12 (see tests).

    >>> x = mx.array([0.1, -0.2, 0.05, 0.02, 0.3, -0.1, 0.01, 0.02])
    >>> y, ok = sl3_log_ex(sl3_exp(x))
    >>> bool(mx.allclose(y, x, atol=1e-5)), ok.item()
    (True, True)
    """
    h, out = as_checked(h, (3, 3), "H")
    x, ok = _log_ex(h)
    return cast_out(x, out), ok


def sl3_log(h) -> mx.array:
    """Principal logarithm (*, 3, 3) -> (*, 8); :func:`sl3_log_ex` without the ``ok`` mask.

    >>> sl3_log(mx.eye(3)).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    return sl3_log_ex(h)[0]


def sl3_inverse(h) -> mx.array:
    """Inverse of (*, 3, 3) matrices (closed-form adjugate, ``linalg.inv``).

    >>> sl3_inverse(mx.eye(3)).shape
    (3, 3)
    """
    return so3._single(linalg.inv, h, (3, 3), "H")


def sl3_compose(a, b) -> mx.array:
    """Product a b of (*, 3, 3) homographies, batch dims broadcast.

    >>> sl3_compose(mx.eye(3), mx.eye(3)).shape
    (3, 3)
    """
    return so3._pair(linalg.matmul, a, b, ((3, 3), (3, 3)), ("a", "b"))


def sl3_act(h, p) -> mx.array:
    """H p for homogeneous 3-vectors p (*, 3) (linear action; divide by the last entry yourself).

    >>> sl3_act(mx.eye(3), mx.ones((4, 3))).shape
    (4, 3)
    """
    return so3._pair(_act, h, p, ((3, 3), (3,)), ("H", "p"))


@compiled
def _act(h: mx.array, p: mx.array) -> mx.array:
    return mx.sum(h * p[..., None, :], axis=-1)


def _on_basis(f, dtype: mx.Dtype) -> mx.array:
    """(*, 8, 8) matrix of a linear map f of sl(3): column k is vee(f(A_k)) of the basis A_1 ... A_8."""
    return mx.swapaxes(_vee(f(_hat(mx.eye(8, dtype=dtype)))), -1, -2)


def _adjoint(h: mx.array) -> mx.array:
    hi = linalg.inv(h)[..., None, :, :]
    return _on_basis(lambda b: linalg.matmul(linalg.matmul(h[..., None, :, :], b), hi), h.dtype)


def sl3_adjoint(h) -> mx.array:
    """Adjoint (*, 3, 3) -> (*, 8, 8): ``Ad(H) x = vee(H hat(x) H^-1)``.

    >>> sl3_adjoint(mx.eye(3)).shape
    (8, 8)
    """
    return so3._single(_adjoint, h, (3, 3), "H")


def _ad(x: mx.array) -> mx.array:
    """ad_x (*, 8, 8): ``ad_x y = vee([hat x, hat y])``."""
    hx = _hat(x)[..., None, :, :]
    return _on_basis(lambda b: linalg.matmul(hx, b) - linalg.matmul(b, hx), x.dtype)


def _left_jacobian(x: mx.array) -> mx.array:
    # exp([[ad, I], [0, 0]]) = [[exp(ad), sum_k ad^k / (k+1)!], [0, I]] (Van Loan, IEEE TAC 23, 1978).
    a = _ad(x)
    eye = mx.broadcast_to(mx.eye(8, dtype=x.dtype), a.shape)
    zero = mx.zeros_like(a)
    return linalg.matrix_exp(_blocks(a, eye, zero, zero))[..., :8, 8:]


def sl3_left_jacobian(x) -> mx.array:
    """Left Jacobian (*, 8) -> (*, 8, 8) ``sum_k ad_x^k / (k+1)!``: ``exp(x + d) ~= exp(J_l d) exp(x)``.

    Read off the 16x16 block exponential ``exp([[ad_x, I], [0, 0]])`` (``linalg.matrix_exp``).

    >>> sl3_left_jacobian(mx.zeros(8)).shape
    (8, 8)
    """
    return so3._single(_left_jacobian, x, (8,), "x")


def sl3_right_jacobian(x) -> mx.array:
    """Right Jacobian J_r(x) = J_l(-x): ``exp(x + d) ~= exp(x) exp(J_r d)``.

    >>> sl3_right_jacobian(mx.zeros(8)).shape
    (8, 8)
    """
    return so3._single(lambda x: _left_jacobian(-x), x, (8,), "x")
