"""Incremental structure from motion on ``data/scene``: two-view start, PnP registration, triangulation, BA.

The COLMAP model's tracks are the correspondences (keypoints with 1 px noise; ``--outliers`` of
the observations are replaced by random pixels) and its camera gives the intrinsics and lens
distortion; the poses and points are what is reconstructed, with the public API only:

1. every image pair at once: ``find_essential_matrix(method="ransac")`` + ``recover_pose``; the
   pair with the most inliers among those with a median triangulation angle of ``--min-angle``
   degrees starts the model (``triangulate_points`` of its inliers, baseline 1);
2. the image that sees the most triangulated tracks is registered by ``solve_pnp_ransac``;
   its non-inlier observations are dropped, tracks seen by >= 2 registered images are
   triangulated (views that reproject beyond ``--threshold`` removed, then triangulated again);
3. ``bundle_adjust`` (Huber loss) after every ``--ba-every`` registrations drops the observations
   beyond the threshold and restores those within it (track completion); at the end
   ``sfm.problem_to_model`` makes a COLMAP model that ``sfm.bundle_adjust_model`` adjusts once more
   (Cauchy loss) and ``colmap.write_model`` writes.

The result is compared with the ground truth after a similarity alignment of the camera
centres (Umeyama, numpy): rotation and position error per image, point RMS and median. Where
pycolmap imports, two references: ``pycolmap.bundle_adjustment`` (Ceres) of the same model before
the final BA, and pycolmap's own pipeline (``geometric_verification`` + ``incremental_mapping``) on
a database of the same keypoints and matches. Writes ``sparse/`` (COLMAP text, the result),
``initial/`` (before the final BA), ``pycolmap_ba/``, ``pycolmap_sfm/`` (with pycolmap's log), ``top_view.png``,
``reprojection_errors.png`` and ``report.txt`` under ``--out``.

Usage: ``python examples/reconstruct.py [--small] [--outliers 0.1] [--out mlxgeom-out/reconstruct/]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
from typing import Any

import mlx.core as mx
import numpy as np

import mlxgeom
from mlxgeom import camera, sfm

SCENE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "scene")
DEFAULT_OUT = os.path.join("mlxgeom-out", "reconstruct", "")
CANDIDATE_PAIRS = 10  # the initial pair is sought among the pairs sharing the most tracks
# The final BA's loss: Cauchy at 1 px, in mlxgeom and in the pycolmap (Ceres) reference alike. Wrong
# observations of two-view tracks pass every threshold (the point moves to fit them); on the small
# run a squared loss leaves the cameras 0.25 deg / 3.5 mm off, Cauchy 0.07 deg / 1.9 mm.
FINAL_LOSS, FINAL_LOSS_SCALE = "cauchy", 1.0


# ----- data ---------------------------------------------------------------------------------------
def load_tracks(model: camera.colmap.ColmapModel, outliers: float, rng: np.random.Generator) -> dict[str, Any]:
    """Tracks as dense (T, I) tables: pixels (T, I, 2) in mlxgeom's convention, seen (T, I), and
    whether the observation is a true one (False where ``outliers`` replaced it by a random pixel)."""
    cams, ids = camera.colmap.model_to_cameras(model)
    kp = camera.colmap.model_keypoints(model, ids)
    px, valid, row = np.array(kp.pixels, np.float64), np.array(kp.valid), np.array(kp.point_index)
    num_tracks, num_images = len(model.points3D), len(ids)
    pixels, seen = np.zeros((num_tracks, num_images, 2)), np.zeros((num_tracks, num_images), bool)
    img, key = np.nonzero(valid & (row >= 0))
    pixels[row[img, key], img], seen[row[img, key], img] = px[img, key], True
    size = np.array(cams.size[0], np.float64)
    bad = seen & (rng.random(seen.shape) < outliers)
    pixels[bad] = rng.uniform([0, 0], size, (int(bad.sum()), 2))
    # The lens without the ground-truth poses: the intrinsics are known, the poses are not.
    lens = camera.Camera(cams.K, dist=cams.dist, size=cams.size)
    return {"pixels": pixels, "seen": seen, "true": seen & ~bad, "lens": lens, "ids": ids,
            "names": [model.images[int(i)].name for i in ids], "truth_poses": np.array(cams.pose, np.float64),
            "truth_points": np.array(camera.colmap.model_points(model, dtype=mx.float32)[1], np.float64)}


# ----- the pipeline -------------------------------------------------------------------------------
class Reconstruction:
    """The growing model: poses of the registered images, points of the triangulated tracks, and
    the observations still trusted (``use`` (T, I))."""

    def __init__(self, data: dict[str, Any], threshold: float, min_angle: float, seed: int):
        self.px, self.lens, self.thr, self.min_angle = data["pixels"], data["lens"], threshold, min_angle
        self.seen, self.use = data["seen"], data["seen"].copy()
        self.poses = np.tile(np.eye(4), (self.use.shape[1], 1, 1))
        self.registered: list[int] = []
        self.points = np.zeros((self.use.shape[0], 3))
        self.has_point = np.zeros(self.use.shape[0], bool)
        # Each pose and point as first estimated (PnP, triangulation), before any BA refined it.
        self.first_poses, self.first_points = self.poses.copy(), self.points.copy()
        self.key = mx.random.key(seed)
        self.log: list[str] = []

    def next_key(self) -> mx.array:
        self.key, sub = mx.random.split(self.key)
        return sub

    def initial_pair(self) -> tuple[int, int]:
        """Both views of the pair with the most essential-matrix inliers whose points subtend a
        median angle >= min_angle (the candidate pairs in one batched RANSAC call; 128 trials
        find an outlier-free 5-point sample with probability 0.999 up to ~35 % outliers)."""
        pairs = list(itertools.combinations(range(self.use.shape[1]), 2))
        shared = [int(np.sum(self.use[:, i] & self.use[:, j])) for i, j in pairs]
        pairs = [pairs[p] for p in np.argsort(shared)[::-1][:CANDIDATE_PAIRS]]
        common = [np.flatnonzero(self.use[:, i] & self.use[:, j]) for i, j in pairs]
        n = max(len(c) for c in common)
        x1, x2, mask = np.zeros((len(pairs), n, 2)), np.zeros((len(pairs), n, 2)), np.zeros((len(pairs), n), bool)
        for p, ((i, j), c) in enumerate(zip(pairs, common)):
            x1[p, : len(c)], x2[p, : len(c)], mask[p, : len(c)] = self.px[c, i], self.px[c, j], True
        first, second = (mx.array(np.array(s, np.int32)) for s in zip(*pairs))
        cam1, cam2 = self.lens.select(first), self.lens.select(second)
        a, b, w = mx.array(x1, mx.float32), mx.array(x2, mx.float32), mx.array(mask)
        est = mlxgeom.find_essential_matrix(a, b, cam1, cam2, w.astype(mx.float32), method="ransac",
                                            threshold=self.thr / 2, max_trials=128, key=self.next_key())
        rel = mlxgeom.recover_pose(est.E, a, b, cam1, cam2, mask=est.inliers & w)
        pose, pts = np.array(rel.pose, np.float64), np.array(rel.points, np.float64)
        inl = np.array(rel.inliers)
        # Angle at each point between the rays from the two centres (0 and -R^T t, camera-1 frame).
        c2 = -np.einsum("pji,pj->pi", pose[:, :3, :3], pose[:, :3, 3])
        ray1, ray2 = pts, pts - c2[:, None]
        cos = np.sum(ray1 * ray2, -1) / np.maximum(np.linalg.norm(ray1, axis=-1) * np.linalg.norm(ray2, axis=-1), 1e-12)
        angle = np.array([np.median(np.degrees(np.arccos(np.clip(cos[p][inl[p]], -1, 1)))) if inl[p].any() else 0.0
                          for p in range(len(pairs))])
        score = np.where((angle >= self.min_angle) & np.array(rel.ok), inl.sum(-1), -1)
        best = int(np.argmax(score))
        i, j = pairs[best]
        self.poses[j] = self.first_poses[j] = pose[best]
        self.registered = [i, j]
        self.use[common[best][~inl[best, : len(common[best])]], j] = False  # outliers of the pair's E / cheirality
        self.log.append(f"initial pair {i}-{j}: {int(inl[best].sum())}/{len(common[best])} inliers, "
                        f"median triangulation angle {angle[best]:.1f} deg")
        return i, j

    def cameras(self, reg: np.ndarray) -> camera.Camera:
        """The (V,) cameras of the images ``reg`` at their current poses."""
        return self.lens.select(mx.array(reg.astype(np.int32))).with_pose(mx.array(self.poses[reg], mx.float32))

    def reprojection(self, points: np.ndarray, tracks: np.ndarray, reg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel errors (N, V) of the points (N, 3) of ``tracks`` in the registered images ``reg``,
        and whether each projection is valid (in front of the camera)."""
        cams = self.cameras(reg)
        proj = cams.project(mx.array(points, mx.float32)[None])  # (V, N, 2)
        px = np.array(proj.pixels, np.float64).transpose(1, 0, 2)
        return np.linalg.norm(px - self.px[tracks][:, reg], axis=-1), np.array(proj.valid).T

    def triangulate(self, tracks: np.ndarray) -> int:
        """Triangulate ``tracks`` from their trusted registered views; keep the points that reproject
        within the threshold in >= 2 views at an angle >= min_angle / 4. Returns the count kept."""
        reg = np.array(self.registered)
        cams = self.cameras(reg)
        px = mx.array(self.px[tracks][:, reg], mx.float32)
        for _ in range(2):  # triangulate, drop the views beyond the threshold, triangulate again
            mask = self.use[tracks][:, reg]
            tri = mlxgeom.triangulate_points(cams, px, mask=mx.array(mask), refine=True)
            err, valid = self.reprojection(np.array(tri.points, np.float64), tracks, reg)
            bad = mask & ~((err < self.thr) & valid)
            self.use[tracks[:, None], reg[None]] &= ~bad
        x, ok = np.array(tri.points, np.float64), np.array(tri.ok) & ~bad.any(-1) & (mask.sum(-1) >= 2)
        centres = -np.einsum("vji,vj->vi", self.poses[reg, :3, :3], self.poses[reg, :3, 3])
        rays = x[:, None] - centres[None]
        rays /= np.maximum(np.linalg.norm(rays, axis=-1, keepdims=True), 1e-12)
        cos = np.einsum("nvk,nwk->nvw", rays, rays)
        cos = np.where(mask[:, :, None] & mask[:, None, :], cos, 1.0)
        ok &= np.degrees(np.arccos(np.clip(cos.min(axis=(1, 2)), -1, 1))) >= self.min_angle / 4
        self.points[tracks[ok]] = self.first_points[tracks[ok]] = x[ok]
        self.has_point[tracks[ok]] = True
        return int(ok.sum())

    def register(self, image: int) -> str:
        """PnP-RANSAC of ``image`` against the triangulated tracks it sees."""
        tracks = np.flatnonzero(self.has_point & self.use[:, image])
        res = mlxgeom.solve_pnp_ransac(mx.array(self.points[tracks], mx.float32),
                                       mx.array(self.px[tracks, image], mx.float32), self.lens.select(image),
                                       threshold=self.thr, key=self.next_key())
        inl = np.array(res.inliers)
        if not bool(res.ok):
            self.use[:, image] = False
            return f"image {image}: PnP failed ({len(tracks)} matches)"
        self.poses[image] = self.first_poses[image] = np.array(res.pose, np.float64)
        self.use[tracks[~inl], image] = False
        self.registered.append(image)
        return f"image {image}: {int(inl.sum())}/{len(tracks)} PnP inliers"

    def observations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """BA arrays of the trusted observations of triangulated tracks in registered images:
        (track of each point (P,), pixels (O, 2), point_index (O,), camera_index (O,)) with cameras
        in ``self.registered`` order."""
        reg = np.array(self.registered)
        tracks = np.flatnonzero(self.has_point)
        row = np.full(self.use.shape[0], -1)
        row[tracks] = np.arange(len(tracks))
        t, v = np.nonzero(self.use[tracks][:, reg])
        return tracks, self.px[tracks[t], reg[v]], row[tracks[t]], v

    def bundle_adjust(self, max_iters: int = 20) -> str:
        """Huber BA of everything registered, then the tracks are completed: every observation of a
        triangulated track in a registered image is trusted iff it now reprojects within the
        threshold (observations PnP rejected against a point from a short baseline come back, those
        still beyond it go); points left with fewer than 2 observations are forgotten."""
        reg = np.array(self.registered)
        tracks, obs, pidx, cidx = self.observations()
        res = mlxgeom.bundle_adjust(self.lens.select(0), mx.array(self.poses[reg], mx.float32),
                                    mx.array(self.points[tracks], mx.float32), mx.array(obs, mx.float32),
                                    point_index=pidx, camera_index=cidx, loss="huber", loss_scale=self.thr / 2,
                                    max_iters=max_iters)
        self.poses[reg] = np.array(res.poses, np.float64)
        self.points[tracks] = np.array(res.points, np.float64)
        err, valid = self.reprojection(self.points[tracks], tracks, reg)
        before = self.use[tracks][:, reg]
        after = self.seen[tracks][:, reg] & (err < self.thr) & valid
        self.use[tracks[:, None], reg[None]] = after
        self.has_point &= self.use[:, reg].sum(-1) >= 2
        return (f"BA of {len(reg)} images, {len(tracks)} points: cost {float(res.initial_cost):.1f} -> "
                f"{float(res.cost):.1f} in {int(res.iterations)} iterations; {int((before & ~after).sum())} "
                f"observations dropped, {int((after & ~before).sum())} restored")


def reconstruct(data: dict[str, Any], threshold: float, min_angle: float, ba_every: int, seed: int) -> Reconstruction:
    """Two-view start, then register the image seeing the most points, triangulate, BA every few images."""
    rec = Reconstruction(data, threshold, min_angle, seed)
    i, j = rec.initial_pair()
    rec.log.append(f"triangulated {rec.triangulate(np.flatnonzero(rec.use[:, i] & rec.use[:, j]))} points")
    rec.log.append(rec.bundle_adjust())
    since_ba = 0
    while True:
        left = [k for k in range(rec.use.shape[1]) if k not in rec.registered and rec.use[:, k].any()]
        if not left:
            break
        counts = [int((rec.has_point & rec.use[:, k]).sum()) for k in left]
        rec.log.append(rec.register(left[int(np.argmax(counts))]))
        new = np.flatnonzero(~rec.has_point & (rec.use[:, rec.registered].sum(-1) >= 2))
        rec.log.append(f"  triangulated {rec.triangulate(new)} of {len(new)} new tracks")
        since_ba += 1
        if ba_every and since_ba >= ba_every:
            rec.log.append("  " + rec.bundle_adjust())
            since_ba = 0
    if since_ba:  # the last images' outliers go before the final BA
        rec.log.append(rec.bundle_adjust())
    return rec


def to_model(rec: Reconstruction, names: list[str],
             first: bool = False) -> tuple[camera.colmap.ColmapModel, np.ndarray, np.ndarray]:
    """The reconstruction as a COLMAP model (images in index order, named as the input's), with the
    input image index of each model image and the track of each model point. ``first``: poses and
    points as first estimated, before bundle adjustment."""
    order = np.array(sorted(rec.registered))
    rec.registered = list(order)  # BA arrays in index order: model image k + 1 is input image order[k]
    tracks, obs, pidx, cidx = rec.observations()
    poses, points = (rec.first_poses, rec.first_points) if first else (rec.poses, rec.points)
    model = sfm.problem_to_model(rec.lens.select(0), mx.array(poses[order], mx.float32),
                                 mx.array(points[tracks], mx.float32), mx.array(obs, mx.float32), cidx, pidx)
    images = {k: im._replace(name=names[order[k - 1]]) for k, im in model.images.items()}
    return camera.colmap.ColmapModel(model.cameras, images, model.points3D), order, tracks


# ----- evaluation ---------------------------------------------------------------------------------
def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum |s R src + t - dst|^2 (Umeyama 1991, eqs. 40-42)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    e = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ e @ vt
    s = float(np.trace(np.diag(d) @ e) / np.mean(np.sum(a * a, -1)))
    return s, r, mu_d - s * r @ mu_s


def model_arrays(model: camera.colmap.ColmapModel) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera poses (images in id order) and points (point ids in order) of a model, in
    float64 numpy (the evaluation must not add float32 rounding to sub-0.01-degree errors)."""
    poses = np.tile(np.eye(4), (len(model.images), 1, 1))
    for n, i in enumerate(sorted(model.images)):
        w, x, y, z = np.asarray(model.images[i].qvec, np.float64) / np.linalg.norm(model.images[i].qvec)
        poses[n, :3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
        poses[n, :3, 3] = model.images[i].tvec
    return poses, np.array([model.points3D[p].xyz for p in sorted(model.points3D)], np.float64).reshape(-1, 3)


def compare(poses: np.ndarray, points: np.ndarray, truth_poses: np.ndarray, truth_points: np.ndarray) -> dict[str, Any]:
    """Errors after aligning the camera centres to the truth: rotation (deg) and position per image,
    point RMS, the latter two also relative to the scene size (RMS distance of the true points from
    their centroid)."""
    centre = lambda p: -np.einsum("cji,cj->ci", p[:, :3, :3], p[:, :3, 3])  # noqa: E731
    s, r, t = umeyama(centre(poses), centre(truth_poses))
    # World-to-camera R_c becomes R_c r^T in the truth's frame; |A - B|_F = 2 sqrt(2) sin(angle / 2)
    # is accurate for small angles, unlike arccos of the trace.
    chord = np.linalg.norm(poses[:, :3, :3] @ r.T - truth_poses[:, :3, :3], axis=(1, 2)) / (2 * np.sqrt(2))
    rot = np.degrees(2 * np.arcsin(np.clip(chord, 0, 1)))
    pos = np.linalg.norm(s * centre(poses) @ r.T + t - centre(truth_poses), axis=-1)
    aligned = s * points @ r.T + t
    scene = float(np.sqrt(np.mean(np.sum((truth_points - truth_points.mean(0)) ** 2, -1))))
    point_err = np.linalg.norm(aligned - truth_points, axis=-1)
    return {"rot": rot, "pos": pos, "point_rms": float(np.sqrt(np.mean(point_err**2))),
            "point_median": float(np.median(point_err)), "scene": scene, "aligned": aligned,
            "centres": s * centre(poses) @ r.T + t, "axes": np.einsum("cji,ik->cjk", poses[:, :3, :3], r.T)}


def rms(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(errors**2)))


def reprojection_errors(model: camera.colmap.ColmapModel) -> np.ndarray:
    """Pixel reprojection error of every observation of a model (one zero-iteration BA)."""
    res = sfm.bundle_adjust_model(model, max_iters=0)[1]
    return np.linalg.norm(np.array(res.residual, np.float64), axis=-1)[np.array(res.valid)]


@contextlib.contextmanager
def stderr_to(path: str):
    """Send file descriptor 2 to ``path`` for the block: COLMAP's C++ log (glog, Ceres) goes to a
    file next to its model instead of the console or the notebook."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def pycolmap_adjust(model_dir: str) -> tuple[camera.colmap.ColmapModel, float] | None:
    """pycolmap's (Ceres) bundle adjustment of the model in ``model_dir``, intrinsics fixed as ours;
    None without pycolmap."""
    try:
        import pycolmap
    except ImportError:
        return None
    rec = pycolmap.Reconstruction(model_dir)
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = options.refine_principal_point = options.refine_extra_params = False
    options.print_summary = False
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY  # Ceres' CauchyLoss(a): a^2 log(1 + s / a^2)
    options.ceres.loss_function_scale = FINAL_LOSS_SCALE
    out = os.path.join(model_dir, "..", "pycolmap_ba")
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    with stderr_to(os.path.join(out, "pycolmap.log")):
        pycolmap.bundle_adjustment(rec, options)
    seconds = time.perf_counter() - start
    rec.write_text(out)
    return camera.colmap.read_model(out, ext=".txt"), seconds


def pycolmap_incremental(data: dict[str, Any], camera_model: camera.colmap.ColmapCamera, out: str,
                         images: str) -> dict[str, Any] | None:
    """pycolmap's own incremental mapper on the same observations (outliers included): keypoints and
    the tracks' pairwise matches in a database, ``geometric_verification``, ``incremental_mapping``
    with the intrinsics fixed. Returns its poses by input image index, its points and the truth row
    of each (the majority track of its observations: COLMAP re-chains tracks from the matches);
    None without pycolmap or when it reconstructs nothing."""
    try:
        import pycolmap
    except ImportError:
        return None
    os.makedirs(out, exist_ok=True)
    db_path = os.path.join(out, "database.db")
    if os.path.exists(db_path):
        os.remove(db_path)
    seen = data["seen"]
    tracks_of = [np.flatnonzero(seen[:, i]) for i in range(seen.shape[1])]
    db = pycolmap.Database.open(db_path)
    db.write_camera(pycolmap.Camera(model=camera_model.model, width=camera_model.width, height=camera_model.height,
                                    params=camera_model.params, camera_id=1, has_prior_focal_length=True),
                    use_camera_id=True)
    key_of = np.full(seen.shape, -1)
    for i, (name, tracks) in enumerate(zip(data["names"], tracks_of)):
        db.write_image(pycolmap.Image(name=name, camera_id=1, image_id=i + 1), use_image_id=True)
        db.write_keypoints(i + 1, (data["pixels"][tracks, i] + 0.5).astype(np.float32))  # COLMAP's pixel centres
        key_of[tracks, i] = np.arange(len(tracks))
    for i, j in itertools.combinations(range(seen.shape[1]), 2):
        both = seen[:, i] & seen[:, j]
        db.write_matches(i + 1, j + 1, np.stack([key_of[both, i], key_of[both, j]], 1).astype(np.uint32))
    db.close()
    options = pycolmap.IncrementalPipelineOptions()
    options.ba_refine_focal_length = options.ba_refine_principal_point = options.ba_refine_extra_params = False
    options.random_seed = 0
    start = time.perf_counter()
    with stderr_to(os.path.join(out, "pycolmap.log")):
        pycolmap.geometric_verification(db_path)
        recs = pycolmap.incremental_mapping(db_path, images, out, options)
    seconds = time.perf_counter() - start
    if not recs:
        return None
    best = max(recs, key=lambda k: recs[k].num_reg_images())
    model = camera.colmap.read_model(os.path.join(out, str(best)))  # incremental_mapping wrote it there
    poses, points = model_arrays(model)
    index = [data["names"].index(model.images[i].name) for i in sorted(model.images)]
    rows = []
    for pid in sorted(model.points3D):
        pt = model.points3D[pid]
        votes = [tracks_of[int(i) - 1][int(k)] for i, k in zip(pt.image_ids, pt.point2D_idxs)]
        rows.append(np.bincount(votes).argmax())
    return {"poses": dict(zip(index, poses)), "points": points, "rows": np.array(rows, np.int64), "seconds": seconds}


# ----- figures ------------------------------------------------------------------------------------
def save_figures(out: str, ours: dict[str, Any], truth_poses: np.ndarray, truth_points: np.ndarray,
                 before: np.ndarray, after: np.ndarray) -> None:
    # Figure without pyplot: no backend switch (a notebook importing this keeps its inline plots).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    ax.scatter(truth_points[:, 0], truth_points[:, 1], s=2, c="0.75", label="true points")
    ax.scatter(ours["aligned"][:, 0], ours["aligned"][:, 1], s=1, c="tab:blue", label="reconstructed points")
    true_c = -np.einsum("cji,cj->ci", truth_poses[:, :3, :3], truth_poses[:, :3, 3])
    for c, axes, colour, size, label in ((true_c, truth_poses[:, :3, :3], "k", 140, "true cameras"),
                                         (ours["centres"], ours["axes"], "tab:red", 30, "reconstructed cameras")):
        ax.scatter(c[:, 0], c[:, 1], facecolors="none" if size > 100 else colour, edgecolors=colour, marker="^",
                   s=size, label=label)
        ax.quiver(c[:, 0], c[:, 1], axes[:, 2, 0], axes[:, 2, 1], color=colour, scale=12, width=0.004)
    ax.set(xlabel="x (m)", ylabel="y (m)", title="Seen from above (aligned to the truth)", aspect="equal")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "top_view.png"), dpi=110)

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    bins = np.linspace(0, max(np.percentile(before, 99.5), 1.0), 60)
    ax.hist(np.clip(before, 0, bins[-1]), bins, alpha=0.6,
            label=f"as first estimated, no BA (RMS {rms(before):.3f} px)")
    ax.hist(np.clip(after, 0, bins[-1]), bins, alpha=0.6, label=f"after bundle adjustment (RMS {rms(after):.3f} px)")
    ax.set(xlabel="reprojection error (px)", ylabel="observations", title="Reprojection errors")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "reprojection_errors.png"), dpi=110)


# ----- main ---------------------------------------------------------------------------------------
def run(out: str = DEFAULT_OUT, *, small: bool = False, outliers: float = 0.1, threshold: float = 4.0,
        min_angle: float = 4.0, ba_every: int = 2, seed: int = 0, scene: str = SCENE) -> dict[str, Any]:
    """Reconstruct ``scene``, write the model, figures and report under ``out``; returns the numbers."""
    os.makedirs(out, exist_ok=True)
    truth = camera.colmap.read_model(os.path.join(scene, "sparse"), ext=".txt")
    if small:  # the first five images
        keep = sorted(truth.images)[:5]
        truth = camera.colmap.ColmapModel(truth.cameras, {i: truth.images[i] for i in keep}, truth.points3D)
    data = load_tracks(truth, outliers, np.random.default_rng(seed))
    start = time.perf_counter()
    rec = reconstruct(data, threshold, min_angle, ba_every, seed)
    model, order, tracks = to_model(rec, data["names"])
    seconds_incremental = time.perf_counter() - start
    sparse = os.path.join(out, "sparse")
    os.makedirs(os.path.join(out, "initial"), exist_ok=True)
    camera.colmap.write_model(model, os.path.join(out, "initial"), ext=".txt")
    t0 = time.perf_counter()
    final, res = sfm.bundle_adjust_model(model, max_iters=50, loss=FINAL_LOSS, loss_scale=FINAL_LOSS_SCALE)
    seconds_ba = time.perf_counter() - t0
    os.makedirs(sparse, exist_ok=True)
    camera.colmap.write_model(final, sparse, ext=".txt")
    seconds = time.perf_counter() - start

    truth_poses, truth_points = data["truth_poses"][order], data["truth_points"][tracks]
    no_ba, before, after = (reprojection_errors(m) for m in (to_model(rec, data["names"], first=True)[0], model, final))
    ours = compare(*model_arrays(final), truth_poses, truth_points)
    true_obs = data["true"][tracks][:, order]
    kept = rec.use[tracks][:, order]
    lines = [f"{len(order)}/{len(data['ids'])} images registered, {len(tracks)}/{len(data['truth_points'])} tracks "
             f"triangulated, {int(kept.sum())} observations ({int((kept & ~true_obs).sum())} of them outliers; "
             f"{int((data['seen'] & ~data['true']).sum())} outliers in the input)",
             *rec.log,
             f"RMS reprojection error: {rms(no_ba):.3f} px as first estimated (PnP, triangulation), "
             f"{rms(before):.3f} px before the final BA, {rms(after):.3f} px after ({int(res.iterations)} iterations)",
             f"({len(no_ba)}, {len(before)}, {len(after)} observations in front of their cameras)",
             f"time: {seconds:.1f} s (incremental {seconds_incremental:.1f} s, final BA {seconds_ba:.1f} s) on "
             f"{mx.default_device()}",
             f"scene size (RMS distance of the true points from their centroid): {ours['scene']:.3f} m",
             "errors after a similarity alignment of the camera centres (Umeyama):",
             f"{'':<22}{'max rot (deg)':>14}{'max pos (m)':>13}{'max pos (%)':>13}{'point RMS (m)':>15}"
             f"{'point median (m)':>18}"]
    row = lambda name, c: (f"{name:<22}{c['rot'].max():>14.4f}{c['pos'].max():>13.5f}"  # noqa: E731
                           f"{100 * c['pos'].max() / c['scene']:>13.3f}{c['point_rms']:>15.5f}"
                           f"{c['point_median']:>18.5f}")
    lines.append(row("mlxgeom vs truth", ours))
    stats = {"registered": len(order), "images": len(data["ids"]), "points": len(tracks), "ours": ours,
             "seconds": seconds, "rms_no_ba": rms(no_ba), "rms_before": rms(before), "rms_after": rms(after)}
    ref = pycolmap_adjust(os.path.join(out, "initial"))
    if ref is not None:
        ref_model, ref_seconds = ref
        theirs = compare(*model_arrays(ref_model), truth_poses, truth_points)
        lines.append(row("pycolmap BA vs truth", theirs))
        ours_p, ref_p = model_arrays(final)[0], model_arrays(ref_model)[0]
        gap = compare(ours_p, model_arrays(final)[1], ref_p, model_arrays(ref_model)[1])
        lines.append(row("mlxgeom vs pycolmap BA", gap))
        stats.update(pycolmap=theirs, gap=gap)
    sfm_ref = pycolmap_incremental(data, truth.cameras[1], os.path.join(out, "pycolmap_sfm"),
                                   os.path.join(scene, "images"))
    if sfm_ref is not None:
        both = [k for k in order if k in sfm_ref["poses"]]
        theirs = compare(np.stack([sfm_ref["poses"][k] for k in both]), sfm_ref["points"], data["truth_poses"][both],
                         data["truth_points"][sfm_ref["rows"]])
        lines.append(row("pycolmap SfM vs truth", theirs))
        lines.append(f"pycolmap SfM (geometric_verification + incremental_mapping of the same observations, "
                     f"intrinsics fixed): {len(sfm_ref['poses'])} images, {len(sfm_ref['points'])} points, "
                     f"{sfm_ref['seconds']:.1f} s")
        stats.update(pycolmap_sfm=theirs)
    if ref is not None:
        lines.append(f"pycolmap.bundle_adjustment of mlxgeom's model before its final BA: {ref_seconds:.2f} s "
                     f"(mlxgeom's final BA {seconds_ba:.2f} s)")
    lines.append(f"{'image':<14}{'rot (deg)':>10}{'pos (mm)':>10}")
    lines += [f"{data['names'][k]:<14}{ours['rot'][n]:>10.4f}{1e3 * ours['pos'][n]:>10.2f}"
              for n, k in enumerate(order)]
    save_figures(out, ours, truth_poses, truth_points, no_ba, after)
    report = "\n".join(lines) + "\n"
    with open(os.path.join(out, "report.txt"), "w") as f:
        f.write(report)
    stats["report"] = report
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the first five images only (smoke test)")
    parser.add_argument("--outliers", type=float, default=0.1,
                        help="fraction of observations replaced by random pixels")
    parser.add_argument("--threshold", type=float, default=4.0, help="inlier threshold, pixels")
    parser.add_argument("--min-angle", type=float, default=4.0,
                        help="median triangulation angle of the initial pair, deg")
    parser.add_argument("--ba-every", type=int, default=2,
                        help="bundle-adjust after this many registrations (0: only at the end)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args()
    stats = run(args.out, small=args.small, outliers=args.outliers, threshold=args.threshold,
                min_angle=args.min_angle, ba_every=args.ba_every, seed=args.seed)
    print(stats["report"], end="")
    print(f"wrote {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
