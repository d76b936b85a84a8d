"""Batched pose problems on the solver layer: PnP, triangulation.

Levenberg-Marquardt and the robust losses live in :mod:`mlxgeom.solve`; their names are
re-exported here as before.
"""

from ..solve import LMResult, LMStatus, batched_jacobian, levenberg_marquardt, vector_retract
from ..solve.losses import Cauchy, GemanMcClure, Huber, RobustLoss, SoftL1, Tukey, get_loss, squared_loss
from .pnp import PnPResult, refine_pnp, reprojection_residuals, solve_pnp
from .pnp_ransac import solve_pnp_ransac
from .triangulation import TriangulationResult, triangulate_points

__all__ = [
    "Cauchy", "GemanMcClure", "Huber", "LMResult", "LMStatus", "PnPResult", "RobustLoss", "SoftL1",
    "TriangulationResult", "Tukey", "batched_jacobian", "get_loss", "levenberg_marquardt", "refine_pnp",
    "reprojection_residuals", "solve_pnp", "solve_pnp_ransac", "squared_loss", "triangulate_points",
    "vector_retract",
]
