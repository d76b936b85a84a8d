"""Structure from motion: bundle adjustment on the block-sparse solver (Schur complement, PCG)."""

from .bundle import INTRINSICS, BundleResult, bundle_adjust
from .synthetic import SyntheticProblem, synthetic_problem

__all__ = ["INTRINSICS", "BundleResult", "SyntheticProblem", "bundle_adjust", "synthetic_problem"]
