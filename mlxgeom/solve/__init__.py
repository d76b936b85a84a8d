"""The solver layer: the one batched Levenberg-Marquardt, normal equations, robust losses, RANSAC.

Depends on ``mlxgeom.linalg`` (and ``mlxgeom.lie``, ``mlxgeom._checks``) only; ``camera``,
``homography``, ``optim`` and the layers above hand their problems to it.
"""

from .lm import DenseStep, LMResult, LMStatus, StepSolver, batched_jacobian, levenberg_marquardt, lm_loop, vector_retract
from .losses import Cauchy, GemanMcClure, Huber, RobustLoss, SoftL1, Tukey, get_loss, squared_loss
from .normal_equations import normal_equations, weighted_cost
from .ransac import RansacModel, RansacResult, adaptive_trials, ransac
from .sparse import BlockStructure, BlockSystem, SchurStep, block_normal_equations

__all__ = [
    "Cauchy", "DenseStep", "GemanMcClure", "Huber", "LMResult", "LMStatus", "RansacModel", "RansacResult",
    "RobustLoss", "SoftL1", "StepSolver", "Tukey", "adaptive_trials", "batched_jacobian", "get_loss",
    "levenberg_marquardt", "lm_loop", "normal_equations", "ransac", "squared_loss", "vector_retract", "weighted_cost",
    "BlockStructure", "BlockSystem", "SchurStep", "block_normal_equations",
]
