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
4. time the batched call against a loop of ``cv2.projectPoints`` over the views (the first
   call, which compiles, apart from the steady state);
5. perturb the seven poses (2 deg, 5 cm) and refine them with the library's PnP refinement
   (``optim.refine_pnp``: Levenberg-Marquardt on se(3)) on the noisy, outlier-contaminated
   2D-3D matches (Cauchy loss);
6. write PNG figures and ``report.txt``.

The demo is an application of the library, not part of it: its heavy dependencies (OpenCV,
Pillow, matplotlib: the ``demo`` extra; tqdm) are imported only when it runs, never by
``import mlxgeom``. The functions that compute (``unproject_view``, ``reproject``,
``zbuffer_visible``, ``photometric_error``, ``refine_poses``) are pure ``mx`` code that runs
on MLX's default device (CPU, Metal or CUDA). Loading, the OpenCV reference, the figures and
the report are host-side numpy / PIL / OpenCV / matplotlib code.
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
from ._vmap import all_of

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "scene")
DEFAULT_OUT = os.path.join("mlxgeom-out", "demo")
STEPS = ("load scene", "unproject view 0", "reproject into 7 views", "photometric check", "OpenCV check",
         "timing", "pose refinement", "figures", "report")


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
def unproject_view(cam: camera.Camera, depth: mx.array, grid: mx.array) -> camera.Unprojection:
    """World points (h, w, 3) of the grid pixels at their depth (0 = no surface -> invalid)."""
    z = depth[grid[..., 1].astype(mx.int32), grid[..., 0].astype(mx.int32)]
    un = cam.unproject(grid, z, return_valid=True)
    return camera.Unprojection(un.points, un.points_cam, all_of(un.valid, z > 0))


def reproject(cams: camera.Camera, points: mx.array) -> camera.Projection:
    """Project (h, w, 3) points through a (V,) camera batch in one call: (V, h, w, ...) outputs.

    ``valid`` also requires the pixel to land inside the image, [0, W-1] x [0, H-1].
    """
    h, w = points.shape[:2]
    flat = points.reshape(h * w, 3)
    proj = cams.project(flat)
    px = proj.pixels
    inside = mx.all(all_of(px >= 0, px <= cams.size[..., None, :] - 1), axis=-1)
    v = cams.batch_shape[0]
    return camera.Projection(px.reshape(v, h, w, 2), proj.depth.reshape(v, h, w),
                             all_of(proj.valid, inside).reshape(v, h, w))


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
    ok = all_of(proj.valid, valid_src[None])
    ui = mx.round(proj.pixels[..., 0]).astype(mx.int32)
    vi = mx.round(proj.pixels[..., 1]).astype(mx.int32)
    base = mx.arange(views, dtype=mx.int32)[:, None, None] * (width * height)
    dump = views * width * height  # one extra cell collects invalid and off-image writes
    z = mx.where(ok, proj.depth, mx.inf).reshape(-1)

    def cells(du: int, dv: int) -> mx.array:
        u, v = ui + du, vi + dv
        inside = all_of(ok, u >= 0, u < width, v >= 0, v < height)
        return mx.where(inside, base + v * width + u, dump).reshape(-1)

    zbuf = mx.full((dump + 1,), mx.inf, dtype=z.dtype)
    for dv in range(-radius, radius + 1):
        for du in range(-radius, radius + 1):
            zbuf = zbuf.at[cells(du, dv)].minimum(z)
    nearest = zbuf[cells(0, 0)].reshape(proj.depth.shape)
    return all_of(ok, proj.depth <= nearest * (1 + rel_tol) + abs_tol)


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
    axis, step = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in rng.normal(size=(2, n, 3)))
    rot = lie.so3_compose(lie.so3_exp(mx.array(np.deg2rad(rot_deg) * axis, dtype=mx.float32)), pose[:, :3, :3])
    centre = lie.se3_inverse(pose)[:, :3, 3] + mx.array(trans_m * step, dtype=mx.float32)
    return lie.se3_from_rt(rot, -lie.so3_act(rot, centre))


def refine_poses(cams: camera.Camera, pose0: mx.array, points: mx.array, pixels: mx.array, mask: mx.array,
                 loss: str | None = "cauchy", scale: float = 2.0, iterations: int = 15,
                 inlier: mx.array | None = None) -> RefineResult:
    """Refine all views' poses at once with the library's PnP refinement (``optim.refine_pnp``).

    The matches' lens distortion is removed first (``Camera.undistort_points`` with
    ``K_new = K``, as ``optim.solve_pnp`` does for a ``Camera``), then Levenberg-Marquardt on
    se(3) minimises the pinhole reprojection error from ``pose0``; a robust loss (Cauchy,
    ``scale`` px) down-weights the outliers. The RMS before and after is the distorted
    reprojection error (``Camera.project``) over ``inlier`` (default: every match in ``mask``).

    Args:
        cams: (V,) cameras (intrinsics and lens; their poses are not used).
        pose0: (V, 4, 4) initial world-to-camera poses.
        points, pixels, mask: (V, M, 3), (V, M, 2), (V, M) padded matches per view.
    """
    und, converged = cams.undistort_points(pixels, K_new=cams.K)
    w = all_of(mask, converged).astype(mx.float32)
    res = optim.refine_pnp(pose0, points, und, cams.K, w, loss=loss, loss_scale=scale, max_iters=iterations)
    good = mask.astype(mx.float32) * (1.0 if inlier is None else inlier.astype(mx.float32))

    def rms(pose: mx.array) -> mx.array:
        e2 = mx.sum(mx.square(cams.with_pose(pose).project(points).pixels - pixels), axis=-1)
        return mx.sqrt(mx.sum(mx.where(good > 0, e2, 0.0), axis=-1) / mx.maximum(mx.sum(good, axis=-1), 1.0))

    return RefineResult(res.x, rms(pose0), rms(res.x), res.iterations, res.converged)


def pose_errors(pose: mx.array, truth: mx.array) -> tuple[np.ndarray, np.ndarray]:
    """Rotation error (deg) and camera-centre distance (m) per view, (V,) each."""
    rel = lie.so3_compose(pose[..., :3, :3], lie.so3_inverse(truth[..., :3, :3]))
    rot = np.degrees(np.linalg.norm(np.array(lie.so3_log(rel), dtype=np.float64), axis=-1))
    c, c_true = (np.array(lie.se3_inverse(p)[..., :3, 3], dtype=np.float64) for p in (pose, truth))
    return rot, np.linalg.norm(c - c_true, axis=-1)


# ----- host-side checks -------------------------------------------------------------------------
def opencv_project(points: np.ndarray, cams: camera.Camera) -> np.ndarray:
    """Reference pixels (V, N, 2) from a loop of ``cv2.projectPoints`` (float64) over the cameras."""
    import cv2

    K, dist, rvec, tvec = (np.array(a, dtype=np.float64) for a in (cams.K, cams.dist, lie.so3_log(cams.R), cams.t))
    views = rvec.shape[0]
    K, dist = np.broadcast_to(K, (views, 3, 3)), np.broadcast_to(dist, (views, dist.shape[-1]))
    return np.stack([cv2.projectPoints(points, rvec[i], tvec[i], K[i], dist[i])[0].reshape(-1, 2)
                     for i in range(views)])


class Timing(NamedTuple):
    first_call: float  # s: the first call alone (compiles what it needs: mx.compile, CUDA kernels)
    steady: float  # s: median of the calls after it


def time_calls(fn: Callable[[], object], runs: int) -> Timing:
    """Time the first call of ``fn`` apart, then the median of ``runs`` more calls; ``fn`` must
    block until its result exists (``mx.eval`` inside)."""
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(times[0], float(np.median(times[1:])))


def time_reprojection(cams: camera.Camera, points: mx.array, runs: int, compiled: bool = True) -> dict[str, Timing]:
    """:class:`Timing` of batched ``Camera.project`` (eager and under ``mx.compile``) and of a loop
    of ``cv2.projectPoints`` over the views, all on the same (N, 3) points. Each path's first
    call (its compile time) is reported apart and never enters the steady-state median."""
    flat = points.reshape(-1, 3)
    mx.eval(flat)
    out = {"mlxgeom batched (eager)": time_calls(lambda: mx.eval(cams.project(flat)), runs)}
    if compiled:
        fn = mx.compile(lambda p, k, pose, dist: camera.project_points(p, k, pose, dist))
        out["mlxgeom batched (mx.compile)"] = time_calls(lambda: mx.eval(fn(flat, cams.K, cams.pose, cams.dist)), runs)
    pts = np.array(flat, dtype=np.float64)
    out["OpenCV loop of projectPoints"] = time_calls(lambda: opencv_project(pts, cams), runs)
    return out


# ----- figures (PIL, OpenCV's colour map, matplotlib) ------------------------------------------------
_GREEN, _RED, _BLACK, _GREY = (40, 220, 60), (235, 40, 40), (0, 0, 0), (150, 150, 150)
_FONT_PX = 15  # label height on the saved figures (drawn after any resize, so it stays readable)


def _tile(cells: list[np.ndarray], cols: int) -> np.ndarray:
    h, w = cells[0].shape[:2]
    rows = -(-len(cells) // cols)
    canvas = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for n, c in enumerate(cells):
        r, q = divmod(n, cols)
        canvas[r * h:(r + 1) * h, q * w:(q + 1) * w] = c
    return canvas


def _text(draw, xy: tuple[int, int], text: str, boxed: bool = False) -> int:
    """Draw ``text`` at ``xy`` (on a white box when ``boxed``); return the x where it ends."""
    from PIL import ImageFont

    font = ImageFont.load_default(size=_FONT_PX)
    box = draw.textbbox(xy, text, font=font)
    if boxed:
        draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(255, 255, 255))
    draw.text(xy, text, fill=_BLACK, font=font)
    return box[2]


def _resized(img: np.ndarray, size: tuple[int, int], nearest: bool = False):
    """The image as a PIL image resized to ``size`` (w, h): captions and marks go on after this."""
    from PIL import Image

    return Image.fromarray(img).resize(size, Image.NEAREST if nearest else Image.BILINEAR)


def _captioned(pil, label: str) -> np.ndarray:
    """``label`` drawn last (over any marks) in the top-left corner of a PIL image, as an array."""
    from PIL import ImageDraw

    _text(ImageDraw.Draw(pil), (8, 7), label, boxed=True)
    return np.asarray(pil)


def _footer(width: int, items: list[tuple[tuple[int, int, int] | None, str]]) -> np.ndarray:
    """A white legend strip: a dot of each colour followed by its text (no dot for None)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, _FONT_PX + 16), "white")
    d = ImageDraw.Draw(strip)
    x, y = 10, 8
    for colour, text in items:
        if colour is not None:
            d.ellipse((x, y + 3, x + 10, y + 13), fill=colour, outline=_GREY)
            x += 16
        x = _text(d, (x, y), text) + 28
    return np.asarray(strip)


def save_overlays(path: str, images: np.ndarray, grid: np.ndarray, pixels: np.ndarray, valid: np.ndarray,
                  visible: np.ndarray, names: list[str], every: int = 24, scale: float = 0.5) -> None:
    """View 0 with its sample grid, then each destination image with the reprojected samples
    (green: visible, red: occluded by the z-test), and a legend strip."""
    from PIL import Image, ImageDraw

    h, w = images.shape[1:3]
    size = (int(w * scale), int(h * scale))
    sel = np.zeros(grid.shape[:2], bool)
    sel[(grid[..., 1] % every == 0) & (grid[..., 0] % every == 0)] = True

    def dots(img, uv: np.ndarray, colour: tuple[int, int, int]) -> None:
        d = ImageDraw.Draw(img)
        for u, v in uv * scale:
            d.ellipse((u - 2, v - 2, u + 2, v + 2), fill=colour)

    src = _resized(images[0], size)
    dots(src, grid[sel & valid.any(0)], _GREEN)
    cells = [_captioned(src, f"{names[0]}: source samples")]
    for b in range(pixels.shape[0]):
        img = _resized(images[b + 1], size)
        dots(img, pixels[b][sel & valid[b] & ~visible[b]], _RED)
        dots(img, pixels[b][sel & visible[b]], _GREEN)
        cells.append(_captioned(img, f"{names[b + 1]}: reprojected from {names[0]}"))
    canvas = _tile(cells, 4)
    foot = _footer(canvas.shape[1], [(_GREEN, "visible: passes the z-test in that view"),
                                     (_RED, "occluded: a nearer surface lands on the same pixel"),
                                     (None, f"(every {every}th pixel of {names[0]} with depth)")])
    Image.fromarray(np.concatenate([canvas, foot])).save(path)


def _colormap(err: np.ndarray, vmax: float) -> np.ndarray:
    import cv2

    x = np.clip(err / vmax, 0, 1)
    return cv2.cvtColor(cv2.applyColorMap((255 * x).astype(np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def save_heatmaps(path: str, source: np.ndarray, error: np.ndarray, valid: np.ndarray, visible: np.ndarray,
                  names: list[str], vmax: float = 60.0, scale: float = 0.5) -> None:
    """Per-view photometric error in view 0's pixel grid (inferno, 0..vmax levels); white: not in
    the view or no depth, grey: occluded (z-test). A colour bar with ticks and a legend below."""
    from PIL import Image, ImageDraw

    size = (int(source.shape[1] * scale), int(source.shape[0] * scale))
    cells = [_captioned(_resized(source, size), f"{names[0]} (source)")]
    for b in range(error.shape[0]):
        rgb = _colormap(error[b], vmax)
        rgb[~valid[b]] = 255
        rgb[valid[b] & ~visible[b]] = _GREY
        med = np.median(error[b][visible[b]]) if visible[b].any() else float("nan")
        cells.append(_captioned(_resized(rgb, size, nearest=True), f"{names[b + 1]}: median {med:.1f} / 255"))
    canvas = _tile(cells, 4)
    width, margin = canvas.shape[1], 40
    bar = np.full((18, width, 3), 255, np.uint8)
    bar[:, margin:width - margin] = _colormap(np.linspace(0, vmax, width - 2 * margin)[None], vmax)
    ticks = Image.new("RGB", (width, _FONT_PX + 10), "white")
    d = ImageDraw.Draw(ticks)
    for v in np.linspace(0, vmax, 5):
        x = margin + int(v / vmax * (width - 2 * margin - 1))
        d.line((x, 0, x, 4), fill=_BLACK)
        _text(d, (x - 8, 5), f"{v:.0f}")
    foot = _footer(width, [(None, "mean |RGB difference| to the source colour, 0-255 levels (colour bar above);"),
                           ((255, 255, 255), "white: outside the view or no depth"), (_GREY, "grey: occluded")])
    Image.fromarray(np.concatenate([canvas, bar, np.asarray(ticks), foot])).save(path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, works without a display
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str, title: str, handles: list, labels: list[str], bottom: float) -> None:
    """A legend row under the panels, the title, then the file (110 dpi)."""
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def save_timing_chart(path: str, timing: dict[str, Timing], title: str) -> None:
    """Two panels of horizontal bars (log time axes): steady-state time per call, and the
    first call alone (compilation included), one colour per path with a full legend."""
    plt = _pyplot()
    names = list(timing)
    colours = [f"C{i}" for i in range(len(names))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.55 * len(names)), sharey=True)
    for ax, field, label in ((axes[0], "steady", "steady state: median time per call (ms)"),
                             (axes[1], "first_call", "first call alone, compilation included (ms)")):
        vals = [1e3 * getattr(timing[n], field) for n in names]
        bars = ax.barh(names, vals, color=colours)
        ax.bar_label(bars, [f"{v:.3g} ms" for v in vals], padding=3)
        ax.set_xscale("log")
        ax.set_xlim(min(vals) / 3, max(vals) * 8)
        ax.set_xlabel(label)
        ax.grid(axis="x", which="major", alpha=0.3)
    axes[0].invert_yaxis()
    axes[0].set_ylabel("implementation")
    _save_figure(fig, path, title, bars, names, 0.12)


def save_pose_chart(path: str, views: list[str], errors: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> None:
    """Rotation (deg) and camera-centre (cm) error per view, one bar per series on log axes
    with ticks; ``errors`` maps a series name to (rotation deg (V,), centre m (V,))."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    idx = np.arange(len(views))
    width = 0.8 / len(errors)
    for ax, part, unit, scale in ((axes[0], 0, "rotation error (deg)", 1.0), (axes[1], 1, "camera-centre error (cm)", 100.0)):
        for j, (name, err) in enumerate(errors.items()):
            ax.bar(idx + (j - (len(errors) - 1) / 2) * width, scale * np.asarray(err[part]), width, label=name,
                   color=f"C{j}")
        ax.set_yscale("log")
        ax.set_xticks(idx, [v.rsplit("_", 1)[-1] for v in views])
        ax.set_xlabel(f"destination view ({views[0].rsplit('_', 1)[0]}_NN)")
        ax.set_ylabel(f"{unit}, log scale")
        ax.grid(axis="y", which="both", alpha=0.3)
    _save_figure(fig, path, title, *axes[0].get_legend_handles_labels(), 0.07)


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


def _step(bar, i: int) -> None:
    """Mark the steps before ``i`` done and name step ``i`` (tqdm's description)."""
    bar.set_description_str(STEPS[i], refresh=False)
    bar.update(i - bar.n)


def run_demo(data_dir: str = DEFAULT_DATA, out_dir: str = DEFAULT_OUT, small: bool = False,
             progress: bool = True, stream: TextIO | None = None, compiled: bool | None = None) -> DemoResult:
    """Run the whole pipeline, write figures + ``report.txt`` into ``out_dir``; see the module doc.

    ``small`` (CI) unprojects every 4th pixel in each direction, times fewer runs and runs
    fewer LM iterations. ``compiled`` also times an ``mx.compile``-d projection; None (default)
    does so on the CPU only when not ``small``: there its first call takes a few seconds of
    g++, while on CUDA the first call's NVRTC compile took 10-50 s on an H200 for a ~2x gain
    over an eager call that already takes ~1 ms.
    """
    from tqdm import tqdm

    from . import __version__

    stream = sys.stdout if stream is None else stream
    bar = tqdm(total=len(STEPS), file=stream, disable=not progress, unit="step", ncols=90,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]")
    stride, runs = (4, 3) if small else (1, 7)
    os.makedirs(out_dir, exist_ok=True)
    stats: dict = {}

    _step(bar, 0)
    scene = load_scene(data_dir)
    cams = scene.cameras
    src, dst = cams.select(0), cams.select(slice(1, None))
    height, width = scene.depth.shape

    _step(bar, 1)
    grid = camera.pixel_grid(height, width)[::stride, ::stride]
    un = unproject_view(src, mx.array(scene.depth), grid)
    mx.eval(un)

    _step(bar, 2)
    proj = reproject(dst, un.points)
    valid = all_of(proj.valid, un.valid[None])
    mx.eval(proj, valid)

    _step(bar, 3)
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

    _step(bar, 4)
    pts_np = np.array(un.points, dtype=np.float64).reshape(-1, 3)
    ref = opencv_project(pts_np, dst).reshape(proj.pixels.shape)
    diff = np.linalg.norm(np.array(proj.pixels, dtype=np.float64) - ref, axis=-1)[valid_np]
    stats["opencv_max_px"], stats["opencv_median_px"] = float(diff.max()), float(np.median(diff))
    n_points = int(np.array(un.valid).sum())
    stats["points"], stats["projections"] = n_points, int(valid_np.sum())

    _step(bar, 5)
    if compiled is None:
        compiled = not small and mx.default_device() == mx.cpu
    timing = time_reprojection(dst, un.points, runs, compiled=compiled)
    stats["timing"] = timing

    _step(bar, 6)
    truth = dst.pose
    pose0 = perturb_poses(truth, 2.0, 0.05, seed=0)
    sl = slice(1, None)
    args = (mx.array(scene.matches_points[sl]), mx.array(scene.matches_pixels[sl]), mx.array(scene.matches_mask[sl]))
    iters = 10 if small else 15
    t0 = time.perf_counter()
    refined = refine_poses(dst, pose0, *args, loss="cauchy", scale=2.0, iterations=iters,
                           inlier=mx.array(scene.matches_inlier[sl]))
    mx.eval(refined)
    t_refine = time.perf_counter() - t0
    plain = refine_poses(dst, pose0, *args, loss=None, iterations=iters)
    mx.eval(plain)
    (rot0, pos0), (rot1, pos1), (rot2, pos2) = (pose_errors(p, truth) for p in (pose0, refined.pose, plain.pose))
    photo = {}
    for key, pose in (("ground truth", truth), ("perturbed", pose0), ("refined", refined.pose)):
        # Same source points for every pose: those visible (z-test) at the true poses.
        pr = reproject(dst.with_pose(pose), un.points)
        e = photometric_error(images[1:], pr, colours)
        m = all_of(pr.valid, visible)
        photo[key] = float(mx.sum(mx.where(m, e, 0)) / mx.maximum(mx.sum(m), 1))
    stats["refine"] = {"rot_before": rot0, "pos_before": pos0, "rot_after": rot1, "pos_after": pos1,
                       "rot_l2": rot2, "pos_l2": pos2, "seconds": t_refine, "photometric_mean": photo,
                       "rms_before": np.array(refined.initial_rms), "rms_after": np.array(refined.final_rms)}

    _step(bar, 7)
    names = scene.names
    files = [os.path.join(out_dir, f) for f in ("overlays.png", "error_heatmaps.png", "timing.png",
                                                 "pose_refinement.png", "report.txt")]
    save_overlays(files[0], scene.images, np.array(grid).astype(np.int64), np.array(proj.pixels), valid_np, vis_np,
                  names, every=max(24, stride))
    save_heatmaps(files[1], scene.images[0], err_np, valid_np, vis_np, names)
    save_timing_chart(files[2], timing, f"Reprojecting {n_points:,} points into {len(names) - 1} views on "
                                        f"{mx.default_device()} (steady state: median of {runs} calls)")
    save_pose_chart(files[3], [n.replace(".png", "") for n in names[1:]],
                    {"perturbed (start)": (rot0, pos0), "refined, Cauchy loss 2 px": (rot1, pos1),
                     "refined, no robust loss": (rot2, pos2)},
                    f"Pose errors before / after optim.refine_pnp on matches with 30 % outliers ({iters} LM iterations)")

    _step(bar, 8)
    report = format_report(stats, scene, timing, runs, stride, __version__)
    with open(files[4], "w") as fh:
        fh.write(report)
    bar.update(1)
    bar.close()
    return DemoResult(out_dir, files, report, stats)


def format_report(stats: dict, scene: Scene, timing: dict[str, Timing], runs: int, stride: int, version: str) -> str:
    """The text report (also printed by the CLI)."""
    o = scene.observation_offset
    r = stats["refine"]
    cv_loop = timing["OpenCV loop of projectPoints"].steady
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
        f"timing: the first call alone (compiles what it needs), then the median of {runs} more calls "
        "(mx.eval around results):",
        f"  {'':<32s} {'first call':>12s} {'steady state':>14s}",
        *[f"  {k:<32s} {1e3 * v.first_call:9.2f} ms {1e3 * v.steady:11.2f} ms" for k, v in timing.items()],
        f"  steady-state speed-up vs OpenCV loop: {cv_loop / timing['mlxgeom batched (eager)'].steady:.1f}x "
        "(eager)" + (f", {cv_loop / timing['mlxgeom batched (mx.compile)'].steady:.1f}x "
                     "(compiled)" if "mlxgeom batched (mx.compile)" in timing else ""),
        "",
        "pose refinement: 7 poses perturbed by 2 deg / 5 cm, refined on matches.npz (1 px noise, 30 % outliers) by",
        f"optim.refine_pnp (Levenberg-Marquardt on se(3)), Cauchy loss 2 px, all views in one batch ({r['seconds']:.2f} s)",
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
