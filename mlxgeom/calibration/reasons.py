"""Per-camera outcome codes of a calibration and their meaning in words."""

from __future__ import annotations

import enum

import mlx.core as mx


class CalibrationReason(enum.IntEnum):
    """Codes stored in ``CalibrationResult.reason`` / ``ZhangInit.reason`` (int32, one per camera).

    The first failing stage is reported; ``ok`` is ``reason == OK``.
    """

    OK = 0  #: calibrated
    TOO_FEW_VIEWS = 1  #: fewer than 3 views with a usable homography (>= 4 finite, non-collinear points)
    PARALLEL_VIEWS = 2  #: the views do not fix the image of the absolute conic (boards parallel to each other)
    NO_REAL_INTRINSICS = 3  #: the conic is not positive definite: no real focal lengths fit the views
    NOT_FINITE = 4  #: the refinement produced a non-finite cost


#: ``CalibrationReason`` code -> text, for reports and error messages.
REASON_TEXT: dict[int, str] = {
    CalibrationReason.OK: "ok",
    CalibrationReason.TOO_FEW_VIEWS: "fewer than 3 views with a usable board homography "
                                     "(each needs >= 4 finite, non-collinear points)",
    CalibrationReason.PARALLEL_VIEWS: "the views do not determine the intrinsics: all boards are parallel to "
                                      "each other (e.g. every view fronto-parallel); tilt the board between views",
    CalibrationReason.NO_REAL_INTRINSICS: "the image of the absolute conic is not positive definite: "
                                          "no real focal lengths fit these views (inconsistent points?)",
    CalibrationReason.NOT_FINITE: "the refinement reached a non-finite reprojection error",
}


def reason_text(reason: mx.array | int) -> list[str] | str:
    """Words for reason codes: a string for one code, a flat list for an array (host-side helper).

    Example:
        >>> reason_text(2).split(":")[0]
        'the views do not determine the intrinsics'
    """
    if isinstance(reason, int):
        return REASON_TEXT[reason]
    return [REASON_TEXT[int(c)] for c in reason.reshape(-1).tolist()]
