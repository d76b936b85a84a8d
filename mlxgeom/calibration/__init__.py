"""Camera calibration from views of a planar board: Zhang's closed form, then one LM; many cameras at once."""

from .reasons import REASON_TEXT, CalibrationReason, reason_text
from .zhang import ZhangInit, extrinsics_from_homographies, intrinsics_from_homographies, zhang_init

__all__ = [
    "REASON_TEXT", "CalibrationReason", "ZhangInit", "extrinsics_from_homographies", "intrinsics_from_homographies",
    "reason_text", "zhang_init",
]
