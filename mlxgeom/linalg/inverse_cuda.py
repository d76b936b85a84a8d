"""CUDA fast path for the 3x3 and 4x4 inverse (``mx.fast.cuda_kernel``).

The pure-mx adjugate in ``inverse.py`` is the reference and the path on every other
backend. On CUDA it costs several passes over memory (strided entry reads, one plane per
output entry), 7-30x a same-size copy at large batch. This kernel inverts one matrix per
thread in registers with the same cofactor formulas, in the staged layout of
:mod:`mlxgeom._cuda` (coalesced loads and stores through shared memory), so it runs at about
copy speed. Set ``MLXGEOM_CUDA_KERNELS=0`` to disable it.
"""

from __future__ import annotations

import mlx.core as mx

from .._cuda import launch, on_cuda

_COFACTORS = {
    3: """
  const float c00 = m[4] * m[8] - m[5] * m[7], c01 = m[2] * m[7] - m[1] * m[8], c02 = m[1] * m[5] - m[2] * m[4];
  const float c10 = m[5] * m[6] - m[3] * m[8], c11 = m[0] * m[8] - m[2] * m[6], c12 = m[2] * m[3] - m[0] * m[5];
  const float c20 = m[3] * m[7] - m[4] * m[6], c21 = m[1] * m[6] - m[0] * m[7], c22 = m[0] * m[4] - m[1] * m[3];
  const float d = m[0] * c00 + m[1] * c10 + m[2] * c20, id = 1.0f / d;
  r[0] = c00 * id * isc; r[1] = c01 * id * isc; r[2] = c02 * id * isc;
  r[3] = c10 * id * isc; r[4] = c11 * id * isc; r[5] = c12 * id * isc;
  r[6] = c20 * id * isc; r[7] = c21 * id * isc; r[8] = c22 * id * isc;
""",
    4: """
  const float s0 = m[0] * m[5] - m[4] * m[1], s1 = m[0] * m[6] - m[4] * m[2], s2 = m[0] * m[7] - m[4] * m[3];
  const float s3 = m[1] * m[6] - m[5] * m[2], s4 = m[1] * m[7] - m[5] * m[3], s5 = m[2] * m[7] - m[6] * m[3];
  const float c5 = m[10] * m[15] - m[14] * m[11], c4 = m[9] * m[15] - m[13] * m[11], c3 = m[9] * m[14] - m[13] * m[10];
  const float c2 = m[8] * m[15] - m[12] * m[11], c1 = m[8] * m[14] - m[12] * m[10], c0 = m[8] * m[13] - m[12] * m[9];
  const float d = s0 * c5 - s1 * c4 + s2 * c3 + s3 * c2 - s4 * c1 + s5 * c0, id = 1.0f / d;
  r[0] = (m[5] * c5 - m[6] * c4 + m[7] * c3) * id * isc;
  r[1] = (-m[1] * c5 + m[2] * c4 - m[3] * c3) * id * isc;
  r[2] = (m[13] * s5 - m[14] * s4 + m[15] * s3) * id * isc;
  r[3] = (-m[9] * s5 + m[10] * s4 - m[11] * s3) * id * isc;
  r[4] = (-m[4] * c5 + m[6] * c2 - m[7] * c1) * id * isc;
  r[5] = (m[0] * c5 - m[2] * c2 + m[3] * c1) * id * isc;
  r[6] = (-m[12] * s5 + m[14] * s2 - m[15] * s1) * id * isc;
  r[7] = (m[8] * s5 - m[10] * s2 + m[11] * s1) * id * isc;
  r[8] = (m[4] * c4 - m[5] * c2 + m[7] * c0) * id * isc;
  r[9] = (-m[0] * c4 + m[1] * c2 - m[3] * c0) * id * isc;
  r[10] = (m[12] * s4 - m[13] * s2 + m[15] * s0) * id * isc;
  r[11] = (-m[8] * s4 + m[9] * s2 - m[11] * s0) * id * isc;
  r[12] = (-m[4] * c3 + m[5] * c1 - m[6] * c0) * id * isc;
  r[13] = (m[0] * c3 - m[1] * c1 + m[2] * c0) * id * isc;
  r[14] = (-m[12] * s3 + m[13] * s1 - m[14] * s0) * id * isc;
  r[15] = (m[8] * s3 - m[9] * s1 + m[10] * s0) * id * isc;
""",
}


# The cofactors of B = A / sc, sc = 2^floor(log2 max |a_ij|) (1 if the max is 0, subnormal or not
# finite) as in inverse._scaled_entries; A^-1 = B^-1 / sc.
_SCALE = """
  float amax = 0.0f;
  bool finite = true;
  for (int k = 0; k < NN; ++k) { amax = fmaxf(amax, fabsf(a_r[k])); finite = finite && isfinite(a_r[k]); }
  int e;
  frexpf(amax, &e);
  const float isc = finite && amax >= 1.17549435e-38f ? ldexpf(1.0f, 1 - e) : 1.0f;  // 1 / sc, exact
  float m[NN];
  for (int k = 0; k < NN; ++k) m[k] = a_r[k] * isc;
"""


def enabled(a: mx.array) -> bool:
    """Whether ``a``'s inverse should take the kernel: float32 3x3/4x4 on MLX's CUDA backend."""
    return a.dtype == mx.float32 and a.shape[-1] in _COFACTORS and a.size > 0 and on_cuda()


def inverse(a: mx.array) -> mx.array:
    """Inverse of float32 (*, n, n), n in {3, 4}, by the kernel; same formulas as ``inverse.py``."""
    n = a.shape[-1]
    body = _SCALE.replace("NN", str(n * n)) + "  float* r = out_r;\n" + _COFACTORS[n]
    return launch(f"inverse{n}", body, [a], ["a"], [2], (n, n))
