"""CUDA fast path for the 3x3 and 4x4 matrix exponential (``mx.fast.cuda_kernel``).

``matrix_exp.py`` (pure mx) is the reference and the path on every other backend. On CUDA
its batch of masked products makes tens of passes over (*, n, n) planes, ~40x a same-size
copy at large batch. This kernel runs the same algorithm per matrix in registers with the
staged layout of :mod:`mlxgeom._cuda`: the trace shift (mean eigenvalue <= -1), the 1-norm
that picks the Bader-Blanes-Casas degree and the number of squarings, the 5-product
evaluation with the same coefficient table (read from global memory), the squarings, and
the division by e^-mu computed the same way as a 1x1 exponential. The Frechet-derivative
VJP/JVP of ``matrix_exp`` are unchanged (they are pure-mx block exponentials).
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from .._cuda import launch, on_cuda

_SIZES = (3, 4)


def _mat(name: str, n: int, expr: str) -> str:
    """C loop filling ``float name[n*n]`` from ``expr`` in terms of r, c."""
    return f"float {name}[{n * n}];\n  for (int r = 0; r < {n}; ++r) for (int c = 0; c < {n}; ++c) {name}[r * {n} + c] = {expr};"


def _product(out: str, a: str, b: str, n: int) -> str:
    return f"""float {out}[{n * n}];
  for (int r = 0; r < {n}; ++r) for (int c = 0; c < {n}; ++c) {{
    float acc = {a}[r * {n}] * {b}[c];
    for (int k = 1; k < {n}; ++k) acc += {a}[r * {n} + k] * {b}[k * {n} + c];
    {out}[r * {n} + c] = acc;
  }}"""


def _body(n: int, thetas: tuple[float, ...], max_squarings: int, shift_limit: float, grow_budget: int) -> str:
    th = [f"{t!r}f" for t in thetas]
    degree = " + ".join(f"(norm > {t})" for t in th[:-1])
    combo = ("cf[{row} * 5] * (r == c ? 1.0f : 0.0f) + cf[{row} * 5 + 1] * x[r * N + c] + cf[{row} * 5 + 2] * p2[r * N + c]"
             " + cf[{row} * 5 + 3] * p3[r * N + c] + cf[{row} * 5 + 4] * p6[r * N + c]")
    scalar = "g[{row} * 5] + g[{row} * 5 + 1] * y + g[{row} * 5 + 2] * y2 + g[{row} * 5 + 3] * y3 + g[{row} * 5 + 4] * y6"
    return f"""
  float m0[{n * n}];
  for (int k = 0; k < {n * n}; ++k) m0[k] = a_r[k];
  float tr = 0.0f;
  for (int i = 0; i < {n}; ++i) tr += m0[i * {n + 1}];
  const float mean = tr / {n}.0f;
  const float mu0 = fminf(fmaxf(mean, -{shift_limit!r}f), 0.0f);
  float norm = 0.0f, snorm = 0.0f;
  for (int c = 0; c < {n}; ++c) {{
    float s = 0.0f, ss = 0.0f;
    for (int r = 0; r < {n}; ++r) {{ s += fabsf(m0[r * {n} + c]); ss += fabsf(m0[r * {n} + c] - (r == c ? mu0 : 0.0f)); }}
    norm = fmaxf(norm, s); snorm = fmaxf(snorm, ss);
  }}
  const bool useful = (mean <= -1.0f) && (snorm <= norm);
  const float mu = useful ? mu0 : 0.0f;
  if (useful) {{ for (int i = 0; i < {n}; ++i) m0[i * {n + 1}] -= mu; norm = snorm; }}
  const int deg = {degree};
  const bool need = norm > {th[-1]};
  const float s_real = need ? ceilf(log2f(norm / {th[-1]})) : 0.0f;
  const bool covered = s_real <= {max_squarings}.0f;
  const int s = (int)fminf(fmaxf(s_real, 0.0f), {max_squarings}.0f);
  const float scale = ldexpf(1.0f, -s);
  const float* cf = coef_r + deg * 25;
  {_mat("x", n, "m0[r * N + c] * scale")}
  {_product("p2", "x", "x", n)}
  {_product("p3", "p2", "x", n)}
  {_product("p6", "p3", "p3", n)}
  {_mat("b0", n, combo.format(row=0))}
  {_mat("b4", n, combo.format(row=4))}
  {_product("z", "b0", "b4", n)}
  {_mat("b3", n, combo.format(row=3))}
  for (int k = 0; k < {n * n}; ++k) z[k] += b3[k];
  {_mat("b2z", n, combo.format(row=2) + " + z[r * N + c]")}
  {_product("e", "b2z", "z", n)}
  {_mat("b1", n, combo.format(row=1))}
  for (int k = 0; k < {n * n}; ++k) e[k] += b1[k];
  for (int q = 0; q < s; ++q) {{
    {_product("sq", "e", "e", n)}
    for (int k = 0; k < {n * n}; ++k) e[k] = sq[k];
  }}
  // e^-mu as the 1x1 exponential of -mu, as the pure path computes it
  const float m = -mu;
  const int gdeg = {degree.replace("norm", "m")};
  const bool gneed = m > {th[-1]};
  const int gs = (int)fminf(fmaxf(gneed ? ceilf(log2f(m / {th[-1]})) : 0.0f, 0.0f), {grow_budget}.0f);
  const float y = m * ldexpf(1.0f, -gs), y2 = y * y, y3 = y2 * y, y6 = y3 * y3;
  const float* g = coef_r + gdeg * 25;
  const float gz = ({scalar.format(row=0)}) * ({scalar.format(row=4)}) + ({scalar.format(row=3)});
  float grow = ({scalar.format(row=1)}) + (({scalar.format(row=2)}) + gz) * gz;
  for (int q = 0; q < gs; ++q) grow = grow * grow;
  for (int k = 0; k < {n * n}; ++k) out_r[k] = covered ? e[k] / grow : __int_as_float(0x7fc00000);  // NaN
""".replace("N + c]", f"{n} + c]")


def enabled(a: mx.array) -> bool:
    """Whether ``matrix_exp`` of ``a`` takes the kernel: float32 3x3/4x4 on MLX's CUDA backend."""
    return a.dtype == mx.float32 and a.shape[-1] in _SIZES and a.size > 0 and on_cuda()


def expm(a: mx.array, coefficients: np.ndarray, thetas: tuple[float, ...], max_squarings: int,
         shift_limit: float) -> mx.array:
    """exp(a) of float32 (*, n, n), n in {3, 4}, by the kernel (the algorithm of ``matrix_exp.py``)."""
    n = a.shape[-1]
    grow_budget = math.ceil(math.log2(shift_limit / thetas[-1]))
    body = _body(n, thetas, max_squarings, shift_limit, grow_budget)
    coef = mx.array(coefficients.reshape(1, -1), dtype=mx.float32)
    return launch(f"matrix_exp{n}_s{max_squarings}", body, [coef, a], ["coef", "a"], [1, 2], (n, n))
