"""The calibrated parameters: lens models, the intrinsics vector and which entries are held fixed.

Per camera the intrinsics vector is ``theta = [fx, fy, cx, cy, skew, d_1 .. d_k]`` (n = 5 + k)
with ``d`` the distortion coefficients in OpenCV's order (``k1 k2 p1 p2 k3 k4 k5 k6 s1 s2 s3 s4
tx ty``; fisheye ``k1 k2 k3 k4``). The LM steps in a tangent ``h`` with ``theta <- theta + M h``:
``M`` is a constant n x n matrix that zeroes the fixed entries and, for a fixed aspect ratio,
drives fx from fy's step (``fx = ratio * fy``, as ``cv2.CALIB_FIX_ASPECT_RATIO``).

``fix`` names (and the OpenCV flags they mirror):

- ``"focal_length"``: ``CALIB_FIX_FOCAL_LENGTH``; ``"principal_point"``:
  ``CALIB_FIX_PRINCIPAL_POINT`` (held at ``((w - 1) / 2, (h - 1) / 2)``, OpenCV's
  value without an intrinsic guess); ``"aspect_ratio"``: ``CALIB_FIX_ASPECT_RATIO``.
- ``"skew"``: OpenCV's pinhole calibration never estimates skew (always 0), fisheye's
  ``CALIB_FIX_SKEW``; fixed by default.
- ``"k1"`` .. ``"k6"``: ``CALIB_FIX_K1`` .. ``CALIB_FIX_K6`` (fisheye: ``cv2.fisheye.CALIB_FIX_K1..K4``);
  ``"tangential"``: ``CALIB_ZERO_TANGENT_DIST``; ``"thin_prism"``: ``CALIB_FIX_S1_S2_S3_S4``;
  ``"tilt"``: ``CALIB_FIX_TAUX_TAUY``. Fixed coefficients stay 0 (k1, k2 at Zhang's linear
  estimate unless fixed).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

#: model name -> (Camera lens model, number of distortion coefficients)
MODELS: dict[str, tuple[str, int]] = {
    "pinhole": ("opencv", 0), "opencv4": ("opencv", 4), "opencv5": ("opencv", 5), "opencv8": ("opencv", 8),
    "opencv12": ("opencv", 12), "opencv14": ("opencv", 14), "fisheye": ("fisheye", 4),
}
_OPENCV_COEFFS = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6", "s1", "s2", "s3", "s4", "tx", "ty")
_GROUPS = {"focal_length": ("fx", "fy"), "principal_point": ("cx", "cy"), "tangential": ("p1", "p2"),
           "thin_prism": ("s1", "s2", "s3", "s4"), "tilt": ("tx", "ty")}
FIX_NAMES = ("focal_length", "principal_point", "aspect_ratio", "skew", "k1", "k2", "k3", "k4", "k5", "k6",
             "tangential", "thin_prism", "tilt")


class ParameterLayout(NamedTuple):
    """Static description of one calibration problem's intrinsics vector.

    Attributes:
        lens: ``"opencv"`` or ``"fisheye"`` (the :class:`mlxgeom.camera.Camera` model).
        num_dist: k, the number of distortion coefficients.
        names: the n entry names, ``("fx", "fy", "cx", "cy", "skew", *coefficients)``.
        tangent: (n, n) float64 ``M`` of ``theta <- theta + M h``.
        fixed: (n,) bool, entries held fixed.
        fix_principal_point, fix_aspect_ratio: whether those are held (the init sets them).
        aspect_ratio: the fx / fy held with ``"aspect_ratio"``.

    Example:
        >>> parameter_layout("opencv5", ()).size
        10
    """

    lens: str
    num_dist: int
    names: tuple[str, ...]
    tangent: np.ndarray
    fixed: np.ndarray
    fix_principal_point: bool
    fix_aspect_ratio: bool
    aspect_ratio: float

    @property
    def size(self) -> int:
        """n, the length of the intrinsics vector."""
        return len(self.names)


def parameter_layout(model: str, fix: Sequence[str], aspect_ratio: float = 1.0) -> ParameterLayout:
    """The :class:`ParameterLayout` of a model name and ``fix`` names (module docstring).

    Example:
        >>> lay = parameter_layout("opencv5", ("skew", "k3"))
        >>> lay.names[5:], [n for n, f in zip(lay.names, lay.fixed) if f]
        (('k1', 'k2', 'p1', 'p2', 'k3'), ['skew', 'k3'])
    """
    if model not in MODELS:
        raise ValueError(f"model: expected one of {tuple(MODELS)}, got {model!r}")
    if isinstance(fix, str):
        fix = (fix,)
    unknown = [f for f in fix if f not in FIX_NAMES]
    if unknown:
        raise ValueError(f"fix: unknown names {unknown}; expected some of {FIX_NAMES}")
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio: expected > 0, got {aspect_ratio}")
    lens, k = MODELS[model]
    coeffs = ("k1", "k2", "k3", "k4") if lens == "fisheye" else _OPENCV_COEFFS[:k]
    names = ("fx", "fy", "cx", "cy", "skew", *coeffs)
    held = set()
    for f in fix:
        held.update(_GROUPS.get(f, (f,)))
    fixed = np.array([n in held for n in names])
    tangent = np.diag((~fixed).astype(np.float64))
    fix_aspect = "aspect_ratio" in fix and "focal_length" not in fix
    if fix_aspect:  # fx follows fy: its own column is dead, fy's step moves it by the ratio
        tangent[0, 0], tangent[0, 1] = 0.0, aspect_ratio
        fixed[0] = True
    return ParameterLayout(lens, k, names, tangent, fixed, "principal_point" in fix, fix_aspect, float(aspect_ratio))
