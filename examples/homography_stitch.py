"""Stitch two overlapping photographs with mlxgeom: batched RANSAC homography + warp_perspective.

OpenCV is used only to detect and match ORB features (on the CPU) and to read/write PNGs; the
homography estimation (RANSAC, DLT refit, SL(3) Levenberg-Marquardt) and the warping run in
mlxgeom, on MLX's default device.

    python examples/homography_stitch.py [--out mlxgeom-out/homography_stitch/stitched.png] [--small]
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import mlx.core as mx
import numpy as np

from mlxgeom import linalg
from mlxgeom.homography import find_homography, perspective_transform, warp_perspective

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "homography")


def match_orb(a: np.ndarray, b: np.ndarray, features: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) of cross-checked ORB matches: a[i] <-> b[i]."""
    orb = cv2.ORB_create(nfeatures=features)
    ka, da = orb.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), None)
    kb, db = orb.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY), None)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db)
    pa = np.array([ka[m.queryIdx].pt for m in matches], np.float32)
    pb = np.array([kb[m.trainIdx].pt for m in matches], np.float32)
    return pa, pb


def stitch(left: np.ndarray, right: np.ndarray, h_rl: mx.array) -> np.ndarray:
    """Warp both images into one canvas (left's frame, shifted) and average where they overlap."""
    hl, wl = left.shape[:2]
    hr, wr = right.shape[:2]
    corners = mx.array([[0, 0], [wr - 1, 0], [wr - 1, hr - 1], [0, hr - 1]], mx.float32)
    mapped = np.array(perspective_transform(corners, h_rl))
    lo = np.floor(np.minimum(mapped.min(0), 0)).astype(int)
    hi = np.ceil(np.maximum(mapped.max(0), [wl - 1, hl - 1])).astype(int)
    size = (int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1))
    shift = mx.array([[1.0, 0.0, -float(lo[0])], [0.0, 1.0, -float(lo[1])], [0.0, 0.0, 1.0]])
    mats = mx.stack([shift, linalg.matmul(shift, h_rl)])
    # Append an all-ones channel: its warp is the coverage mask used for blending.
    imgs = [np.concatenate([x.astype(np.float32), np.full(x.shape[:2] + (1,), 255.0, np.float32)], -1)
            for x in (left, right)]
    warped = [warp_perspective(mx.array(img), mats[i], size) for i, img in enumerate(imgs)]
    total = warped[0][..., :3] * warped[0][..., 3:] + warped[1][..., :3] * warped[1][..., 3:]
    weight = warped[0][..., 3:] + warped[1][..., 3:]
    out = mx.where(weight > 0, total / mx.maximum(weight, 1e-6), 0)
    return np.array(mx.clip(mx.round(out), 0, 255)).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("mlxgeom-out", "homography_stitch", "stitched.png"),
                    help="output PNG (default: %(default)s, the rule every example follows)")
    ap.add_argument("--small", action="store_true", help="half-size images and fewer trials (CI)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    left = cv2.imread(os.path.join(DATA, "left.png"), cv2.IMREAD_COLOR)
    right = cv2.imread(os.path.join(DATA, "right.png"), cv2.IMREAD_COLOR)
    if left is None or right is None:
        raise SystemExit(f"missing images in {DATA}: run data/homography/make_pair.py")
    if args.small:
        left, right = (cv2.resize(x, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for x in (left, right))
    p_left, p_right = match_orb(left, right, 1000 if args.small else 3000)
    res = find_homography(p_right, p_left, method="ransac", threshold=3.0,
                          max_trials=256 if args.small else 1024)
    mx.eval(res)
    if not res.ok.item():
        raise SystemExit("no reliable homography between the two images")
    print(f"{len(p_left)} ORB matches, {res.num_inliers.item()} inliers, "
          f"RMS reprojection error {res.residual.item():.2f} px")
    truth = np.loadtxt(os.path.join(DATA, "pair_truth.txt"))
    if args.small:
        truth = np.diag([0.5, 0.5, 1]) @ truth @ np.diag([2, 2, 1])
    grid = np.stack(np.meshgrid(np.linspace(0, right.shape[1] - 1, 8), np.linspace(0, right.shape[0] - 1, 8)), -1)
    grid = grid.reshape(-1, 2).astype(np.float32)
    est = np.array(perspective_transform(mx.array(grid), res.H))
    ref = cv2.perspectiveTransform(grid[None].astype(np.float64), truth)[0]
    print(f"mean distance to the ground-truth mapping over the right image: {np.linalg.norm(est - ref, axis=1).mean():.2f} px")
    pano = stitch(left, right, res.H)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, pano)
    print(f"wrote {pano.shape[1]}x{pano.shape[0]} panorama to {args.out} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
