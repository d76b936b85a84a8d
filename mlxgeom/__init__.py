"""mlxgeom: batched, differentiable 3D vision geometry for MLX that stays on the GPU."""

from . import linalg

__version__ = "0.1.0"

__all__ = ["linalg", "__version__"]
