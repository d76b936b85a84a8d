"""Two-view geometry: fundamental and essential matrices, epipolar distances, relative pose.

Convention: ``x2^T F x1 = 0`` for pixels ``x1`` of image 1 and ``x2`` of image 2, and
``y2^T E y1 = 0`` for their normalised (undistorted, ``K^-1``) coordinates.
"""

# Estimation (helper "epipolar")
from .distances import epipolar_lines, sampson_distance, symmetric_epipolar_distance
from .estimate import find_essential_matrix, find_fundamental_matrix
from .result import EssentialResult, FundamentalResult

__all__ = [
    "EssentialResult",
    "FundamentalResult",
    "find_essential_matrix",
    "find_fundamental_matrix",
    "epipolar_lines",
    "sampson_distance",
    "symmetric_epipolar_distance",
]
