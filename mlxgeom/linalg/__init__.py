"""Small-matrix linear algebra that runs on the GPU and has gradients.

MLX's own ``mx.linalg`` routines run on the CPU stream only and have no VJPs; these are
closed forms and fixed-iteration schemes built from elementwise ops and small matmuls.
"""

from .cholesky import solve_spd, solve_spd_ex
from .eigh import eigh, eigh3
from .eigh_smallest import eigh_smallest
from .inverse import det, inv, inv_ex, solve
from .matrix_exp import matrix_exp
from .products import gauss_newton_system, matmul
from .qr import qr
from .svd3 import project_to_so3, svd3
from .triangular import solve_triangular

__all__ = [
    "det", "eigh", "eigh3", "eigh_smallest", "gauss_newton_system", "inv", "inv_ex", "matmul", "matrix_exp", "project_to_so3", "qr", "solve", "solve_spd", "solve_spd_ex", "solve_triangular", "svd3",
]
