"""Two-view geometry: essential and fundamental matrices, relative pose, correction, rectification.

Conventions (docs/epipolar.md): the relative pose ``[R | t]`` maps camera-1 coordinates to
camera-2 coordinates (``X2 = R X1 + t``, OpenCV's ``recoverPose`` / ``stereoRectify``), and
``x2^T E x1 = 0`` / ``p2^T F p1 = 0`` for normalised points / pixels.
"""

# epipolar: estimation (distances, 8-, 7-, 5-point, RANSAC).
from .distances import epipolar_lines, sampson_distance, symmetric_epipolar_distance
from .estimate import find_essential_matrix, find_fundamental_matrix
from .result import EssentialResult, FundamentalResult

# twoview: relative pose and two-view tools.
from .correction import CorrectedMatches, correct_matches
from .pose import EssentialDecomposition, RelativePose, decompose_essential_matrix, recover_pose
from .rectify import StereoRectification, stereo_rectify
from .relations import essential_from_pose, fundamental_from_cameras, fundamental_from_essential, relative_pose

__all__ = [
    "EssentialResult", "FundamentalResult", "epipolar_lines", "find_essential_matrix", "find_fundamental_matrix",
    "sampson_distance", "symmetric_epipolar_distance",
    "StereoRectification", "stereo_rectify",
    "CorrectedMatches", "correct_matches",
    "EssentialDecomposition", "RelativePose", "decompose_essential_matrix", "recover_pose",
    "essential_from_pose", "fundamental_from_cameras", "fundamental_from_essential", "relative_pose",
]
