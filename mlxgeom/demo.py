"""The batch-reprojection demo behind ``python -m mlxgeom demo`` (and the example notebook).

Pipeline on ``data/scene`` (eight distorted 640x480 views of a textured room, read as a
COLMAP text model):

1. unproject every pixel of view 0 that has a depth (``Camera.unproject``: the lens
   distortion is removed, then ``K^-1 [u, v, 1] z``, then camera-to-world);
2. reproject all of them into the seven other views in ONE batched ``Camera.project`` call
   (a (7,) batch of cameras against (N, 3) points gives (7, N, 2) pixels);
3. verify: the colour found at each reprojected pixel against the source colour
   (occlusion-aware through a z-buffer built on the device with a scatter-min), and the
   pixels against ``cv2.projectPoints`` of the same 3D points;
4. time the batched call against a loop of ``cv2.projectPoints`` over the views;
5. perturb the seven poses (2 deg, 5 cm) and refine them by Levenberg-Marquardt with left
   ``se3_exp`` updates on the noisy, outlier-contaminated 2D-3D matches (Cauchy loss);
6. write PNG figures and ``report.txt``.

The functions that compute (``unproject_view``, ``reproject``, ``zbuffer_visible``,
``photometric_error``, ``refine_poses``) are pure ``mx`` code that runs on MLX's default
device (CPU, Metal or CUDA). Loading, the OpenCV reference, the figures and the report are
host-side numpy / PIL / OpenCV code.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, TextIO

import mlx.core as mx
import numpy as np

from . import camera, lie, optim

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "scene")
DEFAULT_OUT = "mlxgeom-demo-out"
STEPS = ("load scene", "unproject view 0", "reproject into 7 views", "photometric check", "OpenCV check",
         "timing", "pose refinement", "figures", "report")


# ----- progress bar -------------------------------------------------------------------------
class ProgressBar:
    """A one-line text progress bar: ``[#####.....] 3/9 label``.

    On a terminal the line is redrawn in place; elsewhere (logs, CI) each step prints a line.
    """

    def __init__(self, total: int, width: int = 30, stream: TextIO | None = None, enabled: bool = True):
        self.total, self.width, self.done = total, width, 0
        self.stream = sys.stdout if stream is None else stream
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def step(self, label: str) -> None:
        """Mark one more step as started and redraw."""
        self.done = min(self.done + 1, self.total)
        self._draw(label)

    def _draw(self, label: str) -> None:
        if not self.enabled:
            return
        fill = int(round(self.width * self.done / self.total))
        line = f"[{'#' * fill}{'.' * (self.width - fill)}] {self.done}/{self.total} {label:<24s} " \
               f"{time.perf_counter() - self.t0:5.1f} s"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ----- data ------------------------------------------------------------------------------------
@dataclass
class Scene:
    """The demo's data: cameras (8,), RGB images (8, H, W, 3) uint8, depth of view 0 (H, W),
    COLMAP points (P, 3) float64, padded matches per view, and the COLMAP convention check."""

    cameras: camera.Camera
    images: np.ndarray
    depth: np.ndarray
    points: np.ndarray
    names: list[str]
    matches_points: np.ndarray  # (8, M, 3) float32, zero-padded
    matches_pixels: np.ndarray  # (8, M, 2) float32
    matches_mask: np.ndarray  # (8, M) bool: a real correspondence (not padding)
    matches_inlier: np.ndarray  # (8, M) bool: ground-truth inlier label
    observation_offset: dict[str, float] = field(default_factory=dict)


def observation_offsets(model: camera.colmap.ColmapModel, cams: camera.Camera, ids: np.ndarray) -> np.ndarray:
    """Mean signed residual (2,) and RMS of ``project(points3D) - observed xy`` over all tracks.

    ``cams`` use OpenCV pixel centres (``model_to_cameras``' default conversion); COLMAP's
    observations sit 0.5 px further, so they are shifted back before comparing.
    """
    pids, xyz, _, _ = camera.colmap.model_points(model, dtype=mx.float32)
    row = {int(p): n for n, p in enumerate(pids)}
    res = []
    for b, image_id in enumerate(ids):
        im = model.images[int(image_id)]
        keep = im.point3D_ids >= 0
        sel = mx.array(np.array([row[int(p)] for p in im.point3D_ids[keep]], dtype=np.int32))
        px = np.array(cams.select(b).project(xyz[sel]).pixels, dtype=np.float64)
        res.append(px - (im.xys[keep] - 0.5))
    r = np.concatenate(res)
    return np.r_[r.mean(0), np.sqrt((r ** 2).sum(-1).mean())]


def load_scene(data_dir: str = DEFAULT_DATA) -> Scene:
    """Read ``data/scene``: COLMAP text model, images, depth of view 0, matches."""
    from PIL import Image

    sparse = os.path.join(data_dir, "sparse")
    if not os.path.isdir(sparse):
        raise FileNotFoundError(f"no COLMAP model in {sparse!r}: pass --data pointing at mlxgeom's data/scene folder")
    model = camera.colmap.read_model(sparse, ext=".txt")
    cams, ids = camera.colmap.model_to_cameras(model)
    off = observation_offsets(model, cams, ids)
    names = [model.images[int(i)].name for i in ids]
    images = np.stack([np.asarray(Image.open(os.path.join(data_dir, "images", n)).convert("RGB")) for n in names])
    depth = np.load(os.path.join(data_dir, "depth_00.npy")).astype(np.float32)
    points = np.array([model.points3D[k].xyz for k in sorted(model.points3D)], dtype=np.float64).reshape(-1, 3)
    mp, mx_, mm, mi = _load_matches(os.path.join(data_dir, "matches.npz"), len(names))
    return Scene(cams, images, depth, points, names, mp, mx_, mm, mi,
                 {"dx": off[0], "dy": off[1], "rms": off[2]})


def _load_matches(path: str, views: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    m = np.load(path)
    n = max(len(m[f"view_{i:02d}_pixels"]) for i in range(views))
    pw, uv = np.zeros((views, n, 3), np.float32), np.zeros((views, n, 2), np.float32)
    mask, inl = np.zeros((views, n), bool), np.zeros((views, n), bool)
    for i in range(views):
        k = len(m[f"view_{i:02d}_pixels"])
        pw[i, :k], uv[i, :k] = m[f"view_{i:02d}_points3d"], m[f"view_{i:02d}_pixels"]
        mask[i, :k], inl[i, :k] = True, m[f"view_{i:02d}_inlier"]
    return pw, uv, mask, inl


# ----- device-side pipeline -------------------------------------------------------------------
def source_grid(height: int, width: int, stride: int = 1) -> mx.array:
    """Pixel centres (h, w, 2) [u, v] of every ``stride``-th pixel (OpenCV: (0, 0) = first centre)."""
    v, u = mx.meshgrid(mx.arange(0, height, stride), mx.arange(0, width, stride), indexing="ij")
    return mx.stack([u, v], axis=-1).astype(mx.float32)


def unproject_view(cam: camera.Camera, depth: mx.array, grid: mx.array) -> camera.Unprojection:
    """World points (h, w, 3) of the grid pixels at their depth (0 = no surface -> invalid)."""
    z = depth[grid[..., 1].astype(mx.int32), grid[..., 0].astype(mx.int32)]
    un = cam.unproject(grid, z, return_valid=True)
    return camera.Unprojection(un.points, un.points_cam, un.valid & (z > 0))


def reproject(cams: camera.Camera, points: mx.array) -> camera.Projection:
    """Project (h, w, 3) points through a (V,) camera batch in one call: (V, h, w, ...) outputs.

    ``valid`` also requires the pixel to land inside the image, [0, W-1] x [0, H-1].
    """
    h, w = points.shape[:2]
    flat = points.reshape(h * w, 3)
    proj = cams.project(flat)
    px = proj.pixels
    size = cams.size[..., None, :]
    inside = mx.all((px >= 0) & (px <= size - 1), axis=-1)
    v = cams.batch_shape[0]
    return camera.Projection(px.reshape(v, h, w, 2), proj.depth.reshape(v, h, w),
                             (proj.valid & inside).reshape(v, h, w))


def zbuffer_visible(proj: camera.Projection, valid_src: mx.array, size: tuple[int, int], radius: int = 1,
                    rel_tol: float = 0.03, abs_tol: float = 0.01) -> mx.array:
    """(V, h, w) bool: no other reprojected point lies in front of this one on its pixel.

    A z-buffer per destination view is filled by scatter-min on the device: every point
    writes its depth to the (2 radius + 1)^2 pixels around where it lands (a splat that
    closes the gaps between reprojected samples). A point is visible when its depth is within
    ``rel_tol`` (+ ``abs_tol`` m) of the z-buffer at its own pixel. Only surfaces the source
    view sees can occlude (what it does not see leaves no point to test against).
    """
    width, height = size
    views = proj.pixels.shape[0]
    ok = proj.valid & valid_src[None]
    ui = mx.round(proj.pixels[..., 0]).astype(mx.int32)
    vi = mx.round(proj.pixels[..., 1]).astype(mx.int32)
    base = mx.arange(views, dtype=mx.int32)[:, None, None] * (width * height)
    dump = views * width * height  # one extra cell collects invalid and off-image writes
    z = mx.where(ok, proj.depth, mx.inf).reshape(-1)

    def cells(du: int, dv: int) -> mx.array:
        u, v = ui + du, vi + dv
        inside = ok & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        return mx.where(inside, base + v * width + u, dump).reshape(-1)

    zbuf = mx.full((dump + 1,), mx.inf, dtype=z.dtype)
    for dv in range(-radius, radius + 1):
        for du in range(-radius, radius + 1):
            zbuf = zbuf.at[cells(du, dv)].minimum(z)
    nearest = zbuf[cells(0, 0)].reshape(proj.depth.shape)
    return ok & (proj.depth <= nearest * (1 + rel_tol) + abs_tol)


def photometric_error(images_dst: mx.array, proj: camera.Projection, colours_src: mx.array) -> mx.array:
    """Mean absolute RGB difference (V, h, w) in 0-255 levels between the bilinearly sampled
    destination colour at each reprojected pixel and the source colour (h, w, 3)."""
    sampled = camera.remap(images_dst.astype(mx.float32), proj.pixels)
    return mx.mean(mx.abs(sampled - colours_src.astype(mx.float32)[None]), axis=-1)


class RefineResult(NamedTuple):
    pose: mx.array  # (V, 4, 4) refined world-to-camera
    initial_rms: mx.array  # (V,) RMS px of the ground-truth inliers at the start
    final_rms: mx.array  # (V,)
    iterations: mx.array  # (V,)
    converged: mx.array  # (V,)


def perturb_poses(pose: mx.array, rot_deg: float, trans_m: float, seed: int = 0) -> mx.array:
    """Rotate each camera by ``rot_deg`` about a random axis and move its centre by ``trans_m``
    in a random direction (so the errors are exactly those amounts)."""
    rng = np.random.default_rng(seed)
    n = pose.shape[0]
    axis = rng.normal(size=(n, 3))
    step = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    step /= np.linalg.norm(step, axis=1, keepdims=True)
    rot = lie.so3_compose(lie.so3_exp(mx.array(np.deg2rad(rot_deg) * axis, dtype=mx.float32)), pose[:, :3, :3])
    centre = lie.se3_inverse(pose)[:, :3, 3] + mx.array(trans_m * step, dtype=mx.float32)
    return lie.se3_from_rt(rot, -lie.so3_act(rot, centre))


def refine_poses(cams: camera.Camera, pose0: mx.array, points: mx.array, pixels: mx.array, mask: mx.array,
                 loss: str | None = "cauchy", scale: float = 2.0, iterations: int = 15,
                 inlier: mx.array | None = None) -> RefineResult:
    """Levenberg-Marquardt on the distorted reprojection error of 2D-3D matches, all views at once.

    Residuals are ``Camera.project(points) - pixels`` (lens distortion included), the Jacobian is
    ``Camera.project_jacobian``'s ``d_pose`` for the LEFT perturbation, and every step is the
    se(3) update ``T <- se3_exp(h) T``. A robust loss (Cauchy, ``scale`` px) down-weights outliers.
    """
    w = mask.astype(mx.float32)
    views = pose0.shape[0]

    def residual(pose: mx.array) -> mx.array:
        px = cams.with_pose(pose).project(points).pixels
        return ((px - pixels) * w[..., None]).reshape(views, -1)

    def jacobian(pose: mx.array) -> mx.array:
        jac = cams.with_pose(pose).project_jacobian(points).d_pose
        return (jac * w[..., None, None]).reshape(views, -1, 6)

    def retract(pose: mx.array, h: mx.array) -> mx.array:
        return lie.se3_compose(lie.se3_exp(h), pose)

    res = optim.levenberg_marquardt(residual, pose0, jacobian=jacobian, retract=retract, dof=6, loss=loss,
                                    loss_scale=scale, block_size=2, max_iters=iterations)
    good = w if inlier is None else w * inlier.astype(mx.float32)

    def rms(pose: mx.array) -> mx.array:
        e2 = mx.sum(mx.square(residual(pose).reshape(views, -1, 2)), axis=-1)
        return mx.sqrt(mx.sum(e2 * good, axis=-1) / mx.maximum(mx.sum(good, axis=-1), 1.0))

    return RefineResult(res.x, rms(pose0), rms(res.x), res.iterations, res.converged)


def pose_errors(pose: mx.array, truth: mx.array) -> tuple[np.ndarray, np.ndarray]:
    """Rotation error (deg) and camera-centre distance (m) per view, (V,) each."""
    rel = lie.so3_compose(pose[..., :3, :3], lie.so3_inverse(truth[..., :3, :3]))
    rot = np.degrees(np.linalg.norm(np.array(lie.so3_log(rel), dtype=np.float64), axis=-1))
    c = np.array(lie.se3_inverse(pose)[..., :3, 3], dtype=np.float64)
    c_true = np.array(lie.se3_inverse(truth)[..., :3, 3], dtype=np.float64)
    return rot, np.linalg.norm(c - c_true, axis=-1)


# ----- host-side checks -------------------------------------------------------------------------
def opencv_project(points: np.ndarray, cams: camera.Camera) -> np.ndarray:
    """Reference pixels (V, N, 2) from a loop of ``cv2.projectPoints`` (float64) over the cameras."""
    import cv2

    K = np.array(cams.K, dtype=np.float64)
    dist = np.array(cams.dist, dtype=np.float64)
    rvec = np.array(lie.so3_log(cams.R), dtype=np.float64)
    tvec = np.array(cams.t, dtype=np.float64)
    views = rvec.shape[0]
    K = np.broadcast_to(K, (views, 3, 3))
    dist = np.broadcast_to(dist, (views, dist.shape[-1]))
    return np.stack([cv2.projectPoints(points, rvec[i], tvec[i], K[i], dist[i])[0].reshape(-1, 2)
                     for i in range(views)])


def median_time(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    """Median wall time (s) of ``fn`` over ``runs`` calls after ``warmup`` calls; ``fn`` must
    block until its result exists (``mx.eval`` inside)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_reprojection(cams: camera.Camera, points: mx.array, runs: int, compiled: bool = True) -> dict[str, float]:
    """Seconds per call: batched ``Camera.project`` (eager and under ``mx.compile``) vs a loop of
    ``cv2.projectPoints`` over the views, all on the same (N, 3) points."""
    flat = points.reshape(-1, 3)
    mx.eval(flat)
    out = {"mlxgeom batched (eager)": median_time(lambda: mx.eval(cams.project(flat)), runs)}
    if compiled:
        fn = mx.compile(lambda p, k, pose, dist: camera.project_points(p, k, pose, dist))
        t0 = time.perf_counter()
        mx.eval(fn(flat, cams.K, cams.pose, cams.dist))
        out["compile (first call, once)"] = time.perf_counter() - t0
        out["mlxgeom batched (mx.compile)"] = median_time(lambda: mx.eval(fn(flat, cams.K, cams.pose, cams.dist)), runs)
    pts = np.array(flat, dtype=np.float64)
    out["OpenCV loop of projectPoints"] = median_time(lambda: opencv_project(pts, cams), runs)
    return out


# ----- figures (PIL / OpenCV) ----------------------------------------------------------------------
_GREEN, _RED, _BLACK, _GREY = (40, 220, 60), (235, 40, 40), (0, 0, 0), (128, 128, 128)


def _tile(cells: list[np.ndarray], cols: int) -> np.ndarray:
    h, w = cells[0].shape[:2]
    rows = -(-len(cells) // cols)
    canvas = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for n, c in enumerate(cells):
        r, q = divmod(n, cols)
        canvas[r * h:(r + 1) * h, q * w:(q + 1) * w] = c
    return canvas


def _label(img: np.ndarray, text: str):
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    box = d.textbbox((4, 4), text)
    d.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(255, 255, 255))
    d.text((4, 4), text, fill=_BLACK)
    return pil


def save_overlays(path: str, images: np.ndarray, grid: np.ndarray, pixels: np.ndarray, valid: np.ndarray,
                  visible: np.ndarray, names: list[str], every: int = 24, scale: float = 0.5) -> None:
    """View 0 with its sample grid, then each destination image with the reprojected samples
    (green: visible, red: occluded by the z-test)."""
    from PIL import Image, ImageDraw

    h, w = images.shape[1:3]
    size = (int(w * scale), int(h * scale))
    sel = np.zeros(grid.shape[:2], bool)
    sel[(grid[..., 1] % every == 0) & (grid[..., 0] % every == 0)] = True
    cells = []
    src = _label(images[0], f"{names[0]} (source)")
    d = ImageDraw.Draw(src)
    for u, v in grid[sel & valid.any(0)]:
        d.ellipse((u - 2, v - 2, u + 2, v + 2), fill=_GREEN)
    cells.append(np.asarray(src.resize(size, Image.BILINEAR)))
    for b in range(pixels.shape[0]):
        img = _label(images[b + 1], f"{names[b + 1]}: reprojected from view 0")
        d = ImageDraw.Draw(img)
        for ok, col in ((valid[b] & ~visible[b], _RED), (visible[b], _GREEN)):
            for u, v in pixels[b][sel & ok]:
                d.ellipse((u - 2, v - 2, u + 2, v + 2), fill=col)
        cells.append(np.asarray(img.resize(size, Image.BILINEAR)))
    Image.fromarray(_tile(cells, 4)).save(path, optimize=True)


def _colormap(err: np.ndarray, vmax: float) -> np.ndarray:
    import cv2

    x = np.clip(err / vmax, 0, 1)
    return cv2.cvtColor(cv2.applyColorMap((255 * x).astype(np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def save_heatmaps(path: str, source: np.ndarray, error: np.ndarray, valid: np.ndarray, visible: np.ndarray,
                  names: list[str], vmax: float = 60.0, scale: float = 0.5) -> None:
    """Per-view photometric error in view 0's pixel grid (inferno, 0..vmax levels); white: not in
    the view or no depth, grey: occluded (z-test)."""
    from PIL import Image

    hs, ws = error.shape[1:]
    size = (int(source.shape[1] * scale), int(source.shape[0] * scale))
    cells = [np.asarray(_label(source, f"{names[0]} (source)").resize(size, Image.BILINEAR))]
    for b in range(error.shape[0]):
        rgb = _colormap(error[b], vmax)
        rgb[~valid[b]] = 255
        rgb[valid[b] & ~visible[b]] = 150
        med = np.median(error[b][visible[b]]) if visible[b].any() else float("nan")
        img = Image.fromarray(rgb).resize(size, Image.NEAREST)
        cells.append(np.asarray(_label(np.asarray(img), f"{names[b + 1]}: median {med:.1f} / 255")))
    canvas = _tile(cells, 4)
    bar = np.repeat(_colormap(np.linspace(0, vmax, canvas.shape[1])[None], vmax), 14, axis=0)
    foot = np.asarray(_label(np.full((22, canvas.shape[1], 3), 255, np.uint8),
                             f"|colour error| 0 .. {vmax:.0f} levels (left to right); white: outside / no depth; "
                             "grey: occluded"))
    Image.fromarray(np.concatenate([canvas, bar, foot])).save(path, optimize=True)


def save_bar_chart(path: str, title: str, labels: list[str], series: dict[str, list[float]], unit: str | list[str],
                   log: bool = False, width: int = 760) -> None:
    """Horizontal grouped bar chart drawn with PIL (one group per label, one bar per series;
    ``unit`` one string or one per label)."""
    from PIL import Image, ImageDraw

    colours = [(70, 110, 200), (230, 140, 40), (60, 170, 90), (190, 60, 60)]
    names = list(series)
    bar_h, gap, left, right, top = 14, 10, 230, 110, 34
    height = top + len(labels) * (len(names) * bar_h + gap) + 20 + 16 * len(names)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 10), title + ("  (log scale)" if log else ""), fill=_BLACK)
    vals = np.array([series[n] for n in names], dtype=np.float64)
    pos = vals[vals > 0]
    lo = np.log10(pos.min()) - 0.3 if log and pos.size else 0.0
    hi = np.log10(pos.max()) + 0.1 if log and pos.size else (vals.max() if vals.size else 1.0)

    def length(x: float) -> float:
        if log:
            return 0.0 if x <= 0 else (np.log10(x) - lo) / (hi - lo) * (width - left - right)
        return x / hi * (width - left - right) if hi > 0 else 0.0

    units = [unit] * len(labels) if isinstance(unit, str) else list(unit)
    y = top
    for i, lab in enumerate(labels):
        d.text((10, y + (len(names) * bar_h) // 2 - 6), lab, fill=_BLACK)
        for j, n in enumerate(names):
            x = series[n][i]
            d.rectangle((left, y, left + max(length(x), 1), y + bar_h - 2), fill=colours[j % len(colours)])
            d.text((left + length(x) + 5, y), f"{x:.3g} {units[i]}", fill=_BLACK)
            y += bar_h
        y += gap
    for j, n in enumerate(names):
        d.rectangle((10, y + 4, 22, y + 14), fill=colours[j % len(colours)])
        d.text((28, y + 3), n, fill=_BLACK)
        y += 16
    img.save(path, optimize=True)


# ----- the whole demo ---------------------------------------------------------------------------
@dataclass
class DemoResult:
    out_dir: str
    files: list[str]
    report: str
    stats: dict


def _stats_table(rows: list[tuple], header: tuple) -> list[str]:
    lines = ["  " + " ".join(f"{h:>14s}" for h in header)]
    for r in rows:
        lines.append("  " + " ".join(f"{v:>14s}" if isinstance(v, str) else f"{v:>14,d}" if isinstance(v, int)
                                     else f"{v:>14.3f}" for v in r))
    return lines


def run_demo(data_dir: str = DEFAULT_DATA, out_dir: str = DEFAULT_OUT, small: bool = False,
             progress: bool = True, stream: TextIO | None = None, compiled: bool | None = None) -> DemoResult:
    """Run the whole pipeline, write figures + ``report.txt`` into ``out_dir``; see the module doc.

    ``small`` (CI) unprojects every 4th pixel in each direction, times fewer runs and runs
    fewer LM iterations. ``compiled`` also times an ``mx.compile``-d projection; None (default)
    does so on the CPU only when not ``small``: there its first call takes a few seconds of
    g++, while on CUDA the first call's NVRTC compile took 10-50 s on an H200 for a ~2x gain
    over an eager call that already takes ~1 ms.
    """
    from . import __version__

    stream = sys.stdout if stream is None else stream
    bar = ProgressBar(len(STEPS), stream=stream, enabled=progress)
    stride, runs = (4, 3) if small else (1, 7)
    os.makedirs(out_dir, exist_ok=True)
    stats: dict = {}

    bar.step(STEPS[0])
    scene = load_scene(data_dir)
    cams = scene.cameras
    src, dst = cams.select(0), cams.select(slice(1, None))
    height, width = scene.depth.shape

    bar.step(STEPS[1])
    grid = source_grid(height, width, stride)
    un = unproject_view(src, mx.array(scene.depth), grid)
    mx.eval(un)

    bar.step(STEPS[2])
    proj = reproject(dst, un.points)
    valid = proj.valid & un.valid[None]
    mx.eval(proj, valid)

    bar.step(STEPS[3])
    images = mx.array(scene.images)
    colours = images[0][grid[..., 1].astype(mx.int32), grid[..., 0].astype(mx.int32)]
    visible = zbuffer_visible(proj, un.valid, (width, height), radius=max(1, (3 * stride) // 4 + 1))
    err = photometric_error(images[1:], proj, colours)
    mx.eval(visible, err)
    err_np, valid_np, vis_np = np.array(err), np.array(valid), np.array(visible)
    per_view = []
    for b in range(err_np.shape[0]):
        e_all, e_vis = err_np[b][valid_np[b]], err_np[b][vis_np[b]]
        per_view.append((scene.names[b + 1], int(valid_np[b].sum()), int(vis_np[b].sum()),
                         float(np.median(e_all)), float(np.median(e_vis)), float(np.mean(e_vis < 20))))
    stats["photometric"] = per_view

    bar.step(STEPS[4])
    pts_np = np.array(un.points, dtype=np.float64).reshape(-1, 3)
    ref = opencv_project(pts_np, dst).reshape(proj.pixels.shape)
    diff = np.linalg.norm(np.array(proj.pixels, dtype=np.float64) - ref, axis=-1)[valid_np]
    stats["opencv_max_px"], stats["opencv_median_px"] = float(diff.max()), float(np.median(diff))
    n_points = int(np.array(un.valid).sum())
    stats["points"], stats["projections"] = n_points, int(valid_np.sum())

    bar.step(STEPS[5])
    if compiled is None:
        compiled = not small and mx.default_device() == mx.cpu
    timing = time_reprojection(dst, un.points, runs, compiled=compiled)
    stats["timing"] = timing

    bar.step(STEPS[6])
    truth = dst.pose
    pose0 = perturb_poses(truth, 2.0, 0.05, seed=0)
    sl = slice(1, None)
    args = (mx.array(scene.matches_points[sl]), mx.array(scene.matches_pixels[sl]), mx.array(scene.matches_mask[sl]))
    t0 = time.perf_counter()
    refined = refine_poses(dst, pose0, *args, loss="cauchy", scale=2.0, iterations=10 if small else 15,
                           inlier=mx.array(scene.matches_inlier[sl]))
    mx.eval(refined)
    t_refine = time.perf_counter() - t0
    plain = refine_poses(dst, pose0, *args, loss=None, iterations=10 if small else 15)
    mx.eval(plain)
    rot0, pos0 = pose_errors(pose0, truth)
    rot1, pos1 = pose_errors(refined.pose, truth)
    rot2, pos2 = pose_errors(plain.pose, truth)
    photo = {}
    for key, pose in (("ground truth", truth), ("perturbed", pose0), ("refined", refined.pose)):
        # Same source points for every pose: those visible (z-test) at the true poses.
        pr = reproject(dst.with_pose(pose), un.points)
        e = photometric_error(images[1:], pr, colours)
        m = pr.valid & visible
        photo[key] = float(mx.sum(mx.where(m, e, 0)) / mx.maximum(mx.sum(m), 1))
    stats["refine"] = {"rot_before": rot0, "pos_before": pos0, "rot_after": rot1, "pos_after": pos1,
                       "rot_l2": rot2, "pos_l2": pos2, "seconds": t_refine, "photometric_mean": photo,
                       "rms_before": np.array(refined.initial_rms), "rms_after": np.array(refined.final_rms)}

    bar.step(STEPS[7])
    files = []
    names = scene.names
    grid_np = np.array(grid).astype(np.int64)
    f = os.path.join(out_dir, "overlays.png")
    save_overlays(f, scene.images, grid_np, np.array(proj.pixels), valid_np, vis_np, names, every=max(24, stride))
    files.append(f)
    f = os.path.join(out_dir, "error_heatmaps.png")
    save_heatmaps(f, scene.images[0], err_np, valid_np, vis_np, names)
    files.append(f)
    f = os.path.join(out_dir, "timing.png")
    tkeys = [k for k in timing if not k.startswith("compile")]
    save_bar_chart(f, f"Reprojecting {n_points:,} points into {len(names) - 1} views (median of {runs}), "
                      f"device {mx.default_device()}", tkeys, {"time": [1e3 * timing[k] for k in tkeys]}, "ms")
    files.append(f)
    f = os.path.join(out_dir, "pose_refinement.png")
    vlabels = [n.replace(".png", "") for n in names[1:]]
    save_bar_chart(f, "Pose errors before / after LM with se3_exp updates (Cauchy loss, 30 % outliers)",
                   [f"{v} rotation" for v in vlabels] + [f"{v} centre" for v in vlabels],
                   {"perturbed": list(rot0) + list(100 * pos0), "refined": list(rot1) + list(100 * pos1)},
                   ["deg"] * len(vlabels) + ["cm"] * len(vlabels), log=True)
    files.append(f)

    bar.step(STEPS[8])
    report = format_report(stats, scene, timing, runs, stride, __version__)
    f = os.path.join(out_dir, "report.txt")
    with open(f, "w") as fh:
        fh.write(report)
    files.append(f)
    bar.close()
    return DemoResult(out_dir, files, report, stats)


def format_report(stats: dict, scene: Scene, timing: dict, runs: int, stride: int, version: str) -> str:
    """The text report (also printed by the CLI)."""
    o = scene.observation_offset
    r = stats["refine"]
    sampling = "every pixel" if stride == 1 else f"every {stride}th pixel per axis"
    lines = [
        f"mlxgeom {version} batch-reprojection demo (mlx {mx.__version__}, device {mx.default_device()})",
        f"scene: {len(scene.names)} views {scene.depth.shape[1]}x{scene.depth.shape[0]}, OpenCV distortion, "
        f"{len(scene.points)} COLMAP points",
        f"COLMAP observations vs projected points3D: mean offset ({o['dx']:+.3f}, {o['dy']:+.3f}) px, RMS "
        f"{o['rms']:.3f} px (1 px noise per axis: RMS ~1.41 expected)",
        "",
        f"unprojected {stats['points']:,} pixels of view 0 with depth ({sampling}), reprojected "
        f"into {len(scene.names) - 1} views in one batched call: {stats['projections']:,} land inside the images",
        f"geometry vs cv2.projectPoints (float64): max {stats['opencv_max_px']:.2e} px, median "
        f"{stats['opencv_median_px']:.2e} px",
        "photometric check (|RGB difference| in 0..255 levels, z-test against the reprojected depth):",
        *_stats_table([(n.replace(".png", ""), a, b, c, d, 100 * e) for n, a, b, c, d, e in stats["photometric"]],
                      ("view", "in image", "visible", "median all", "median vis.", "% vis. < 20")),
        "",
        f"timing, median of {runs} runs after warm-up (mx.eval around results):",
        *[f"  {k:<32s} {1e3 * v:9.2f} ms" for k, v in timing.items()],
        f"  speed-up vs OpenCV loop: {timing['OpenCV loop of projectPoints'] / timing['mlxgeom batched (eager)']:.1f}x "
        "(eager)" + (f", {timing['OpenCV loop of projectPoints'] / timing['mlxgeom batched (mx.compile)']:.1f}x "
                     "(compiled)" if "mlxgeom batched (mx.compile)" in timing else ""),
        "",
        "pose refinement: 7 poses perturbed by 2 deg / 5 cm, refined on matches.npz (1 px noise, 30 % outliers) by",
        f"Levenberg-Marquardt with left se3_exp updates, Cauchy loss 2 px, all views in one batch ({r['seconds']:.2f} s)",
        *_stats_table([(n.replace(".png", ""), r["rot_before"][i], 100 * r["pos_before"][i], r["rot_after"][i],
                        100 * r["pos_after"][i], r["rot_l2"][i], 100 * r["pos_l2"][i])
                       for i, n in enumerate(scene.names[1:])],
                      ("view", "rot0 deg", "centre0 cm", "rot deg", "centre cm", "L2 rot deg", "L2 centre cm")),
        f"  inlier RMS reprojection error: {np.mean(r['rms_before']):.2f} px -> {np.mean(r['rms_after']):.2f} px "
        "(mean over views); 'L2' = same solver without the robust loss",
        "  mean photometric error (levels, points visible at the true poses): " + ", ".join(
            f"{k} poses {v:.1f}" for k, v in r["photometric_mean"].items()),
    ]
    return "\n".join(lines) + "\n"
