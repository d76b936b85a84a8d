"""Small-matrix linear algebra that runs on the GPU and has gradients.

MLX's own ``mx.linalg`` routines run on the CPU stream only and have no VJPs; these are
closed forms and fixed-iteration schemes built from elementwise ops and small matmuls.
"""

from .inverse import det, inv, inv_ex, solve
from .products import matmul

__all__ = ["det", "inv", "inv_ex", "matmul", "solve"]
