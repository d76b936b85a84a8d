"""CUDA fast paths equal their pure-mx reference paths on the device (skipped without CUDA)."""

import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import linalg
from mlxgeom.linalg import inverse_cuda
from mlxgeom.linalg.inverse import _inverse_adjugate

pytestmark = pytest.mark.skipif(
    not (mx.cuda.is_available() and mx.default_device() == mx.gpu), reason="needs MLX's CUDA backend"
)


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("batch", [1, 255, 256, 1000, 70001])
def test_inverse_kernel_equals_pure_path(n, batch):
    # Well-conditioned inputs: the two paths differ only by FMA contraction in the kernel.
    a = 0.3 * mx.random.normal((batch, n, n), key=mx.random.key(batch)) + 3 * mx.eye(n)
    assert inverse_cuda.enabled(a)
    fast, ref = inverse_cuda.inverse(a), _inverse_adjugate(a)
    np.testing.assert_allclose(np.array(fast), np.array(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [3, 4])
def test_inverse_kernel_keeps_singular_entries_to_themselves(n):
    a = mx.stack([mx.eye(n) * 2, mx.zeros((n, n)), mx.eye(n) * 4])
    out = np.array(linalg.inv(a))
    np.testing.assert_allclose(out[0], np.eye(n) / 2)
    np.testing.assert_allclose(out[2], np.eye(n) / 4)
    assert not np.isfinite(out[1]).any()


def test_inverse_kernel_handles_batch_dims_strides_and_compile():
    a = mx.random.normal((4, 5, 4, 4), key=mx.random.key(1)) + 2 * mx.eye(4)
    strided = a.swapaxes(-1, -2)
    ref = np.linalg.inv(np.array(strided).astype(np.float64))
    np.testing.assert_allclose(np.array(mx.compile(linalg.inv)(strided)), ref, rtol=1e-4, atol=1e-5)
    grad = mx.grad(lambda x: linalg.inv(x).sum())(a)
    assert np.isfinite(np.array(grad)).all()
