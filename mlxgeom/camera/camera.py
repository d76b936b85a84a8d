"""``Camera``: a batch of pinhole cameras (K, world-to-camera pose, distortion, image size).

The class is an immutable tuple of arrays (a ``NamedTuple`` subclass), so cameras cross
``mx.grad``, ``mx.vmap`` and ``mx.compile`` as they are (MLX walks lists, tuples and dicts
only, ``python/src/trees.cpp``), and gradients come back as ``Camera`` of gradients. The lens
model is the class: :class:`Camera` is OpenCV's radial-tangential model, :class:`FisheyeCamera`
OpenCV's fisheye (``Camera(..., model="fisheye")`` returns one).

Fields (any leading batch dims describe many cameras and broadcast against points):

- ``K`` (*, 3, 3) upper-triangular intrinsics; the skew K[0, 1] is applied.
- ``pose`` (*, 4, 4) world-to-camera (OpenCV / COLMAP: ``x_cam = R x_world + t``).
- ``dist`` (*, k) distortion coefficients (k = 0 for none).
- ``size`` (*, 2) image ``[width, height]`` in pixels, (0, 0) when unknown.

Values are not checked (that would need a host sync): a camera with fx <= 0, fy <= 0 or a
non-finite intrinsic has ``intrinsics_ok == False`` and shows up as ``valid == False`` in every
projection and unprojection through it. Results that come without their mask are NaN where
they are undefined (``K_inv``, ``unproject`` and ``rays`` without ``return_valid``), so a bad
camera never passes for a good one; with the mask they are finite placeholders (safe to
differentiate through) flagged ``valid == False``.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import mlx.core as mx
import numpy as np

from .. import lie
from .._checks import as_floats, broadcast_batch, cast_out, check_batch, check_trailing
from . import projection as P
from .._vmap import all_of
from .intrinsics import crop_intrinsics, focal_ok, intrinsics_inverse, intrinsics_matrix, scale_intrinsics


class _CameraArrays(NamedTuple):
    K: mx.array
    pose: mx.array
    dist: mx.array
    size: mx.array


def _stacked(x: Any) -> Any:
    """A tuple or list of arrays (OpenCV's per-view rvecs / tvecs) stacked on a new leading axis."""
    if isinstance(x, (tuple, list)) and x and all(isinstance(v, (np.ndarray, mx.array)) for v in x):
        return mx.stack([mx.array(v) for v in x])
    return x


def _flat3(x: mx.array, name: str) -> mx.array:
    """Accept OpenCV's (3, 1) column vectors as (3,)."""
    if x.ndim >= 2 and x.shape[-2:] == (3, 1):
        x = x[..., 0]
    check_trailing(x, (3,), name)
    return x


def _entry(field: str, *index: int, doc: str) -> property:
    """A read-only property for one entry of a field (``fx`` is ``K[..., 0, 0]``)."""
    return property(lambda self: getattr(self, field)[(..., *index)], doc=doc)


def _tree_structure(*fields: Any) -> bool:
    """Whether MLX is building a tree's structure: ``mx.compile``, ``mx.vmap`` and custom functions
    rebuild a NamedTuple as ``type(x)(*fields)`` with a bare ``object()`` for every array
    (``tree_flatten_with_structure``, ``python/src/trees.cpp``); the structure holds no arrays to check.
    """
    return all(type(f) is object for f in fields)


def _nan_where_invalid(x: mx.array, valid: mx.array) -> mx.array:
    """(*, N, 3) with the entries of invalid elements replaced by NaN (no mask goes out with them)."""
    return mx.where(valid[..., None], x, mx.array(mx.nan, dtype=x.dtype))


class Camera(_CameraArrays):
    """Batch of cameras with OpenCV's radial-tangential distortion (4/5/8/12/14 coefficients).

    ``Camera(K, pose=None, dist=None, size=None, model="opencv")``: pose (*, 4, 4), (*, 3, 4)
    or a ``lie.SE3`` (None: identity), dist None for no distortion, size None unknown. Bad
    shapes raise ``ValueError``. ``cam.select(index)`` indexes the batch of cameras.

    Example:
        >>> cam = Camera.from_intrinsics(100.0, 100.0, 50.0, 40.0, size=mx.array([640.0, 480.0]))
        >>> px, depth, valid = cam.project(mx.array([[0.1, 0.2, 2.0]]))
        >>> px.tolist()
        [[55.0, 50.0]]
        >>> [v.item() for v in (cam.fx, cam.fy, cam.cx, cam.cy, cam.skew, cam.width, cam.height)]
        [100.0, 100.0, 50.0, 40.0, 0.0, 640.0, 480.0]
        >>> cam.batch_shape, cam.intrinsics_ok.item(), cam.project_jacobian(mx.array([[0.1, 0.2, 2.0]])).d_pose.shape
        ((), True, (1, 2, 6))
        >>> T = mx.eye(4); T[2, 3] = 1.0
        >>> moved = cam.with_pose(T)
        >>> moved.R.shape, moved.t.tolist(), moved.center[2].item(), moved.camera_to_world[2, 3].item()
        ((3, 3), [0.0, 0.0, 1.0], -1.0, -1.0)
        >>> cam.undistort_points(mx.array([[150.0, 140.0]]))[0].tolist()
        [[1.0, 1.0]]
        >>> cam.distort_points(mx.array([[0.5, 1.0]]))[0].tolist()
        [[100.0, 140.0]]
    """

    __slots__ = ()
    model: ClassVar[str] = "opencv"

    def __new__(cls, K: Any, pose: Any = None, dist: Any = None, size: Any = None, model: str | None = None):
        if _tree_structure(K, pose, dist, size):
            return super().__new__(cls, K, pose, dist, size)
        if model is not None:
            P._check_model(model, None)
            cls = FisheyeCamera if model == "fisheye" else Camera
        if pose is not None and hasattr(pose, "matrix"):
            pose = pose.matrix  # a lie.SE3
        # The dtype comes from the arrays given; the defaults follow it.
        (K, pose, dist, size), out = P._inputs(K=K, pose=pose, dist=dist, size=size)
        pose = mx.eye(4, dtype=K.dtype) if pose is None else pose
        if pose.ndim >= 2 and pose.shape[-2:] == (3, 4):  # [R | t]
            pose = lie.se3_from_rt(pose[..., :3], pose[..., 3])
        dist = mx.zeros((0,), dtype=K.dtype) if dist is None else dist
        size = mx.zeros((2,), dtype=K.dtype) if size is None else size
        P._check_camera(K, pose, dist if dist.shape[-1] else None, cls.model)
        check_trailing(size, (2,), "size")
        # Stored in the callers' dtype (float16 stays float16): every method goes through the
        # functional core, which computes in float32 and casts back (dtype policy, _checks.py).
        camera = super().__new__(cls, *(cast_out(x, out) for x in (K, pose, dist, size)))
        camera.batch_shape  # noqa: B018 (raises when K, pose, dist and size batches do not broadcast)
        return camera

    # ----- construction -------------------------------------------------------------
    @classmethod
    def from_intrinsics(cls, fx: Any, fy: Any, cx: Any, cy: Any, skew: Any = 0.0, pose: Any = None,
                        dist: Any = None, size: Any = None) -> "Camera":
        """Camera from focal lengths, principal point and skew (each scalar or (*)).

        Example:
            >>> Camera.from_intrinsics(500.0, 500.0, 320.0, 240.0).K.shape
            (3, 3)
        """
        return cls(intrinsics_matrix(fx, fy, cx, cy, skew), pose, dist, size)

    @classmethod
    def from_opencv(cls, K: Any, dist: Any = None, rvec: Any = None, tvec: Any = None, size: Any = None) -> "Camera":
        """From OpenCV's (cameraMatrix, distCoeffs, rvec, tvec, (width, height)).

        rvec is a Rodrigues vector (*, 3) or (*, 3, 1) (``cv2.Rodrigues``), tvec likewise, or a
        tuple or list of them (the ``rvecs``, ``tvecs`` of ``cv2.calibrateCamera``), stacked on a
        leading axis; the pose is world-to-camera as in ``cv2.projectPoints``. distCoeffs (1, k)
        is read as (k,).

        Example:
            >>> cam = Camera.from_opencv(mx.eye(3), None, mx.zeros(3), mx.array([0.0, 0.0, 1.0]))
            >>> cam.t.tolist()
            [0.0, 0.0, 1.0]
        """
        pose = None
        if rvec is not None or tvec is not None:
            (rvec, tvec), _ = as_floats(*(mx.zeros(3) if v is None else _stacked(v) for v in (rvec, tvec)),
                                        names=("rvec", "tvec"))
            rvec, tvec = _flat3(rvec, "rvec"), _flat3(tvec, "tvec")
            pose = lie.se3_from_rt(lie.so3_exp(rvec), tvec)
        if dist is not None:
            (dist,), _ = as_floats(dist, names=("dist",))
            if dist.ndim == 2 and 1 in dist.shape:
                dist = dist.reshape(-1)
        return cls(K, pose, dist, size)

    def to_opencv(self) -> tuple[mx.array, mx.array, mx.array, mx.array, mx.array]:
        """(K, dist, rvec, tvec, size) as OpenCV takes them (rvec via ``lie.so3_log``).

        Example:
            >>> K, dist, rvec, tvec, size = Camera(mx.eye(3)).to_opencv()
            >>> rvec.tolist(), dist.shape
            ([0.0, 0.0, 0.0], (0,))
        """
        return self.K, self.dist, lie.so3_log(self.R), self.t, self.size

    def with_pose(self, pose: Any) -> "Camera":
        """Same intrinsics and lens, new world-to-camera pose (*, 4, 4) (or (*, 3, 4), a ``lie.SE3``)."""
        return type(self)(self.K, pose, self.dist, self.size)

    # ----- properties -------------------------------------------------------------
    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Broadcast batch shape (*) of the fields."""
        return broadcast_batch(self.K.shape[:-2], self.pose.shape[:-2], self.dist.shape[:-1], self.size.shape[:-1],
                               names=("K", "pose", "dist", "size"))

    @property
    def intrinsics_ok(self) -> mx.array:
        """(*) bool: fx > 0, fy > 0 and fx, fy, cx, cy, skew finite (the cameras that can project)."""
        return focal_ok(self.K)

    @property
    def K_inv(self) -> mx.array:
        """(*, 3, 3) inverse of K by :func:`mlxgeom.camera.intrinsics_inverse` (skew included); all NaN where
        ``intrinsics_ok`` is False (a zero focal length has no inverse).

        Example:
            >>> cam = Camera.from_intrinsics(mx.array([0.0, 2.0]), 2.0, 0.0, 0.0)
            >>> cam.intrinsics_ok.tolist(), cam.K_inv[1, 0, 0].item(), mx.isnan(cam.K_inv[0]).all().item()
            ([False, True], 0.5, True)
        """
        ok = self.intrinsics_ok[..., None, None]
        # Invert a finite stand-in where K is bad, so no inf reaches a gradient through ``where``.
        safe = mx.where(ok, self.K, mx.eye(3, dtype=self.K.dtype))
        return mx.where(ok, intrinsics_inverse(safe), mx.array(mx.nan, dtype=self.K.dtype))

    fx = _entry("K", 0, 0, doc="(*) focal length in x, pixels (K[..., 0, 0]).")
    fy = _entry("K", 1, 1, doc="(*) focal length in y, pixels (K[..., 1, 1]).")
    cx = _entry("K", 0, 2, doc="(*) principal point x (K[..., 0, 2]).")
    cy = _entry("K", 1, 2, doc="(*) principal point y (K[..., 1, 2]).")
    skew = _entry("K", 0, 1, doc="(*) skew (K[..., 0, 1]).")
    width = _entry("size", 0, doc="(*) image width in pixels, 0 when unknown.")
    height = _entry("size", 1, doc="(*) image height in pixels, 0 when unknown.")

    @property
    def R(self) -> mx.array:
        """(*, 3, 3) world-to-camera rotation."""
        return self.pose[..., :3, :3]

    @property
    def t(self) -> mx.array:
        """(*, 3) world-to-camera translation."""
        return self.pose[..., :3, 3]

    @property
    def center(self) -> mx.array:
        """(*, 3) camera centre in the world, ``-R^T t``."""
        return self.camera_to_world[..., :3, 3]

    @property
    def camera_to_world(self) -> mx.array:
        """(*, 4, 4) inverse of the pose (OpenCV axes: x right, y down, z forward)."""
        return lie.se3_inverse(self.pose)

    @property
    def _dist_or_none(self) -> mx.array | None:
        return self.dist if self.dist.shape[-1] else None

    # ----- geometry -------------------------------------------------------------
    def project(self, points_world: Any, min_depth: float = P.MIN_DEPTH) -> P.Projection:
        """Project world points (*, N, 3): ``(pixels (*, N, 2), depth (*, N), valid (*, N))``.

        See :func:`mlxgeom.camera.project_points` for broadcasting and the valid mask.
        """
        return P.project_points(points_world, self.K, self.pose, self._dist_or_none, self.model, min_depth)

    def project_jacobian(self, points_world: Any, min_depth: float = P.MIN_DEPTH) -> P.ProjectionJacobian:
        """Projection of world points (*, N, 3) plus analytic Jacobians, ``d_pose`` (*, N, 2, 6) for the
        RIGHT se(3) pose perturbation ``T exp(xi)`` (see :class:`mlxgeom.camera.ProjectionJacobian`)."""
        return P.project_points_jacobian(points_world, self.K, self.pose, self._dist_or_none, self.model, min_depth)

    def unproject(self, pixels: Any, depth: Any, return_valid: bool = False, iterations: int = 10):
        """World points (*, N, 3) of pixels (*, N, 2) at camera-frame depth z (*, N).

        Without ``return_valid`` the points are NaN where ``valid`` would be False (camera with
        ``intrinsics_ok == False``, undistortion not converged). With ``return_valid``:
        :class:`mlxgeom.camera.Unprojection` (points, points_cam, valid), finite placeholders
        where not valid.

        Example:
            >>> cam = Camera.from_intrinsics(mx.array([0.0, 10.0]), 10.0, 0.0, 0.0)
            >>> cam.unproject(mx.array([[10.0, 0.0]]), mx.array([2.0]))[:, 0, 0].tolist()
            [nan, 2.0]
        """
        un = P.unproject_points(pixels, depth, self.K, self.pose, self._dist_or_none, self.model, True, iterations)
        return un if return_valid else _nan_where_invalid(un.points, un.valid)

    def rays(self, pixels: Any, return_valid: bool = False, iterations: int = 10):
        """World rays through pixels (*, N, 2): ``(origins (*, N, 3), unit directions (*, N, 3))``.

        Without ``return_valid`` the directions are NaN where ``valid`` would be False (see
        :meth:`unproject`); with it, :class:`mlxgeom.camera.Rays` (origins, directions, valid).

        Example:
            >>> cam = Camera.from_intrinsics(mx.array([0.0, 10.0]), 10.0, 0.0, 0.0)
            >>> o, d = cam.rays(mx.array([[0.0, 0.0]]))
            >>> d[:, 0, 2].tolist()
            [nan, 1.0]
            >>> cam.rays(mx.array([[0.0, 0.0]]), return_valid=True).valid.tolist()
            [[False], [True]]
        """
        r = P.pixel_rays(pixels, self.K, self.pose, self._dist_or_none, self.model, True, iterations)
        return r if return_valid else (r.origins, _nan_where_invalid(r.directions, r.valid))

    def undistort_points(self, pixels: Any, K_new: Any = None, iterations: int = 10):
        """``(points (*, N, 2), converged (*, N))`` of pixels (*, N, 2): see
        :func:`mlxgeom.camera.undistort_points`."""
        return P.undistort_points(pixels, self.K, self._dist_or_none, self.model, K_new, iterations)

    def distort_points(self, points: Any, K_new: Any = None):
        """``(pixels (*, N, 2), valid (*, N))`` of points (*, N, 2): see :func:`mlxgeom.camera.distort_points`."""
        return P.distort_points(points, self.K, self._dist_or_none, self.model, K_new)

    def reproject_depth(self, depth: Any, cam_dst: "Camera", min_depth: float = P.MIN_DEPTH,
                        iterations: int = 10) -> P.Projection:
        """Where every pixel of a depth map of this camera lands in other cameras.

        The source pixels are unprojected once (undistorted with this camera's lens) and
        projected through all destination cameras in one batched call.

        Args:
            depth: (*, H, W) camera-frame z of this (source) camera; <= min_depth marks holes.
            cam_dst: destination cameras, batch dims broadcast against the source batch
                (``self`` and depth's leading dims); e.g. one source against 64 destinations
                gives (64, H, W, 2).

        Returns:
            :class:`mlxgeom.camera.Projection` with pixels (*, H, W, 2), depth (*, H, W) in the
            destination cameras and valid (*, H, W) (source depth > min_depth, undistortion
            converged, in front of the destination camera).

        Example:
            >>> cam = Camera.from_intrinsics(10.0, 10.0, 1.5, 1.0)
            >>> cam.reproject_depth(mx.ones((2, 3)), cam).pixels[1, 2].tolist()
            [2.0, 1.0]
        """
        (depth,), _ = as_floats(depth, names=("depth",))
        if depth.ndim < 2:
            raise ValueError(f"depth: expected shape (*, H, W), got {tuple(depth.shape)}")
        h, w = depth.shape[-2:]
        grid = P.pixel_grid(h, w, depth.dtype).reshape(h * w, 2)
        z = depth.reshape(*depth.shape[:-2], h * w)
        src = self.unproject(grid, z, return_valid=True, iterations=iterations)
        proj = cam_dst.project(src.points, min_depth)
        ok = all_of(proj.valid, src.valid, z > min_depth)
        shape = (*ok.shape[:-1], h, w)
        return P.Projection(proj.pixels.reshape(*shape, 2), proj.depth.reshape(shape), ok.reshape(shape))

    # ----- image-space edits -------------------------------------------------------------
    def scale(self, sx: Any, sy: Any | None = None) -> "Camera":
        """Camera of the image resized by (sx, sy): intrinsics via
        :func:`mlxgeom.camera.scale_intrinsics`, size scaled, lens unchanged.

        Example:
            >>> Camera.from_intrinsics(100.0, 100.0, 49.5, 49.5, size=[100, 100]).scale(0.5).size.tolist()
            [50.0, 50.0]
        """
        sy = sx if sy is None else sy
        K = scale_intrinsics(self.K, sx, sy)  # first: its shape check names K, sx and sy
        (size, sxa, sya), out = as_floats(self.size, sx, sy, names=("size", "sx", "sy"))
        check_batch(("size", size, 1), ("sx", sxa, 0), ("sy", sya, 0))
        size = cast_out(size * mx.stack(mx.broadcast_arrays(sxa, sya), axis=-1), out)
        return type(self)(K, self.pose, self.dist, size)

    def crop(self, left: Any, top: Any, width: Any, height: Any) -> "Camera":
        """Camera of the crop [left, left + width) x [top, top + height) (pixels).

        Example:
            >>> Camera.from_intrinsics(100.0, 100.0, 50.0, 40.0).crop(10, 20, 30, 30).cx.item()
            40.0
        """
        K = crop_intrinsics(self.K, left, top)  # first: its shape check names K, left and top
        (w, h), _ = as_floats(width, height, names=("width", "height"))
        check_batch(("width", w, 0), ("height", h, 0))
        size = mx.stack(mx.broadcast_arrays(w, h), axis=-1)
        return type(self)(K, self.pose, self.dist, size)

    def select(self, index: Any) -> "Camera":
        """Index the camera batch (``cam[i]`` would give the i-th tuple field).

        Example:
            >>> Camera.from_intrinsics(mx.array([1.0, 2.0]), 1.0, 0.0, 0.0).select(1).fx.item()
            2.0
        """
        shape = self.batch_shape
        if isinstance(index, (mx.array, np.ndarray)) and index.dtype not in (mx.bool_, np.bool_):
            index = mx.array(index).astype(mx.int32)  # one gather specialisation (mlxgeom/_indexing.py)
        return type(self)(*(mx.broadcast_to(a, (*shape, *a.shape[a.ndim - k:]))[index] for a, k in zip(self, (2, 2, 1, 1))))


class FisheyeCamera(Camera):
    """Batch of cameras with OpenCV's fisheye lens model (dist = k1..k4, Kannala-Brandt).

    The skew K[0, 1] plays the role of OpenCV's ``alpha * fx``.

    Example:
        >>> cam = Camera(mx.eye(3), dist=mx.zeros(4), model="fisheye")
        >>> type(cam).__name__, cam.model
        ('FisheyeCamera', 'fisheye')
    """

    __slots__ = ()
    model: ClassVar[str] = "fisheye"

