"""Regenerate data/scene: a textured 3D room seen by several distorted cameras.

    python data/make_scene.py

Deterministic (fixed seeds). Writes, under data/scene/:

- ``images/view_XX.png``: 640x480 renders of a room (gravel floor, brick and coffee
  walls, a box wrapped in photographs) through OpenCV-distorted pinhole cameras;
- ``sparse/cameras.txt``, ``images.txt``, ``points3D.txt``: the ground truth as a COLMAP
  text model (OPENCV camera model, world-to-camera poses, 3D points with their tracks);
- ``depth_00.npy``: float32 z-depth in metres of view 0 (0 where no surface was hit);
- ``matches.npz``: per view, noisy 2D-3D matches with 30 % outliers and their labels
  (``view_XX_points3d``, ``view_XX_pixels``, ``view_XX_inlier``), pixels in OpenCV's
  convention (centre of the top-left pixel at (0, 0)); the COLMAP files use COLMAP's (0.5, 0.5).

This is an offline data script: it renders with numpy and OpenCV on the CPU.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "scene")
WIDTH, HEIGHT = 640, 480
FX = FY = 520.0
CX, CY = 319.5, 239.5
DIST = np.array([-0.08, 0.02, 0.001, -0.0005])  # OpenCV k1, k2, p1, p2 (COLMAP "OPENCV")
NUM_VIEWS = 8
NUM_POINTS = 3000
PIXEL_NOISE = 1.0
OUTLIER_RATIO = 0.3


def surfaces() -> list[dict]:
    """Textured rectangles: origin corner, two edge vectors spanning them, texture name."""

    def rect(origin, u, v, texture):
        return {"o": np.array(origin, float), "u": np.array(u, float), "v": np.array(v, float), "tex": texture}

    box_min, s = np.array([-0.45, -0.1, 0.0]), 0.9
    x, y, z = np.eye(3) * s
    return [
        rect([-3.0, -3.5, 0.0], [6.0, 0, 0], [0, 6.0, 0], "gravel"),  # floor z = 0
        rect([-3.0, 2.5, 2.6], [6.0, 0, 0], [0, 0, -2.6], "brick"),  # back wall y = 2.5
        rect([-3.0, -3.5, 2.6], [0, 6.0, 0], [0, 0, -2.6], "coffee"),  # left wall x = -3
        rect(box_min + z, x, -z, "astronaut"),  # box front (faces -y)
        rect(box_min + x + z, y, -z, "chelsea"),  # box right (faces +x)
        rect(box_min + y + z, -y, -z, "chelsea"),  # box left (faces -x)
        rect(box_min + z, x, y, "coffee"),  # box top
    ]


def look_at(center: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) of an OpenCV camera (x right, y down, z forward) at ``center``."""
    fwd = target - center
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    r = np.stack([right, down, fwd])
    return r, -r @ center


def cameras(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    target = np.array([0.0, 0.4, 0.5])
    poses = []
    for k, ang in enumerate(np.linspace(-45, 45, NUM_VIEWS)):
        a = np.deg2rad(ang + rng.uniform(-3, 3))
        radius = 3.0 + rng.uniform(-0.2, 0.2)
        center = np.array([radius * np.sin(a), 0.4 - radius * np.cos(a), 1.3 + 0.3 * np.sin(k)])
        poses.append(look_at(center, target + rng.normal(0, 0.05, 3)))
    return poses


def camera_rays(k: np.ndarray) -> np.ndarray:
    """Unit-z camera rays (H, W, 3) of every pixel centre, undoing the lens distortion."""
    u, v = np.meshgrid(np.arange(WIDTH, dtype=np.float64), np.arange(HEIGHT, dtype=np.float64))
    pix = np.stack([u, v], -1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
    xy = cv2.undistortPoints(pix, k, DIST, criteria=crit).reshape(HEIGHT, WIDTH, 2)
    return np.concatenate([xy, np.ones((HEIGHT, WIDTH, 1))], -1)


def intersect(rect: dict, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameter t (inf where missed) and (u, v) in [0, 1]^2 on the rectangle."""
    n = np.cross(rect["u"], rect["v"])
    denom = dirs @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((rect["o"] - origin) @ n) / denom
    hit = origin + t[..., None] * dirs - rect["o"]
    uu = hit @ rect["u"] / (rect["u"] @ rect["u"])
    vv = hit @ rect["v"] / (rect["v"] @ rect["v"])
    ok = (t > 1e-6) & (uu >= 0) & (uu <= 1) & (vv >= 0) & (vv <= 1) & np.isfinite(t)
    return np.where(ok, t, np.inf), np.stack([uu, vv], -1)


def render(r: np.ndarray, t: np.ndarray, rays_cam: np.ndarray, textures: dict) -> tuple[np.ndarray, np.ndarray]:
    """Colour image (H, W, 3) uint8 and z-depth (H, W) float32 of one view."""
    center = -r.T @ t
    dirs = rays_cam @ r  # world directions, scaled so that the camera z component is 1
    best_t = np.full((HEIGHT, WIDTH), np.inf)
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    for rect in surfaces():
        tt, uv = intersect(rect, center, dirs)
        closer = tt < best_t
        tex = textures[rect["tex"]]
        th, tw = tex.shape[:2]
        mx_ = (uv[..., 0] * (tw - 1)).astype(np.float32)
        my_ = (uv[..., 1] * (th - 1)).astype(np.float32)
        sampled = cv2.remap(tex, mx_, my_, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        image[closer] = sampled[closer]
        best_t = np.where(closer, tt, best_t)
    depth = np.where(np.isfinite(best_t), best_t, 0.0).astype(np.float32)  # rays have z = 1
    return np.clip(image, 0, 255).astype(np.uint8), depth


def sample_points(rng: np.random.Generator) -> np.ndarray:
    rects = surfaces()
    areas = np.array([np.linalg.norm(np.cross(s["u"], s["v"])) for s in rects])
    which = rng.choice(len(rects), NUM_POINTS, p=areas / areas.sum())
    uv = rng.uniform(0.02, 0.98, (NUM_POINTS, 2))
    return np.stack([rects[i]["o"] + a * rects[i]["u"] + b * rects[i]["v"] for i, (a, b) in zip(which, uv)])


def rotation_to_quaternion_wxyz(r: np.ndarray) -> np.ndarray:
    rvec, _ = cv2.Rodrigues(r)
    angle = np.linalg.norm(rvec)
    axis = rvec.ravel() / angle if angle > 0 else np.zeros(3)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def main() -> None:
    rng = np.random.default_rng(2026)
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "sparse"), exist_ok=True)
    textures = {
        name: cv2.cvtColor(cv2.imread(os.path.join(HERE, "textures", f"{name}.png")), cv2.COLOR_BGR2RGB).astype(np.float32)
        for name in ("astronaut", "brick", "chelsea", "coffee", "gravel")
    }
    k = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1.0]])
    rays = camera_rays(k)
    poses = cameras(rng)
    points = sample_points(rng)
    tracks: dict[int, list[tuple[int, int]]] = {i: [] for i in range(NUM_POINTS)}
    colors = np.zeros((NUM_POINTS, 3), np.uint8)
    colored = np.zeros(NUM_POINTS, bool)
    image_lines, matches = [], {}
    for view, (r, t) in enumerate(poses):
        image, depth = render(r, t, rays, textures)
        name = f"view_{view:02d}.png"
        cv2.imwrite(os.path.join(OUT, "images", name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if view == 0:
            np.save(os.path.join(OUT, "depth_00.npy"), depth)
        pix, _ = cv2.projectPoints(points, cv2.Rodrigues(r)[0], t, k, DIST)
        pix = pix.reshape(-1, 2)
        z = points @ r[2] + t[2]
        inside = (pix[:, 0] >= 0) & (pix[:, 0] <= WIDTH - 1) & (pix[:, 1] >= 0) & (pix[:, 1] <= HEIGHT - 1) & (z > 0)
        ui, vi = np.clip(np.nan_to_num(np.round(pix), nan=0.0), 0, [WIDTH - 1, HEIGHT - 1]).astype(int).T
        visible = np.flatnonzero(inside & (np.abs(depth[vi, ui] - z) < 0.02))
        unseen = visible[~colored[visible]]
        colors[unseen] = image[vi[unseen], ui[unseen]]
        colored[unseen] = True
        noisy = pix[visible] + rng.normal(0, PIXEL_NOISE, (len(visible), 2))
        obs = []
        for j, (pid, xy) in enumerate(zip(visible, noisy)):
            tracks[int(pid)].append((view + 1, j))
            obs.append(f"{xy[0] + 0.5:.4f} {xy[1] + 0.5:.4f} {pid + 1}")  # COLMAP: pixel centres at +0.5
        q = rotation_to_quaternion_wxyz(r)
        image_lines.append(f"{view + 1} {' '.join(f'{x:.12f}' for x in (*q, *t))} 1 {name}\n{' '.join(obs)}")
        inlier = rng.uniform(size=len(visible)) >= OUTLIER_RATIO
        pixels = np.where(inlier[:, None], noisy, rng.uniform([0, 0], [WIDTH - 1, HEIGHT - 1], (len(visible), 2)))
        matches[f"view_{view:02d}_points3d"] = points[visible].astype(np.float32)
        matches[f"view_{view:02d}_pixels"] = pixels.astype(np.float32)
        matches[f"view_{view:02d}_inlier"] = inlier
    np.savez_compressed(os.path.join(OUT, "matches.npz"), **matches)
    write_colmap(k, image_lines, points, tracks, colors)


def write_colmap(k, image_lines, points, tracks, colors) -> None:
    sparse = os.path.join(OUT, "sparse")
    # COLMAP puts the centre of the top-left pixel at (0.5, 0.5), OpenCV at (0, 0).
    params = f"{k[0, 0]} {k[1, 1]} {k[0, 2] + 0.5} {k[1, 2] + 0.5} " + " ".join(f"{d}" for d in DIST)
    with open(os.path.join(sparse, "cameras.txt"), "w") as f:
        f.write("# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n")
        f.write(f"# Number of cameras: 1\n1 OPENCV {WIDTH} {HEIGHT} {params}\n")
    with open(os.path.join(sparse, "images.txt"), "w") as f:
        f.write("# Image list with two lines of data per image:\n")
        f.write("#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n#   POINTS2D[] as (X, Y, POINT3D_ID)\n")
        f.write(f"# Number of images: {len(image_lines)}\n")
        f.write("\n".join(image_lines) + "\n")
    with open(os.path.join(sparse, "points3D.txt"), "w") as f:
        f.write("# 3D point list with one line of data per point:\n")
        f.write("#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n")
        f.write(f"# Number of points: {len(points)}\n")
        for i, (p, c) in enumerate(zip(points, colors)):
            track = " ".join(f"{img} {idx}" for img, idx in tracks[i])
            f.write(f"{i + 1} {p[0]:.9f} {p[1]:.9f} {p[2]:.9f} {c[0]} {c[1]} {c[2]} 0 {track}\n")


if __name__ == "__main__":
    main()
