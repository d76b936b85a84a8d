"""Turn view 0's depth map into a coloured point cloud with ``Camera.K_inv``, check it, write a PLY.

For every pixel of ``data/scene`` view 0 with a depth: remove the lens distortion
(``Camera.undistort_points``), cast the ray ``K^-1 [u, v, 1]`` (``Camera.K_inv``), scale it
by the z-depth and move it to the world with the camera-to-world pose. The cloud is compared
with ``Camera.unproject`` (the same maths in one call) and with the COLMAP points that view 0
observes: each is projected into view 0, the depth map is sampled there, and the pixel is
unprojected again; the distance to the original point measures the whole round trip.

Usage: ``python examples/unproject_pixels.py [--out mlxgeom-out/unproject_pixels/view_00_cloud.ply] [--small] [--data data/scene]``.
"""

from __future__ import annotations

import argparse
import os
import time

import mlx.core as mx
import numpy as np
from PIL import Image

from mlxgeom import camera, lie, linalg

SCENE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "scene")


def unproject_with_k_inv(cam: camera.Camera, pixels: mx.array, depth: mx.array) -> tuple[mx.array, mx.array]:
    """World points (N, 3) of distorted pixels (N, 2) at z-depth (N,), and the undistortion mask."""
    undist, converged = cam.undistort_points(pixels, K_new=cam.K)  # undistorted pixel coordinates
    homog = mx.concatenate([undist, mx.ones_like(undist[..., :1])], axis=-1)
    rays = linalg.matmul(cam.K_inv, homog[..., None])[..., 0]  # [x/z, y/z, 1]
    points_cam = rays * depth[..., None]
    return lie.se3_act(cam.camera_to_world, points_cam), converged


def write_ply(path: str, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Binary little-endian PLY with float32 x y z and uchar red green blue."""
    rec = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = xyz.T.astype(np.float32)
    rec["r"], rec["g"], rec["b"] = rgb.T
    header = (f"ply\nformat binary_little_endian 1.0\ncomment mlxgeom examples/unproject_pixels.py\n"
              f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=SCENE, help="the data/scene folder")
    ap.add_argument("--out", default=os.path.join("mlxgeom-out", "unproject_pixels", "view_00_cloud.ply"),
                    help="output PLY file (default: %(default)s, the rule every example follows)")
    ap.add_argument("--small", action="store_true", help="every 4th pixel per axis (CI)")
    args = ap.parse_args()
    stride = 4 if args.small else 1

    model = camera.colmap.read_model(os.path.join(args.data, "sparse"), ext=".txt")
    cams, image_ids = camera.colmap.model_to_cameras(model)
    cam = cams.select(0)
    depth = np.load(os.path.join(args.data, "depth_00.npy"))
    image = np.asarray(Image.open(os.path.join(args.data, "images", model.images[int(image_ids[0])].name)).convert("RGB"))

    t0 = time.perf_counter()
    v, u = np.nonzero(depth[::stride, ::stride] > 0)
    v, u = v * stride, u * stride
    pixels = mx.array(np.stack([u, v], -1).astype(np.float32))
    z = mx.array(depth[v, u])
    points, converged = unproject_with_k_inv(cam, pixels, z)
    mx.eval(points, converged)
    elapsed = time.perf_counter() - t0
    print(f"unprojected {len(u):,} pixels of view 0 with Camera.K_inv in {1e3 * elapsed:.1f} ms "
          f"({int(np.array(converged).sum()):,} undistortions converged; device {mx.default_device()})")

    same = cam.unproject(pixels, z)
    print(f"vs Camera.unproject: max |difference| {float(mx.abs(points - same).max()):.2e} m")

    # Round trip through the depth map for the COLMAP points that view 0 observes.
    seen = [p for p in model.points3D.values() if int(image_ids[0]) in set(p.image_ids.tolist())]
    xyz = mx.array(np.array([p.xyz for p in seen]), dtype=mx.float32)
    px, zc, ok = cam.project(xyz)
    sampled = camera.remap(mx.array(depth), px[None])[0]  # bilinear depth at the projections
    back = cam.unproject(px, sampled)
    ok_np = np.array(ok)
    dist = np.array(mx.sqrt(mx.sum(mx.square(back - xyz), axis=-1)))[ok_np]
    print(f"{len(seen)} COLMAP points seen by view 0, projected, depth sampled, unprojected again: |error| "
          f"median {1e6 * np.median(dist):.1f} um, 90th percentile {1e6 * np.percentile(dist, 90):.1f} um "
          f"({np.mean(dist < 0.01):.1%} within 1 cm; the rest straddle depth edges)")
    # The cloud itself: the cloud point of the sampled pixel nearest to each projection.
    index = np.full(depth.shape, -1)
    index[v, u] = np.arange(len(u))
    pr = np.array(px)[ok_np]
    near = index[np.clip(np.round(pr[:, 1] / stride) * stride, 0, depth.shape[0] - 1).astype(int),
                 np.clip(np.round(pr[:, 0] / stride) * stride, 0, depth.shape[1] - 1).astype(int)]
    has = near >= 0
    gap = np.linalg.norm(np.array(points)[near[has]] - np.array(xyz)[ok_np][has], axis=-1)
    footprint = stride * float(np.median(np.array(zc)[ok_np])) / float(cam.fx)
    print(f"cloud vs COLMAP points (nearest sampled pixel): median {1e3 * np.median(gap):.2f} mm, 90th percentile "
          f"{1e3 * np.percentile(gap, 90):.2f} mm (pixel footprint at the median depth: {1e3 * footprint:.1f} mm)")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    write_ply(args.out, np.array(points), image[v, u])
    print(f"wrote {len(u):,} coloured points to {args.out}")


if __name__ == "__main__":
    main()
