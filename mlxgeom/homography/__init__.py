"""Homographies on the device: normalized DLT, batched RANSAC, SL(3) refinement, warping.

Conventions follow OpenCV: ``H`` maps source pixels to destination pixels
(``dst ~ H [x, y, 1]``), pixel centres sit at integer coordinates, and ``H[2, 2] = 1``.
"""

from .decompose import decompose_homography
from .estimate import find_homography
from .minimal import homography_from_4_points
from .refine import refine_homography
from .result import ExactHomography, HomographyResult, RefinedHomography
from .transform import perspective_transform, perspective_transform_ex
from .warp import warp_perspective

__all__ = [
    "ExactHomography", "HomographyResult", "RefinedHomography", "decompose_homography", "find_homography",
    "homography_from_4_points", "perspective_transform", "perspective_transform_ex", "refine_homography",
    "warp_perspective",
]
