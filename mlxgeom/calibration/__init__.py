"""Camera calibration from views of a planar board: Zhang's closed form, then one LM; many cameras at once."""

from .arrow_step import ArrowStep, ArrowSystem
from .calibrate import CalibrationResult, calibrate_camera
from .parameters import FIX_NAMES, MODELS, ParameterLayout, parameter_layout
from .reasons import REASON_TEXT, CalibrationReason, reason_text
from .synthetic import board_points, synthetic_views
from .zhang import ZhangInit, extrinsics_from_homographies, intrinsics_from_homographies, zhang_init

__all__ = [
    "FIX_NAMES", "MODELS", "REASON_TEXT", "ArrowStep", "ArrowSystem", "CalibrationReason", "CalibrationResult",
    "ParameterLayout", "ZhangInit", "board_points", "calibrate_camera", "extrinsics_from_homographies",
    "intrinsics_from_homographies", "parameter_layout", "reason_text", "synthetic_views", "zhang_init",
]
