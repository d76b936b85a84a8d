"""The solver layer: block-sparse normal equations of bundle adjustment (``sparse``)."""

from .sparse import BlockStructure, BlockSystem, SchurStep, block_normal_equations

__all__ = ["BlockStructure", "BlockSystem", "SchurStep", "block_normal_equations"]
