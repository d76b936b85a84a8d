"""Relative pose between every pair of images of ``data/scene``, estimated in one batched call.

The COLMAP model's tracks give the correspondences of each image pair (keypoints with 1 px
noise); ``--outliers`` of them are replaced by random pixels. For all 28 pairs at once,
``epipolar.find_essential_matrix`` runs RANSAC with the five-point solver (lens distortion
removed through the ``camera.Camera``s) and ``epipolar.recover_pose`` picks the pose by
cheirality. Each estimate is compared with the model's ground truth ``T2 T1^-1``: rotation
error in degrees and the angle between the translation directions (two views fix t only up
to scale). With OpenCV installed, ``cv2.findEssentialMat`` + ``cv2.recoverPose`` run on the
same inputs for comparison.

Usage: ``python examples/relative_pose.py [--small] [--outliers 0.3] [--threshold 1.0]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import mlx.core as mx
import numpy as np

from mlxgeom import camera, epipolar

SCENE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "scene")


def pair_matches(model: camera.colmap.ColmapModel, ids: np.ndarray, pairs: list[tuple[int, int]], outliers: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels x1, x2 (P, N, 2) of the points both images of each pair see, padded to one N, and
    the mask (P, N) of real matches. COLMAP's pixel centres are shifted to OpenCV's (-0.5)."""
    tracks = []
    for i, j in pairs:
        a, b = model.images[int(ids[i])], model.images[int(ids[j])]
        where_b = {int(p): k for k, p in enumerate(b.point3D_ids) if p >= 0}
        common = [(k, where_b[int(p)]) for k, p in enumerate(a.point3D_ids) if int(p) in where_b]
        ka, kb = (np.array(c, dtype=np.int64) for c in zip(*common))
        tracks.append((a.xys[ka] - 0.5, b.xys[kb] - 0.5))
    n = max(len(t[0]) for t in tracks)
    x1, x2, mask = np.zeros((len(pairs), n, 2)), np.zeros((len(pairs), n, 2)), np.zeros((len(pairs), n), bool)
    for p, (a, b) in enumerate(tracks):
        bad = rng.random(len(b)) < outliers
        b = np.where(bad[:, None], rng.uniform([0, 0], [640, 480], b.shape), b)
        x1[p, : len(a)], x2[p, : len(b)], mask[p, : len(a)] = a, b, True
    return x1, x2, mask


def angle_errors(pose: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation error and translation-direction error in degrees, (P,) each."""
    # |R - G|_F = 2 sqrt(2) sin(angle / 2): accurate for small angles, unlike acos of the trace.
    chord = np.linalg.norm(pose[:, :3, :3] - truth[:, :3, :3], axis=(1, 2)) / (2 * np.sqrt(2))
    rot = np.degrees(2 * np.arcsin(np.clip(chord, 0, 1)))
    t, g = pose[:, :3, 3], truth[:, :3, 3]
    cos = np.sum(t * g, -1) / (np.linalg.norm(t, axis=-1) * np.linalg.norm(g, axis=-1))
    return rot, np.degrees(np.arccos(np.clip(cos, -1, 1)))


def opencv_poses(x1: np.ndarray, x2: np.ndarray, mask: np.ndarray, K: np.ndarray, dist: np.ndarray,
                 threshold: float) -> np.ndarray | None:
    """cv2.findEssentialMat + cv2.recoverPose per pair on undistorted pixels (None without OpenCV)."""
    try:
        import cv2
    except ImportError:
        return None
    poses = np.tile(np.eye(4), (len(x1), 1, 1))
    for p in range(len(x1)):
        a = cv2.undistortPoints(x1[p][mask[p]].reshape(-1, 1, 2), K, dist, P=K).reshape(-1, 2)
        b = cv2.undistortPoints(x2[p][mask[p]].reshape(-1, 1, 2), K, dist, P=K).reshape(-1, 2)
        E, inl = cv2.findEssentialMat(a, b, K, cv2.RANSAC, 0.999, threshold)
        if E is None:
            continue
        _, R, t, _ = cv2.recoverPose(E[:3], a, b, K, mask=inl)
        poses[p, :3, :3], poses[p, :3, 3] = R, t[:, 0]
    return poses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="first 6 pairs and 200 RANSAC trials (smoke test)")
    parser.add_argument("--outliers", type=float, default=0.3, help="fraction of matches replaced by random pixels")
    parser.add_argument("--threshold", type=float, default=1.0, help="RANSAC inlier threshold, pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = camera.colmap.read_model(os.path.join(SCENE, "sparse"), ext=".txt")
    cams, ids = camera.colmap.model_to_cameras(model)
    pairs = list(itertools.combinations(range(len(ids)), 2))[: 6 if args.small else None]
    x1, x2, mask = pair_matches(model, ids, pairs, args.outliers, np.random.default_rng(args.seed))
    first, second = (mx.array(np.array(s, dtype=np.int32)) for s in zip(*pairs))
    cam1, cam2 = cams.select(first), cams.select(second)
    truth = np.array(epipolar.relative_pose(cam1, cam2), dtype=np.float64)

    a, b, w = mx.array(x1, mx.float32), mx.array(x2, mx.float32), mx.array(mask)
    start = time.perf_counter()
    est = epipolar.find_essential_matrix(a, b, cam1, cam2, w.astype(mx.float32), method="ransac",
                                         threshold=args.threshold, max_trials=200 if args.small else 1000,
                                         key=mx.random.key(args.seed))
    rel = epipolar.recover_pose(est.E, a, b, cam1, cam2, mask=est.inliers & w)
    mx.eval(rel)
    elapsed = time.perf_counter() - start
    rot, trans = angle_errors(np.array(rel.pose, dtype=np.float64), truth)

    ref = opencv_poses(x1, x2, mask, np.array(cams.K[0], np.float64), np.array(cams.dist[0], np.float64),
                       args.threshold)
    ref_rot, ref_trans = angle_errors(ref, truth) if ref is not None else (None, None)
    print(f"{len(pairs)} image pairs, {args.outliers:.0%} outliers, one batched call: {elapsed * 1e3:.0f} ms "
          f"(first call includes tracing)")
    print(f"{'pair':>7} {'matches':>8} {'inliers':>8} {'in front':>8} {'rot err':>9} {'t err':>9}"
          + (f" {'cv2 rot':>9} {'cv2 t':>9}" if ref is not None else ""))
    for p, (i, j) in enumerate(pairs):
        row = (f"{i}-{j:<5} {int(mask[p].sum()):>8} {int(est.num_inliers[p]):>8} {int(rel.num_inliers[p]):>8} "
               f"{rot[p]:>8.3f}d {trans[p]:>8.3f}d")
        print(row + (f" {ref_rot[p]:>8.3f}d {ref_trans[p]:>8.3f}d" if ref is not None else ""))
    ok = np.array(rel.ok)
    print(f"ok {int(ok.sum())}/{len(pairs)}; median rotation error {np.median(rot):.3f} deg, "
          f"median translation direction error {np.median(trans):.3f} deg")
    if ref is not None:
        print(f"OpenCV: median rotation error {np.median(ref_rot):.3f} deg, "
              f"median translation direction error {np.median(ref_trans):.3f} deg")


if __name__ == "__main__":
    main()
