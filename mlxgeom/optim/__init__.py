"""Batched pose optimisation: Levenberg-Marquardt on manifolds, robust losses, PnP, triangulation."""

from .levenberg_marquardt import LMResult, LMStatus, batched_jacobian, levenberg_marquardt, vector_retract
from .losses import Cauchy, GemanMcClure, Huber, RobustLoss, SoftL1, Tukey, get_loss, squared_loss

__all__ = [
    "Cauchy", "GemanMcClure", "Huber", "LMResult", "LMStatus", "RobustLoss", "SoftL1", "Tukey",
    "batched_jacobian", "get_loss", "levenberg_marquardt", "squared_loss", "vector_retract",
]
