"""Structure from motion: bundle adjustment on the block-sparse solver (Schur complement, PCG)."""

from .bundle import INTRINSICS, OPENCV_COEFFS, BundleResult, bundle_adjust
from .model import COLMAP_REFINED, ModelProblem, bundle_adjust_model, model_problem, problem_to_model, update_model
from .synthetic import SyntheticProblem, synthetic_problem

__all__ = [
    "COLMAP_REFINED", "INTRINSICS", "OPENCV_COEFFS", "BundleResult", "ModelProblem", "SyntheticProblem",
    "bundle_adjust", "bundle_adjust_model", "model_problem", "problem_to_model", "synthetic_problem", "update_model",
]
