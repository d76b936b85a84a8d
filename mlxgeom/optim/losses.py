"""The robust losses live in :mod:`mlxgeom.solve.losses`; this name is kept for existing imports."""

from ..solve.losses import Cauchy, GemanMcClure, Huber, RobustLoss, SoftL1, Tukey, get_loss, squared_loss

__all__ = ["Cauchy", "GemanMcClure", "Huber", "RobustLoss", "SoftL1", "Tukey", "get_loss", "squared_loss"]
