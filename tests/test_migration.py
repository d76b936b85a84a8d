"""docs/migration.md checked live: every table row gives the peer's numbers with the call it names.

Each row of every table in docs/migration.md has a test here registered under the row's first
cell (``@row("`cv2.Rodrigues(rvec)`")``); ``test_every_table_row_is_checked`` fails when a row has
none, so a row cannot be added or reworded without its check. Peers are imported with
``pytest.importorskip``: numpy, scipy, OpenCV and pycolmap come with the ``dev`` extra; kornia,
PyPose, jaxlie (and PyTorch) pull gigabytes, so they live in a separate environment (the
commands are in docs/migration.md, "Checking the tables"); pytorch3d needs a source build and
its rows skip where it is missing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import mlx.core as mx
import numpy as np
import pytest

from mlxgeom import camera, epipolar, homography, lie, linalg, optim
from mlxgeom.camera import Camera

ROOT = Path(__file__).resolve().parent.parent
CHECKED: dict[str, list[str]] = {}


def row(*cells: str) -> Callable:
    """Register a test as the check of the migration rows whose first cell is one of ``cells``."""
    def deco(fn: Callable) -> Callable:
        for c in cells:
            CHECKED.setdefault(c, []).append(fn.__name__)
        return fn
    return deco


def _table_rows() -> list[str]:
    """First cells of every table row of docs/migration.md (header and rule lines excluded)."""
    cells = []
    for line in (ROOT / "docs" / "migration.md").read_text().splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells.append(line.split(" | ")[0][2:].strip())
    heads = {"OpenCV", "kornia", "PyPose", "jaxlie", "pytorch3d", "COLMAP", "pycolmap"}
    return [c for c in cells if c not in heads]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (LieTensor subclasses too)
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=np.float64)


def _close(a, b, tol: float = 1e-4) -> None:
    np.testing.assert_allclose(_np(a), _np(b), atol=tol, rtol=tol)


RNG = np.random.default_rng(7)
ROTVECS = RNG.normal(size=(5, 3)) * 0.8
K = np.array([[520.0, 0.0, 321.0], [0.0, 510.0, 243.0], [0.0, 0.0, 1.0]])
DIST = np.array([-0.21, 0.07, 1e-3, -5e-4, -0.01])


def _rot(v: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(v).as_matrix()


def _pose(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = _rot(rng.normal(size=3) * 0.2), rng.normal(size=3) * 0.3
    return t


def _scene(n: int = 40, seed: int = 1) -> np.ndarray:
    """World points (n, 3) in front of the camera of ``_pose(seed)``."""
    rng = np.random.default_rng(seed)
    cam = np.c_[rng.uniform(-1, 1, (n, 2)), rng.uniform(3, 6, n)]
    pose = _pose(seed)
    return (cam - pose[:3, 3]) @ pose[:3, :3]


def _m(x, dtype=mx.float32) -> mx.array:
    return mx.array(np.asarray(x), dtype=dtype)


def _two_view(n: int = 60, seed: int = 11, noise: float = 0.0):
    """Camera-2-from-camera-1 pose (4, 4), pixels p1, p2 (n, 2) in two cameras with ``K`` and the
    camera-1 points (n, 3), 4 to 8 baselines away."""
    rng = np.random.default_rng(seed)
    rel = np.eye(4)
    rel[:3, :3], rel[:3, 3] = _rot(rng.normal(size=3) * 0.1), [-0.8, 0.1, 0.05] + rng.normal(size=3) * 0.05
    x = np.c_[rng.uniform(-2, 2, (n, 2)), rng.uniform(4, 8, n)] * np.linalg.norm(rel[:3, 3])
    p1, p2 = x @ K.T, (x @ rel[:3, :3].T + rel[:3, 3]) @ K.T
    p1, p2 = p1[:, :2] / p1[:, 2:], p2[:, :2] / p2[:, 2:]
    return rel, p1 + rng.normal(0, noise, (n, 2)), p2 + rng.normal(0, noise, (n, 2)), x


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def _unit(m) -> np.ndarray:
    """Unit Frobenius norm, largest-magnitude entry positive: E and F up to scale and sign."""
    m = _np(m)
    m = m / np.linalg.norm(m)
    return m * np.sign(m.flat[np.argmax(np.abs(m))])


def _same_rotation_pair(got, ref, tol: float = 1e-4) -> None:
    """Two rotations equal as a set (their order follows the SVD's signs)."""
    (a, b), (c, d) = (_np(x) for x in got), (_np(x) for x in ref)
    err = min(max(np.abs(a - c).max(), np.abs(b - d).max()), max(np.abs(a - d).max(), np.abs(b - c).max()))
    assert err < tol, err


def _outliers(p2: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` points moved 40 px across their (near-horizontal) epipolar lines."""
    out = p2.copy()
    out[:count, 1] += 40.0
    return out


def test_every_table_row_is_checked():
    rows = _table_rows()
    assert len(rows) > 50
    missing = [r for r in rows if r not in CHECKED]
    assert not missing, f"migration rows without a live check in tests/test_migration.py: {missing}"
    stale = sorted(set(CHECKED) - set(rows))
    assert not stale, f"checks registered for rows that are no longer in docs/migration.md: {stale}"


# ----- OpenCV ---------------------------------------------------------------------------------
@row("`cv2.Rodrigues(rvec)`")
def test_cv2_rodrigues_rvec():
    cv2 = pytest.importorskip("cv2")
    ref = np.stack([cv2.Rodrigues(v)[0] for v in ROTVECS])
    for got in (lie.so3_exp(_m(ROTVECS)), lie.rotvec_to_matrix(_m(ROTVECS)), lie.SO3.from_rotvec(_m(ROTVECS)).matrix):
        _close(got, ref)


@row("`cv2.Rodrigues(R)`")
def test_cv2_rodrigues_matrix():
    cv2 = pytest.importorskip("cv2")
    r = np.stack([cv2.Rodrigues(v)[0] for v in ROTVECS])
    ref = np.stack([cv2.Rodrigues(m)[0][:, 0] for m in r])
    for got in (lie.so3_log(_m(r)), lie.matrix_to_rotvec(_m(r))):
        _close(got, ref)
    assert np.all(np.linalg.norm(_np(lie.so3_log(_m(r))), axis=-1) <= np.pi)


@row("`cv2.projectPoints`")
def test_cv2_project_points():
    cv2 = pytest.importorskip("cv2")
    pw, pose = _scene(), _pose(1)
    rvec = cv2.Rodrigues(pose[:3, :3])[0]
    ref = cv2.projectPoints(pw, rvec, pose[:3, 3], K, DIST)[0][:, 0]
    got = camera.project_points(_m(pw), _m(K), _m(pose), _m(DIST))
    _close(got.pixels, ref, 1e-3)
    assert got.valid.tolist() == [True] * len(pw)
    _close(Camera(_m(K), _m(pose), _m(DIST)).project(_m(pw)).pixels, ref, 1e-3)
    # The skew: OpenCV ignores K[0, 1], mlxgeom applies it.
    ks = K.copy()
    ks[0, 1] = 5.0
    skewed = camera.project_points(_m(pw), _m(ks), _m(pose)).pixels
    plain = cv2.projectPoints(pw, rvec, pose[:3, 3], ks, None)[0][:, 0]
    xn = (pw @ pose[:3, :3].T + pose[:3, 3])
    _close(_np(skewed)[:, 0] - plain[:, 0], 5.0 * xn[:, 1] / xn[:, 2], 1e-3)


@row("`cv2.projectPoints` (its `jacobian` output)")
def test_cv2_project_points_jacobian():
    cv2 = pytest.importorskip("cv2")
    pw, pose = _scene(6), _pose(1)
    rvec = cv2.Rodrigues(pose[:3, :3])[0]
    _, jac = cv2.projectPoints(pw, rvec, pose[:3, 3], K, np.zeros(5))
    d_t = jac[:, 3:6].reshape(len(pw), 2, 3)
    d_pose = _np(camera.project_points_jacobian(_m(pw), _m(K), _m(pose)).d_pose)
    # Right perturbation T exp(xi): d x_cam / d rho = R, so the translation block is dp/dt R.
    _close(d_pose[..., :3], d_t @ pose[:3, :3], 1e-2)
    # The rotation block is not d/drvec (different parameterisation), as the row says.
    assert not np.allclose(d_pose[..., 3:], jac[:, :3].reshape(len(pw), 2, 3), atol=1e-1)


@row("`cv2.undistortPoints(src, K, dist, P=P)`")
def test_cv2_undistort_points():
    cv2 = pytest.importorskip("cv2")
    px = cv2.projectPoints(_scene(), np.zeros(3), np.zeros(3), K, DIST)[0][:, 0]
    k_new = K * [[0.8], [0.8], [1]]
    ref_p = cv2.undistortPoints(px[:, None], K, DIST, P=k_new)[:, 0]
    got, ok = camera.undistort_points(_m(px), _m(K), _m(DIST), K_new=_m(k_new))
    _close(got, ref_p, 1e-2)
    assert ok.tolist() == [True] * len(px)
    ref_n = cv2.undistortPoints(px[:, None], K, DIST)[:, 0]
    _close(camera.undistort_points(_m(px), _m(K), _m(DIST))[0], ref_n, 1e-4)


@row("`cv2.fisheye.projectPoints`, `cv2.fisheye.undistortPoints`")
def test_cv2_fisheye():
    cv2 = pytest.importorskip("cv2")
    d = np.array([0.05, -0.01, 0.002, -1e-4])
    pw, pose = _scene(), _pose(1)
    rvec = cv2.Rodrigues(pose[:3, :3])[0]
    ref = cv2.fisheye.projectPoints(pw[:, None], rvec, pose[:3, 3], K, d)[0][:, 0]
    cam = camera.FisheyeCamera(_m(K), _m(pose), _m(d))
    _close(cam.project(_m(pw)).pixels, ref, 1e-3)
    _close(camera.project_points(_m(pw), _m(K), _m(pose), _m(d), model="fisheye").pixels, ref, 1e-3)
    ref_u = cv2.fisheye.undistortPoints(ref[:, None], K, d)[:, 0]
    _close(camera.undistort_points(_m(ref), _m(K), _m(d), model="fisheye")[0], ref_u, 1e-4)


def _smooth(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([127 + 60 * np.sin(0.09 * xx + c) * np.cos(0.07 * yy) for c in range(3)], -1).astype(np.float32)


@row("`cv2.initUndistortRectifyMap` + `cv2.remap`")
def test_cv2_undistort_rectify_map_and_remap():
    cv2 = pytest.importorskip("cv2")
    img, k = _smooth(), K * [[0.1], [0.1], [1]]
    k[:2, 2] = [31.5, 23.5]
    m1, m2 = cv2.initUndistortRectifyMap(k, DIST, None, k, (64, 48), cv2.CV_32FC1)
    map_uv, valid = camera.undistort_map(_m(k), _m(DIST), (64, 48))
    assert map_uv.shape == (48, 64, 2) and valid.shape == (48, 64)
    _close(_np(map_uv), np.stack([m1, m2], -1), 2e-2)
    ref = cv2.remap(img, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    got = _np(camera.remap(_m(img), map_uv))
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(got[inner] - ref[inner]).max() < 1.0


@row("`cv2.undistort`")
def test_cv2_undistort():
    cv2 = pytest.importorskip("cv2")
    img, k = _smooth(), K * [[0.1], [0.1], [1]]
    k[:2, 2] = [31.5, 23.5]
    ref = cv2.undistort(img, k, DIST)
    got = _np(camera.undistort_image(_m(img), Camera(_m(k), dist=_m(DIST))))
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(got[inner] - ref[inner]).max() < 1.0


@row("`cv2.calibrateCamera` outputs `(K, dist, rvec, tvec)`")
def test_cv2_calibrate_camera_outputs():
    cv2 = pytest.importorskip("cv2")
    pw, pose = _scene(), _pose(1)
    rvec, tvec = cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3:]
    cam = Camera.from_opencv(_m(K), _m(DIST[None]), _m(rvec), _m(tvec), size=[640, 480])
    _close(cam.project(_m(pw)).pixels, cv2.projectPoints(pw, rvec, tvec, K, DIST)[0][:, 0], 1e-3)
    k2, d2, r2, t2, size = cam.to_opencv()
    _close(k2, K), _close(d2, DIST), _close(r2, rvec[:, 0]), _close(t2, tvec[:, 0]), _close(size, [640, 480])


def _pnp_data():
    pw, pose = _scene(30, 3), _pose(3)
    px = (pw @ pose[:3, :3].T + pose[:3, 3]) @ K.T
    return pw, px[:, :2] / px[:, 2:], pose


@row("`cv2.solvePnP`")
def test_cv2_solve_pnp():
    cv2 = pytest.importorskip("cv2")
    pw, px, pose = _pnp_data()
    _, rvec, tvec = cv2.solvePnP(pw, px, K, None, flags=cv2.SOLVEPNP_ITERATIVE)
    for method in ("epnp", "dlt", "iterative"):
        res = optim.solve_pnp(_m(pw[None]), _m(px[None]), _m(K), method=method)
        assert res.ok.tolist() == [True]
        _close(res.rvec[0], rvec[:, 0], 1e-3)
        _close(res.tvec[0], tvec[:, 0], 1e-3)


@row("`cv2.solvePnPRansac`")
def test_cv2_solve_pnp_ransac():
    cv2 = pytest.importorskip("cv2")
    pw, px, pose = _pnp_data()
    px = px.copy()
    px[:6] += 80.0
    _, rvec, tvec, inl = cv2.solvePnPRansac(pw, px, K, None, reprojectionError=4.0)
    res = optim.solve_pnp_ransac(_m(pw[None]), _m(px[None]), _m(K), threshold=4.0, key=mx.random.key(0))
    assert res.ok.tolist() == [True]
    _close(res.rvec[0], rvec[:, 0], 1e-3)
    assert sorted(np.flatnonzero(np.array(res.inliers[0]))) == sorted(inl[:, 0].tolist())


@row("`cv2.triangulatePoints(P1, P2, x1, x2)`")
def test_cv2_triangulate_points():
    cv2 = pytest.importorskip("cv2")
    pw = _scene(30, 1)
    poses = np.stack([_pose(1), _pose(1) @ np.r_[np.c_[np.eye(3), [0.4, 0.0, 0.0]], [[0, 0, 0, 1]]]])
    proj = [K @ p[:3] for p in poses]
    x = [(pw @ p[:3, :3].T + p[:3, 3]) @ K.T for p in poses]
    x = np.stack([v[:, :2] / v[:, 2:] for v in x])  # OpenCV's layout: (V, N, 2)
    hom = cv2.triangulatePoints(proj[0], proj[1], x[0].T, x[1].T)
    ref = (hom[:3] / hom[3]).T
    res = optim.triangulate_points(_m(K), _m(x.transpose(1, 0, 2)), _m(poses))  # mlxgeom's: (N, V, 2)
    assert res.ok.tolist() == [True] * len(pw)
    _close(res.points, ref, 1e-3)


def _homography_data(n: int = 40):
    h = np.array([[0.9, 0.05, 12.0], [-0.04, 1.1, -7.0], [1e-4, 2e-4, 1.0]])
    rng = np.random.default_rng(5)
    src = rng.uniform(0, 200, (n, 2))
    d = np.c_[src, np.ones(n)] @ h.T
    dst = d[:, :2] / d[:, 2:] + rng.normal(0, 0.5, (n, 2))
    return src, dst, h


@row("`cv2.findFundamentalMat` (`FM_8POINT`, `FM_7POINT`, `FM_RANSAC`)")
def test_cv2_find_fundamental_mat():
    cv2 = pytest.importorskip("cv2")
    _, p1, p2, _ = _two_view(60, noise=0.5)
    ref, _ = cv2.findFundamentalMat(p1, p2, cv2.FM_8POINT)
    got = epipolar.find_fundamental_matrix(_m(p1), _m(p2), method="8point")
    assert got.ok.item()
    _close(got.F, _unit(ref), 1e-3)
    # 7-point: OpenCV's one or three solutions, stacked (3k, 3), are mlxgeom's ok candidates.
    _, q1, q2, _ = _two_view(7, seed=12)
    ref7, _ = cv2.findFundamentalMat(q1, q2, cv2.FM_7POINT)
    got7 = epipolar.find_fundamental_matrix(_m(q1), _m(q2), method="7point")
    ours = [_unit(f) for f, ok in zip(_np(got7.F), np.array(got7.ok)) if ok]
    refs = [_unit(f) for f in ref7.reshape(-1, 3, 3)]
    assert got7.F.shape == (3, 3, 3) and len(ours) == len(refs)
    for f in refs:
        assert min(np.abs(f - g).max() for g in ours) < 1e-3
    # RANSAC: 20 gross outliers among exact matches; the same inliers and the true F.
    rel, r1, r2, _ = _two_view(100, seed=13)
    r2 = _outliers(r2, 20)
    ref_r, mask = cv2.findFundamentalMat(r1, r2, cv2.FM_RANSAC, 1.0, 0.999)
    got_r = epipolar.find_fundamental_matrix(_m(r1), _m(r2), method="ransac", threshold=1.0, key=mx.random.key(0))
    assert got_r.ok.item()
    assert np.array(got_r.inliers).tolist() == (mask[:, 0] > 0).tolist() == [False] * 20 + [True] * 80
    kinv = np.linalg.inv(K)
    truth = _unit(kinv.T @ _skew(rel[:3, 3]) @ rel[:3, :3] @ kinv)
    _close(got_r.F, truth, 1e-3), _close(_unit(ref_r), truth, 1e-3)


@row("`cv2.findEssentialMat(p1, p2, K, cv2.RANSAC)`")
def test_cv2_find_essential_mat():
    cv2 = pytest.importorskip("cv2")
    rel, p1, p2, _ = _two_view(100, seed=14)
    p2 = _outliers(p2, 20)
    ref, mask = cv2.findEssentialMat(p1, p2, K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
    got = epipolar.find_essential_matrix(_m(p1), _m(p2), _m(K), threshold=1.0, key=mx.random.key(0))
    assert got.ok.item()
    assert np.array(got.inliers).tolist() == (mask[:, 0] > 0).tolist() == [False] * 20 + [True] * 80
    truth = _unit(_skew(rel[:3, 3]) @ rel[:3, :3])
    _close(got.E, truth, 1e-3), _close(_unit(ref[:3]), truth, 1e-3)
    _close(np.linalg.svd(_np(got.E))[1], [0.5**0.5, 0.5**0.5, 0.0], 1e-4)
    # Exactly five matches: OpenCV's candidates, stacked (3k, 3), are among mlxgeom's ten slots.
    _, q1, q2, _ = _two_view(5, seed=28)
    ref5, _ = cv2.findEssentialMat(q1, q2, K, method=cv2.RANSAC)
    got5 = epipolar.find_essential_matrix(_m(q1), _m(q2), _m(K), method="5point")
    ours = [_unit(e) for e, ok in zip(_np(got5.E), np.array(got5.ok)) if ok]
    assert got5.E.shape == (10, 3, 3) and len(ours) >= len(ref5) // 3 >= 1
    for e in ref5.reshape(-1, 3, 3):
        assert min(np.abs(_unit(e) - g).max() for g in ours) < 2e-3


def _f_and_points(n: int = 30, seed: int = 15):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 3)), rng.uniform(0, 640, (n, 2)), rng.uniform(0, 480, (n, 2))


@row("`cv2.sampsonDistance(pt1, pt2, F)`")
def test_cv2_sampson_distance():
    cv2 = pytest.importorskip("cv2")
    f, x1, x2 = _f_and_points()
    ref = [cv2.sampsonDistance(np.r_[a, 1][:, None], np.r_[b, 1][:, None], f) for a, b in zip(x1, x2)]
    _close(epipolar.sampson_distance(_m(f), _m(x1), _m(x2)), ref, 1e-4)


@row("`cv2.computeCorrespondEpilines(points, whichImage, F)`")
def test_cv2_compute_correspond_epilines():
    cv2 = pytest.importorskip("cv2")
    f, x1, x2 = _f_and_points()
    for image, x in ((1, x1), (2, x2)):
        ref = cv2.computeCorrespondEpilines(x.reshape(-1, 1, 2), image, f).reshape(-1, 3)
        got = epipolar.epipolar_lines(_m(f), _m(x), image=image)
        _close(got, ref, 1e-4)
        _close(np.hypot(_np(got)[:, 0], _np(got)[:, 1]), np.ones(len(x)), 1e-5)
    l2 = np.c_[x1, np.ones(len(x1))] @ f.T  # F x: the lines of image-1 points in image 2
    _close(epipolar.epipolar_lines(_m(f), _m(x1), image=1), l2 / np.hypot(l2[:, 0], l2[:, 1])[:, None])


@row("`cv2.decomposeEssentialMat(E)`")
def test_cv2_decompose_essential_mat():
    cv2 = pytest.importorskip("cv2")
    rel = _two_view()[0]
    e = 3.0 * _skew(rel[:3, 3]) @ rel[:3, :3]
    r1, r2, t = cv2.decomposeEssentialMat(e)
    dec = epipolar.decompose_essential_matrix(_m(e))
    _same_rotation_pair((dec.R1, dec.R2), (r1, r2))
    assert abs(abs(float(_np(dec.t) @ t[:, 0])) - 1) < 1e-5


@row("`cv2.recoverPose(E, p1, p2, K)`")
def test_cv2_recover_pose():
    cv2 = pytest.importorskip("cv2")
    rel, p1, p2, _ = _two_view(80, seed=16, noise=0.5)
    e = _skew(rel[:3, 3]) @ rel[:3, :3]
    count, r, t, mask = cv2.recoverPose(e, p1, p2, K)
    res = epipolar.recover_pose(_m(e), _m(p1), _m(p2), _m(K))
    assert res.ok.item() and res.num_inliers.item() == count
    assert np.array(res.inliers).tolist() == (mask[:, 0] > 0).tolist()
    _close(_np(res.pose)[:3, :3], r, 1e-4), _close(_np(res.pose)[:3, 3], t[:, 0], 1e-4)
    assert res.points.shape == (80, 3)


@row("`cv2.recoverPose(E, p1, p2, K, distanceThresh, mask)` (its `triangulatedPoints`)")
def test_cv2_recover_pose_triangulated_points():
    cv2 = pytest.importorskip("cv2")
    rel, p1, p2, x = _two_view(40, seed=17)
    e = _skew(rel[:3, 3]) @ rel[:3, :3]
    use = np.ones(40, np.uint8)
    use[:5] = 0
    _, _, _, mask, hom = cv2.recoverPose(e, p1, p2, K, distanceThresh=50.0, mask=use.copy())
    res = epipolar.recover_pose(_m(e), _m(p1), _m(p2), _m(K), mask=mx.array(use.astype(bool)))
    assert np.array(res.inliers).tolist() == (mask[:, 0] > 0).tolist() == [False] * 5 + [True] * 35
    ref = (hom[:3] / hom[3]).T
    points = _np(res.points)
    _close(points[5:], ref[5:], 1e-3)
    _close(points[5:], x[5:] / np.linalg.norm(rel[:3, 3]), 1e-3)
    assert not points[:5].any()


@row("`cv2.correctMatches(F, p1, p2)`")
def test_cv2_correct_matches():
    cv2 = pytest.importorskip("cv2")
    rel, p1, p2, _ = _two_view(50, seed=18, noise=1.0)
    kinv = np.linalg.inv(K)
    f = kinv.T @ _skew(rel[:3, 3]) @ rel[:3, :3] @ kinv
    r1, r2 = (r[0] for r in cv2.correctMatches(f, p1[None], p2[None]))
    res = epipolar.correct_matches(_m(f), _m(p1), _m(p2))
    assert np.array(res.valid).all()
    _close(res.x1, r1, 1e-3), _close(res.x2, r2, 1e-3)


@row("`cv2.stereoRectify(K1, d1, K2, d2, size, R, T)`")
def test_cv2_stereo_rectify():
    cv2 = pytest.importorskip("cv2")
    k2 = np.array([[510.0, 0, 322], [0, 512, 236], [0, 0, 1]])
    d1, d2 = np.array([-0.1, 0.02, 1e-3, -5e-4, 0.0]), np.array([-0.08, 0.015, 8e-4, -4e-4, 0.0])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = _rot(np.array([0.02, -0.05, 0.01])), [-0.1, 0.005, 0.002]
    ref = cv2.stereoRectify(K, d1, k2, d2, (640, 480), pose[:3, :3], pose[:3, 3:])
    got = epipolar.stereo_rectify(Camera(_m(K), dist=_m(d1), size=(640, 480)), Camera(_m(k2), dist=_m(d2)), _m(pose))
    for name, a, b in zip(("R1", "R2", "P1", "P2", "Q"), got[:5], ref[:5]):
        tol = 2e-6 if name in ("R1", "R2") else 2e-3 * max(1.0, np.abs(b).max() / 600)
        np.testing.assert_allclose(_np(a), b, atol=tol, err_msg=name)
    assert got.horizontal.item()


@row("`cv2.findHomography`")
def test_cv2_find_homography():
    cv2 = pytest.importorskip("cv2")
    src, dst, _ = _homography_data()
    ref, _ = cv2.findHomography(src, dst)  # method 0: DLT + Levenberg-Marquardt refinement
    got = homography.find_homography(_m(src), _m(dst), method="lm")
    _close(_np(got.H) / _np(got.H)[2, 2], ref, 1e-3)
    outl = dst.copy()
    outl[:8] += 50.0
    ref_r, mask = cv2.findHomography(src, outl, cv2.RANSAC, 3.0)
    got_r = homography.find_homography(_m(src), _m(outl), method="ransac", threshold=3.0, key=mx.random.key(0))
    assert np.array(got_r.inliers).tolist() == mask[:, 0].astype(bool).tolist()
    _close(_np(got_r.H) / _np(got_r.H)[2, 2], ref_r, 1e-2)


@row("`cv2.getPerspectiveTransform`")
def test_cv2_get_perspective_transform():
    cv2 = pytest.importorskip("cv2")
    src = np.array([[0, 0], [100, 0], [100, 80], [0, 80]], np.float32)
    dst = np.array([[3, 5], [98, -2], [110, 90], [-4, 77]], np.float32)
    h, ok = homography.homography_from_4_points(_m(src), _m(dst))
    assert ok.item()
    _close(_np(h) / _np(h)[2, 2], cv2.getPerspectiveTransform(src, dst), 1e-3)


@row("`cv2.perspectiveTransform`")
def test_cv2_perspective_transform():
    cv2 = pytest.importorskip("cv2")
    src, _, h = _homography_data()
    ref = cv2.perspectiveTransform(src[:, None], h)[:, 0]
    _close(homography.perspective_transform(_m(src), _m(h)), ref, 1e-3)
    pts, ok = homography.perspective_transform_ex(_m(np.r_[src, [[-1e4, 0.0]]]), _m(h))  # w = 0 there
    assert ok.tolist() == [True] * len(src) + [False]


@row("`cv2.warpPerspective(img, H, (w, h))`")
def test_cv2_warp_perspective():
    cv2 = pytest.importorskip("cv2")
    img, h = _smooth(), np.array([[0.95, 0.03, 2.0], [-0.02, 1.02, 1.5], [1e-4, -1e-4, 1.0]])
    ref = cv2.warpPerspective(img, h, (60, 40))
    got = _np(homography.warp_perspective(_m(img), _m(h), (60, 40)))
    assert got.shape == (40, 60, 3)
    assert np.abs(got - ref)[2:-2, 2:-2].max() < 1.0


@row("`cv2.decomposeHomographyMat(H, K)`")
def test_cv2_decompose_homography():
    cv2 = pytest.importorskip("cv2")
    r, t, n = _rot([0.05, -0.1, 0.02]), np.array([0.2, 0.05, 0.1]), np.array([0.0, 0.0, 1.0])
    h = K @ (r + np.outer(t, n) / 2.0) @ np.linalg.inv(K)
    _, rs, ts, ns = cv2.decomposeHomographyMat(h, K)
    dec = homography.decompose_homography(_m(h), _m(K))
    assert dec.valid.shape[-1] == 4
    got = _np(dec.R)[np.array(dec.valid)]
    for ref in rs:
        assert np.min(np.abs(got - ref).reshape(len(got), -1).max(-1)) < 1e-3


@row("`cv2.invert`, `np.linalg.inv`")
def test_cv2_invert():
    cv2 = pytest.importorskip("cv2")
    a = RNG.normal(size=(4, 4)) + 4 * np.eye(4)
    _close(linalg.inv(_m(a)), cv2.invert(a)[1])
    inv, ok = linalg.inv_ex(_m(np.stack([a, np.zeros((4, 4))])))
    _close(inv[0], np.linalg.inv(a)), _close(ok, [True, False])


@row("`cv2.solve`, `np.linalg.solve`")
def test_cv2_solve():
    cv2 = pytest.importorskip("cv2")
    a, b = RNG.normal(size=(3, 3)) + 3 * np.eye(3), RNG.normal(size=(3, 1))
    _close(linalg.solve(_m(a), _m(b)), cv2.solve(a, b)[1])
    _close(linalg.solve(_m(a), _m(b[:, 0])), np.linalg.solve(a, b[:, 0]))


@row("`cv2.determinant`, `np.linalg.det`")
def test_cv2_determinant():
    cv2 = pytest.importorskip("cv2")
    a = RNG.normal(size=(3, 3))
    _close(linalg.det(_m(a)), cv2.determinant(a))
    _close(linalg.det(_m(a[None])), np.linalg.det(a[None]))


# ----- kornia ---------------------------------------------------------------------------------
def _kornia():
    pytest.importorskip("torch")
    return pytest.importorskip("kornia")


def _t(x):
    import torch

    return torch.tensor(np.asarray(x), dtype=torch.float64)


@row("`conversions.axis_angle_to_rotation_matrix`", "`conversions.rotation_matrix_to_axis_angle`")
def test_kornia_axis_angle():
    kornia = _kornia()
    c = kornia.geometry.conversions
    _close(lie.so3_exp(_m(ROTVECS)), c.axis_angle_to_rotation_matrix(_t(ROTVECS)))
    _close(lie.so3_log(_m(_rot(ROTVECS))), c.rotation_matrix_to_axis_angle(_t(_rot(ROTVECS))))


@row("`conversions.quaternion_to_rotation_matrix`", "`conversions.rotation_matrix_to_quaternion`")
def test_kornia_quaternions():
    kornia = _kornia()
    c = kornia.geometry.conversions
    q = RNG.normal(size=(5, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    _close(lie.quaternion_to_matrix(_m(q)), c.quaternion_to_rotation_matrix(_t(q)))
    ref = c.rotation_matrix_to_quaternion(_t(_rot(ROTVECS))).numpy()
    _close(lie.matrix_to_quaternion(_m(_rot(ROTVECS))), ref * np.sign(ref[:, :1]))


@row("`conversions.Rt_to_matrix4x4`", "`linalg.compose_transformations`", "`linalg.inverse_transformation`",
     "`linalg.transform_points`")
def test_kornia_rigid_transforms():
    kornia = _kornia()
    kg = kornia.geometry
    a, b = np.stack([_pose(1), _pose(2)]), np.stack([_pose(3), _pose(4)])
    _close(lie.se3_from_rt(_m(a[:, :3, :3]), _m(a[:, :3, 3])),
           kg.conversions.Rt_to_matrix4x4(_t(a[:, :3, :3]), _t(a[:, :3, 3:])))
    _close(lie.se3_compose(_m(a), _m(b)), kg.linalg.compose_transformations(_t(a), _t(b)))
    _close(lie.se3_inverse(_m(a)), kg.linalg.inverse_transformation(_t(a)))
    p = RNG.normal(size=(2, 7, 3))
    _close(lie.se3_act(_m(a[:, None]), _m(p)), kg.linalg.transform_points(_t(a), _t(p)))
    _, _, h = _homography_data()
    q = RNG.uniform(0, 100, (1, 7, 2))
    _close(homography.perspective_transform(_m(q), _m(h)), kg.linalg.transform_points(_t(h[None]), _t(q)), 1e-3)


@row("`liegroup.So3`, `liegroup.Se3` (`exp`, `log`, `inverse`, `hat`, `vee`, `matrix`, `adjoint`)")
def test_kornia_liegroups():
    kornia = _kornia()
    lg = kornia.geometry.liegroup
    xi = RNG.normal(size=(4, 6)) * 0.5
    se = lg.Se3.exp(_t(xi))
    x = lie.SE3.exp(_m(xi))
    _close(x.matrix, se.matrix())
    _close(x.log(), se.log())
    _close(x.inverse().matrix, se.inverse().matrix())
    _close(x.adjoint(), se.adjoint())
    _close(lie.se3_hat(_m(xi)), lg.Se3.hat(_t(xi)))
    _close(lie.se3_vee(lie.se3_hat(_m(xi))), lg.Se3.vee(lg.Se3.hat(_t(xi))))
    so = lg.So3.exp(_t(ROTVECS))
    r = lie.SO3.exp(_m(ROTVECS))
    _close(r.matrix, so.matrix()), _close(r.log(), so.log()), _close(r.inverse().matrix, so.inverse().matrix())
    _close(lie.so3_hat(_m(ROTVECS)), lg.So3.hat(_t(ROTVECS)))


@row("`camera.PinholeCamera`")
def test_kornia_pinhole_camera():
    kornia = _kornia()
    pw, pose = _scene(), _pose(1)
    k4 = np.eye(4)
    k4[:3, :3] = K
    pc = kornia.geometry.camera.PinholeCamera(_t(k4[None]), _t(pose[None]), _t([480.0]), _t([640.0]))
    ref = pc.project(_t(pw[None]))[0]
    _close(Camera(_m(K), _m(pose)).project(_m(pw)).pixels, ref, 1e-3)


@row("`camera.project_points(p, K)`", "`camera.unproject_points(x, depth, K)`")
def test_kornia_project_unproject():
    kornia = _kornia()
    kc = kornia.geometry.camera
    pc = RNG.uniform(-1, 1, (10, 3)) + [0, 0, 4]
    _close(camera.project_points(_m(pc), _m(K)).pixels, kc.project_points(_t(pc), _t(K)), 1e-3)
    px = RNG.uniform(0, 600, (10, 2))
    z = RNG.uniform(1, 5, (10, 1))
    _close(camera.unproject_points(_m(px), _m(z[:, 0]), _m(K)), kc.unproject_points(_t(px), _t(z), _t(K)), 1e-3)


@row("`calibration.undistort_points`, `calibration.distort_points`")
def test_kornia_distort_undistort_points_in_pixels_with_K_new():
    kornia = _kornia()
    kc = kornia.geometry.calibration
    px = RNG.uniform(50, 590, (20, 2))
    ref = kc.undistort_points(_t(px[None]), _t(K[None]), _t(DIST[None]), num_iters=20)[0]
    got, _ = camera.undistort_points(_m(px), _m(K), _m(DIST), K_new=_m(K))
    _close(got, ref, 1e-2)
    ref_d = kc.distort_points(_t(px[None]), _t(K[None]), _t(DIST[None]))[0]
    got_d, _ = camera.distort_points(_m(px), _m(K), _m(DIST), K_new=_m(K))
    _close(got_d, ref_d, 1e-2)
    # Without K_new mlxgeom works in normalised coordinates, kornia in pixels: the same call differs.
    assert np.abs(_np(camera.undistort_points(_m(px), _m(K), _m(DIST))[0]) - ref.numpy()).max() > 10


@row("`calibration.undistort_image`")
def test_kornia_undistort_image():
    kornia = _kornia()
    img, k = _smooth(), K * [[0.1], [0.1], [1]]
    k[:2, 2] = [31.5, 23.5]
    ref = kornia.geometry.calibration.undistort_image(_t(img.transpose(2, 0, 1)[None]), _t(k[None]), _t(DIST[None]))
    got = _np(camera.undistort_image(_m(img), Camera(_m(k), dist=_m(DIST))))
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(got[inner] - ref[0].numpy().transpose(1, 2, 0)[inner]).max() < 1.0


@row("`calibration.solve_pnp_dlt`")
def test_kornia_solve_pnp_dlt():
    kornia = _kornia()
    pw, px, pose = _pnp_data()
    ref = kornia.geometry.calibration.solve_pnp_dlt(_t(pw[None]), _t(px[None]), _t(K[None]))[0]
    got = optim.solve_pnp(_m(pw[None]), _m(px[None]), _m(K), method="dlt")
    _close(got.pose[0, :3], ref, 1e-3)


@row("`epipolar.triangulate_points`")
def test_kornia_triangulate_points():
    kornia = _kornia()
    pw = _scene(20, 1)
    poses = np.stack([_pose(1), _pose(1) @ np.r_[np.c_[np.eye(3), [0.4, 0.0, 0.0]], [[0, 0, 0, 1]]]])
    x = np.stack([(pw @ p[:3, :3].T + p[:3, 3]) @ K.T for p in poses])
    x = x[..., :2] / x[..., 2:]
    proj = [_t((K @ p[:3])[None]) for p in poses]
    ref = kornia.geometry.epipolar.triangulate_points(proj[0], proj[1], _t(x[0][None]), _t(x[1][None]))[0]
    _close(optim.triangulate_points(_m(K), _m(x.transpose(1, 0, 2)), _m(poses)).points, ref, 1e-3)


# kornia's epipolar functions want batched inputs: (B, N, 2) points, (B, 3, 3) matrices, (B, 3, 1) translations.
@row("`epipolar.find_fundamental(points1, points2, weights)`")
def test_kornia_find_fundamental():
    kornia = _kornia()
    ke = kornia.geometry.epipolar
    _, p1, p2, _ = _two_view(60, noise=0.5)
    ref = ke.find_fundamental(_t(p1[None]), _t(p2[None]))[0]  # method="8POINT", F[2, 2] = 1
    got = epipolar.find_fundamental_matrix(_m(p1), _m(p2), method="8point")
    assert got.ok.item()
    _close(got.F, _unit(ref), 1e-3)
    # Weights on exact matches: the same F (kornia's normalisation ignores them, mlxgeom's does not).
    _, q1, q2, _ = _two_view(60, seed=24)
    w = np.random.default_rng(24).uniform(0.2, 1.0, 60)
    ref_w = ke.find_fundamental(_t(q1[None]), _t(q2[None]), _t(w[None]))[0]
    _close(epipolar.find_fundamental_matrix(_m(q1), _m(q2), _m(w)).F, _unit(ref_w), 1e-3)


@row("`epipolar.sampson_epipolar_distance(pts1, pts2, Fm)`", "`epipolar.symmetrical_epipolar_distance(pts1, pts2, Fm)`")
def test_kornia_epipolar_distances_are_squared():
    kornia = _kornia()
    ke = kornia.geometry.epipolar
    f, x1, x2 = _f_and_points(seed=25)
    args = (_t(x1[None]), _t(x2[None]), _t(f[None]))  # points first, F last
    for ours, theirs in ((epipolar.sampson_distance, ke.sampson_epipolar_distance),
                         (epipolar.symmetric_epipolar_distance, ke.symmetrical_epipolar_distance)):
        got = _np(ours(_m(f), _m(x1), _m(x2)))
        _close(got, theirs(*args)[0], 1e-4)  # squared=True, kornia's default
        _close(np.sqrt(got), theirs(*args, squared=False)[0], 1e-4)


@row("`epipolar.compute_correspond_epilines(points, F_mat)`")
def test_kornia_compute_correspond_epilines():
    kornia = _kornia()
    ke = kornia.geometry.epipolar
    f, x1, x2 = _f_and_points(seed=26)
    ff = _t(f[None])
    _close(epipolar.epipolar_lines(_m(f), _m(x1), image=1), ke.compute_correspond_epilines(_t(x1[None]), ff)[0])
    ref2 = ke.compute_correspond_epilines(_t(x2[None]), ff.transpose(-2, -1))[0]
    _close(epipolar.epipolar_lines(_m(f), _m(x2), image=2), ref2)


@row("`epipolar.essential_from_Rt(R1, t1, R2, t2)`", "`epipolar.relative_camera_motion(R1, t1, R2, t2)`")
def test_kornia_essential_from_rt_and_relative_motion():
    kornia = _kornia()
    ke = kornia.geometry.epipolar
    a, b = _pose(1), _pose(2)  # world-to-camera poses
    rt = (_t(a[None, :3, :3]), _t(a[None, :3, 3:]), _t(b[None, :3, :3]), _t(b[None, :3, 3:]))
    rel = epipolar.relative_pose(Camera(_m(K), _m(a)), Camera(_m(K), _m(b)))
    r, t = ke.relative_camera_motion(*rt)
    _close(rel[:3, :3], r[0]), _close(rel[:3, 3], t[0, :, 0])
    _close(epipolar.essential_from_pose(rel), ke.essential_from_Rt(*rt)[0])


@row("`epipolar.fundamental_from_essential(E, K1, K2)`")
def test_kornia_fundamental_from_essential():
    kornia = _kornia()
    rel = _two_view()[0]
    e = 2.0 * _skew(rel[:3, 3]) @ rel[:3, :3]
    k2 = np.array([[480.0, 0, 300], [0, 490, 250], [0, 0, 1]])
    ref = kornia.geometry.epipolar.fundamental_from_essential(_t(e[None]), _t(K[None]), _t(k2[None]))[0].numpy()
    got = _np(epipolar.fundamental_from_essential(_m(e), _m(K), _m(k2)))
    scale = np.linalg.norm(ref)  # one divisor for both: the scales must agree too
    _close(got / scale, ref / scale, 1e-5)


@row("`epipolar.decompose_essential_matrix(E)`")
def test_kornia_decompose_essential_matrix():
    kornia = _kornia()
    rel = _two_view()[0]
    e = 3.0 * _skew(rel[:3, 3]) @ rel[:3, :3]
    r1, r2, t = kornia.geometry.epipolar.decompose_essential_matrix(_t(e[None]))
    dec = epipolar.decompose_essential_matrix(_m(e))
    assert tuple(t.shape) == (1, 3, 1)
    _same_rotation_pair((dec.R1, dec.R2), (r1[0], r2[0]))
    assert abs(abs(float(_np(dec.t) @ _np(t[0, :, 0]))) - 1) < 1e-5


@row("`epipolar.motion_from_essential_choose_solution(E, K1, K2, x1, x2)`")
def test_kornia_motion_from_essential_choose_solution():
    kornia = _kornia()
    rel, p1, p2, x = _two_view(40, seed=27)
    e = _skew(rel[:3, 3]) @ rel[:3, :3]
    r, t, pts = kornia.geometry.epipolar.motion_from_essential_choose_solution(
        _t(e[None]), _t(K[None]), _t(K[None]), _t(p1[None]), _t(p2[None]))
    res = epipolar.recover_pose(_m(e), _m(p1), _m(p2), _m(K))
    assert res.ok.item() and np.array(res.inliers).all()
    pose = _np(res.pose)
    _close(pose[:3, :3], r[0], 1e-4), _close(pose[:3, 3], t[0, :, 0], 1e-4)
    _close(res.points, pts[0], 1e-3)
    _close(res.points, x / np.linalg.norm(rel[:3, 3]), 1e-3)


@row("`homography.find_homography_dlt`")
def test_kornia_find_homography_dlt():
    kornia = _kornia()
    src, dst, _ = _homography_data()
    w = RNG.uniform(0.5, 1.0, len(src))
    # kornia's default solver "lu" fixes h33 = 1; its "svd" solves the DLT as mlxgeom does.
    ref = kornia.geometry.homography.find_homography_dlt(_t(src[None]), _t(dst[None]), _t(w[None]), solver="svd")
    ref = ref[0].numpy()
    got = _np(homography.find_homography(_m(src), _m(dst), _m(w), method="dlt").H)
    _close(got / got[2, 2], ref / ref[2, 2], 1e-3)


@row("`ransac.RANSAC(model_type=\"homography\")`")
def test_kornia_ransac_homography():
    kornia = _kornia()
    src, dst, h = _homography_data(60)
    dst = dst.copy()
    dst[:12] += 60.0
    ransac = kornia.geometry.ransac.RANSAC(model_type="homography", inl_th=3.0, seed=0)
    ref, inl = ransac(_t(src), _t(dst))
    got = homography.find_homography(_m(src), _m(dst), method="ransac", threshold=3.0, key=mx.random.key(0))
    # Both find the same model; kornia's inl_th is on the squared error, mlxgeom's threshold on pixels.
    assert np.array(got.inliers)[12:].all() and not np.array(got.inliers)[:12].any()
    assert inl.numpy()[12:].all() and not inl.numpy()[:12].any()
    _close(_np(got.H) / _np(got.H)[2, 2], ref.numpy() / ref.numpy()[2, 2], 2e-2)


@row("`transform.get_perspective_transform`")
def test_kornia_get_perspective_transform():
    kornia = _kornia()
    src = np.array([[0, 0], [100, 0], [100, 80], [0, 80]], np.float64)
    dst = np.array([[3, 5], [98, -2], [110, 90], [-4, 77]], np.float64)
    ref = kornia.geometry.transform.get_perspective_transform(_t(src[None]), _t(dst[None]))[0].numpy()
    h = _np(homography.homography_from_4_points(_m(src), _m(dst))[0])
    _close(h / h[2, 2], ref / ref[2, 2], 1e-3)


@row("`transform.warp_perspective(src, M, dsize)`")
def test_kornia_warp_perspective():
    kornia = _kornia()
    img, h = _smooth(), np.array([[0.95, 0.03, 2.0], [-0.02, 1.02, 1.5], [1e-4, -1e-4, 1.0]])
    ref = kornia.geometry.transform.warp_perspective(_t(img.transpose(2, 0, 1)[None]), _t(h[None]), (40, 60))
    got = _np(homography.warp_perspective(_m(img), _m(h), (60, 40)))  # kornia dsize (h, w), mlxgeom (w, h)
    assert np.abs(got - ref[0].numpy().transpose(1, 2, 0))[2:-2, 2:-2].max() < 1.0


# ----- PyPose ---------------------------------------------------------------------------------
def _pypose():
    pytest.importorskip("torch")
    return pytest.importorskip("pypose")


@row("`pp.so3(phi).Exp()`, `pp.SO3(q)`")
def test_pypose_so3():
    pp = _pypose()
    _close(lie.SO3.exp(_m(ROTVECS)).matrix, pp.so3(_t(ROTVECS)).Exp().matrix())
    q = pp.so3(_t(ROTVECS)).Exp().tensor().numpy()  # xyzw
    _close(lie.SO3.from_quaternion(_m(q), order="xyzw").matrix, pp.SO3(_t(q)).matrix())


@row("`pp.se3(xi).Exp()`")
def test_pypose_se3_exp():
    pp = _pypose()
    xi = RNG.normal(size=(4, 6)) * 0.5
    ref = pp.se3(_t(xi)).Exp().matrix()
    _close(lie.SE3.exp(_m(xi)).matrix, ref), _close(lie.se3_exp(_m(xi)), ref)


@row("`pp.SE3(t_q)`")
def test_pypose_se3_from_t_q():
    pp = _pypose()
    tq = pp.randn_SE3(3, dtype=_t(0).dtype).tensor().numpy()
    got = lie.SE3.from_rt(lie.SO3.from_quaternion(_m(tq[..., 3:]), order="xyzw"), _m(tq[..., :3]))
    _close(got.matrix, pp.SE3(_t(tq)).matrix())


@row("`pp.mat2SO3(R)`")
def test_pypose_mat2so3():
    pp = _pypose()
    r = _rot(ROTVECS)
    _close(lie.SO3.from_matrix(_m(r)).matrix, pp.mat2SO3(_t(r)).matrix())


@row("`X.Log()`, `X.Inv()`, `X @ Y`, `X.Act(p)`, `X.matrix()`")
def test_pypose_group_verbs():
    pp = _pypose()
    a, b = (pp.randn_SE3(4, dtype=_t(0).dtype) for _ in range(2))
    x, y = lie.SE3(_m(a.matrix().numpy())), lie.SE3(_m(b.matrix().numpy()))
    p = RNG.normal(size=(4, 3))
    _close(x.log(), a.Log().tensor())
    _close(x.inverse().matrix, a.Inv().matrix())
    _close((x @ y).matrix, (a @ b).matrix())
    _close(x @ _m(p), a.Act(_t(p)))
    _close(x.matrix, a.matrix())


@row("`X.Adj(a)`")
def test_pypose_adjoint():
    pp = _pypose()
    x = pp.randn_SE3(4, dtype=_t(0).dtype)
    v = RNG.normal(size=(4, 6))
    got = lie.SE3(_m(x.matrix().numpy())).adjoint() @ _m(v[..., None])
    _close(got[..., 0], x.Adj(pp.se3(_t(v))).tensor())


@row("`pp.identity_SE3`, `pp.randn_SE3`")
def test_pypose_identity_and_random():
    pp = _pypose()
    _close(lie.SE3.identity((3,)).matrix, pp.identity_SE3(3).matrix())
    r = _np(lie.SE3.random((3,), key=mx.random.key(0)).matrix)
    assert r.shape == tuple(pp.randn_SE3(3).matrix().shape)
    _close(r[:, :3, :3] @ r[:, :3, :3].transpose(0, 2, 1), np.broadcast_to(np.eye(3), (3, 3, 3)))


@row("`pp.point2pixel(points, K, extrinsics)`", "`pp.pixel2point(pixels, depth, K)`")
def test_pypose_point2pixel_pixel2point():
    pp = _pypose()
    pw, pose = _scene(), _pose(1)
    ref = pp.point2pixel(_t(pw), _t(K), pp.mat2SE3(_t(pose)))
    _close(camera.project_points(_m(pw), _m(K), _m(pose)).pixels, ref, 1e-3)
    px, z = RNG.uniform(0, 600, (10, 2)), RNG.uniform(1, 5, 10)
    _close(camera.unproject_points(_m(px), _m(z), _m(K)), pp.pixel2point(_t(px), _t(z), _t(K)), 1e-3)


@row("`pp.reprojerr(points, pixels, K, extrinsics)`")
def test_pypose_reprojerr():
    pp = _pypose()
    pw, px, pose = _pnp_data()
    px = px + RNG.normal(0, 1.0, px.shape)
    ref = pp.reprojerr(_t(pw), _t(px), _t(K), pp.mat2SE3(_t(pose)))  # reduction="none": (N, 2) vectors
    got = optim.reprojection_residuals(_m(pose), _m(pw), _m(px), _m(K))
    assert tuple(ref.shape) == got.shape == (len(pw), 2)
    _close(got, ref, 1e-3)
    _close(mx.linalg.norm(got, axis=-1), ref.norm(dim=-1), 1e-3)


@row("`pp.optim.LM`")
def test_pypose_lm():
    pp = _pypose()
    import torch

    def residual(x):
        return mx.stack([x[..., 0] ** 2 + x[..., 1] - 11, x[..., 0] + x[..., 1] ** 2 - 7], axis=-1)

    class Himmelblau(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.x = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))

        def forward(self, _):
            x = self.x
            return torch.stack([x[0] ** 2 + x[1] - 11, x[0] + x[1] ** 2 - 7])

    model = Himmelblau()
    opt = pp.optim.LM(model)
    for _ in range(30):
        opt.step(input=None)
    got = optim.levenberg_marquardt(residual, mx.array([[1.0, 1.0]]), max_iters=30)
    _close(got.x[0], model.x.detach(), 1e-4)


@row("`pp.optim.kernel.Huber`, `pp.optim.kernel.Cauchy`")
def test_pypose_kernels():
    pp = _pypose()
    s = np.linspace(0, 30, 31)  # squared residual norms, the input of both
    _close(optim.Huber(2.0).rho(_m(s)), pp.optim.kernel.Huber(delta=2.0)(_t(s)), 1e-4)
    _close(optim.Cauchy(2.0).rho(_m(s)), pp.optim.kernel.Cauchy(delta=2.0)(_t(s)), 1e-4)


# ----- jaxlie ---------------------------------------------------------------------------------
def _jaxlie():
    pytest.importorskip("jax")
    return pytest.importorskip("jaxlie")


def _jax_f64():
    import jax

    jax.config.update("jax_enable_x64", True)


@row("`SO3.exp`, `SE3.exp`, `.log()`, `.inverse()`, `.adjoint()`, `@`")
def test_jaxlie_group_verbs():
    jaxlie = _jaxlie()
    _jax_f64()
    xi, xj = RNG.normal(size=(2, 4, 6)) * 0.5
    a, b = jaxlie.SE3.exp(xi), jaxlie.SE3.exp(xj)
    x, y = lie.SE3.exp(_m(xi)), lie.SE3.exp(_m(xj))
    _close(x.matrix, a.as_matrix()), _close(x.log(), a.log()), _close(x.inverse().matrix, a.inverse().as_matrix())
    _close(x.adjoint(), a.adjoint()), _close((x @ y).matrix, (a @ b).as_matrix())
    _close(lie.SO3.exp(_m(ROTVECS)).matrix, jaxlie.SO3.exp(ROTVECS).as_matrix())


@row("`SO3.from_quaternion_xyzw`, `SO3.as_quaternion_xyzw`, `SO3.wxyz`")
def test_jaxlie_quaternions():
    jaxlie = _jaxlie()
    _jax_f64()
    r = jaxlie.SO3.exp(ROTVECS)
    xyzw = np.array(r.as_quaternion_xyzw())
    _close(lie.SO3.from_quaternion(_m(xyzw), order="xyzw").matrix, jaxlie.SO3.from_quaternion_xyzw(xyzw).as_matrix())
    got = _np(lie.SO3.exp(_m(ROTVECS)).as_quaternion())
    ref = np.array(r.wxyz)
    _close(got, ref * np.sign(ref[:, :1]))
    _close(lie.SO3.exp(_m(ROTVECS)).as_quaternion(order="xyzw"), xyzw * np.sign(xyzw[:, 3:]))


@row("`SO3.from_matrix`, `.as_matrix()`")
def test_jaxlie_from_matrix():
    jaxlie = _jaxlie()
    _jax_f64()
    r = _rot(ROTVECS)
    _close(lie.SO3.from_matrix(_m(r)).matrix, jaxlie.SO3.from_matrix(r).as_matrix())


@row("`SO3.from_rpy_radians(roll, pitch, yaw)`")
def test_jaxlie_rpy():
    jaxlie = _jaxlie()
    _jax_f64()
    rpy = RNG.uniform(-1, 1, 3)
    ref = jaxlie.SO3.from_rpy_radians(*rpy).as_matrix()
    _close(lie.SO3.from_euler(_m(rpy), "xyz").matrix, ref)


@row("`SE3.from_rotation_and_translation`", "`SE3.rotation()`, `SE3.translation()`", "`SE3.apply(p)`")
def test_jaxlie_se3_parts():
    jaxlie = _jaxlie()
    _jax_f64()
    t, p = RNG.normal(size=3), RNG.normal(size=3)
    a = jaxlie.SE3.from_rotation_and_translation(jaxlie.SO3.exp(ROTVECS[0]), t)
    x = lie.SE3.from_rt(lie.SO3.exp(_m(ROTVECS[0])), _m(t))
    _close(x.matrix, a.as_matrix())
    _close(x.rotation.matrix, a.rotation().as_matrix()), _close(x.translation, a.translation())
    _close(x @ _m(p), a.apply(p))


@row("`SO3.identity()`, `SE3.sample_uniform(key)`")
def test_jaxlie_identity_and_sample():
    jaxlie = _jaxlie()
    import jax

    _close(lie.SO3.identity().matrix, jaxlie.SO3.identity().as_matrix())
    ref = jaxlie.SE3.sample_uniform(jax.random.PRNGKey(0)).as_matrix()
    got = _np(lie.SE3.random((), key=mx.random.key(0)).matrix)
    assert got.shape == ref.shape
    _close(got[:3, :3] @ got[:3, :3].T, np.eye(3))


@row("`jaxlie.manifold.rplus`, `jaxlie.manifold.rminus`")
def test_jaxlie_manifold_rplus_rminus_argument_order():
    jaxlie = _jaxlie()
    _jax_f64()
    xa, xb, d = RNG.normal(size=6) * 0.5, RNG.normal(size=6) * 0.5, RNG.normal(size=6) * 0.3
    a, b = jaxlie.SE3.exp(xa), jaxlie.SE3.exp(xb)
    x, y = lie.SE3.exp(_m(xa)), lie.SE3.exp(_m(xb))
    _close(x.rplus(_m(d)).matrix, jaxlie.manifold.rplus(a, d).as_matrix())
    # jaxlie.manifold.rminus(a, b) = log(a^-1 b) = b.rminus(a) here (arguments swapped).
    _close(y.rminus(x), jaxlie.manifold.rminus(a, b))
    assert not np.allclose(_np(x.rminus(y)), np.array(jaxlie.manifold.rminus(a, b)), atol=1e-3)


# ----- pytorch3d (rows checked where pytorch3d is installed) -------------------------------------
def _p3d():
    pytest.importorskip("torch")
    return pytest.importorskip("pytorch3d.transforms")


@row("`axis_angle_to_matrix`, `so3_exp_map`", "`matrix_to_axis_angle`, `so3_log_map`")
def test_pytorch3d_axis_angle():
    t3 = _p3d()
    _close(lie.so3_exp(_m(ROTVECS)), t3.axis_angle_to_matrix(_t(ROTVECS)))
    _close(lie.so3_exp(_m(ROTVECS)), t3.so3_exp_map(_t(ROTVECS)))
    _close(lie.so3_log(_m(_rot(ROTVECS))), t3.matrix_to_axis_angle(_t(_rot(ROTVECS))))
    _close(lie.so3_log(_m(_rot(ROTVECS))), t3.so3_log_map(_t(_rot(ROTVECS))), 1e-3)


@row("`quaternion_to_matrix`, `matrix_to_quaternion`")
def test_pytorch3d_quaternions():
    t3 = _p3d()
    q = RNG.normal(size=(5, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    _close(lie.quaternion_to_matrix(_m(q)), t3.quaternion_to_matrix(_t(q)))
    ref = t3.matrix_to_quaternion(_t(_rot(ROTVECS))).numpy()
    _close(lie.matrix_to_quaternion(_m(_rot(ROTVECS))), ref * np.sign(ref[:, :1]))


@row("`euler_angles_to_matrix(a, \"XYZ\")`, `matrix_to_euler_angles`")
def test_pytorch3d_euler():
    t3 = _p3d()
    a = RNG.uniform(-1, 1, (5, 3))
    _close(lie.euler_to_matrix(_m(a), "XYZ"), t3.euler_angles_to_matrix(_t(a), "XYZ"))
    _close(lie.matrix_to_euler(lie.euler_to_matrix(_m(a), "XYZ"), "XYZ"),
           t3.matrix_to_euler_angles(t3.euler_angles_to_matrix(_t(a), "XYZ"), "XYZ"))


@row("`rotation_6d_to_matrix`, `matrix_to_rotation_6d`")
def test_pytorch3d_sixd():
    t3 = _p3d()
    x = RNG.normal(size=(5, 6))
    _close(lie.sixd_to_matrix(_m(x)).swapaxes(-1, -2), t3.rotation_6d_to_matrix(_t(x)))


@row("`se3_exp_map`, `se3_log_map`")
def test_pytorch3d_se3():
    t3 = _p3d()
    xi = RNG.normal(size=(4, 6)) * 0.5
    m = t3.se3_exp_map(_t(np.c_[xi[:, :3], xi[:, 3:]])).numpy()  # row-vector layout [[R, 0], [T, 1]]
    got = _np(lie.se3_exp(_m(xi)))
    _close(got[:, :3, :3], m[:, :3, :3].transpose(0, 2, 1))


@row("`Transform3d.transform_points`")
def test_pytorch3d_transform_points():
    t3 = _p3d()
    pose, p = _pose(1), RNG.normal(size=(7, 3))
    tr = t3.Transform3d(matrix=_t(pose.T[None]))
    _close(lie.se3_act(_m(pose), _m(p)), tr.transform_points(_t(p[None]))[0])


# ----- COLMAP ---------------------------------------------------------------------------------
SCENE = ROOT / "data" / "scene" / "sparse"


@row("`read_model`, `write_model`")
def test_colmap_read_write_model(tmp_path: Path):
    pycolmap = pytest.importorskip("pycolmap")
    model = camera.colmap.read_model(str(SCENE), ext=".txt")
    rec = pycolmap.Reconstruction(str(SCENE))
    assert sorted(model.images) == sorted(rec.images) and sorted(model.points3D) == sorted(rec.points3D)
    for i, p in rec.points3D.items():
        _close(model.points3D[i].xyz, p.xyz, 1e-9)
    camera.colmap.write_model(model, str(tmp_path), ext=".bin")
    back = pycolmap.Reconstruction(str(tmp_path))
    assert sorted(back.images) == sorted(rec.images)
    for i, c in rec.cameras.items():
        _close(back.cameras[i].params, c.params, 1e-12)


@row("`qvec2rotmat`, `rotmat2qvec`")
def test_colmap_quaternions():
    pycolmap = pytest.importorskip("pycolmap")
    model = camera.colmap.read_model(str(SCENE), ext=".txt")
    rec = pycolmap.Reconstruction(str(SCENE))
    for i, im in model.images.items():
        ref = rec.images[i].cam_from_world().rotation.matrix()
        _close(lie.quaternion_to_matrix(_m(im.qvec, mx.float64)), ref, 1e-9)
        q = _np(lie.matrix_to_quaternion(_m(ref, mx.float64)))
        _close(q * np.sign(q[0]), im.qvec * np.sign(im.qvec[0]), 1e-9)


@row("images' `(qvec, tvec)` + cameras' params")
def test_colmap_model_to_cameras_shifts_half_a_pixel():
    pycolmap = pytest.importorskip("pycolmap")
    model = camera.colmap.read_model(str(SCENE), ext=".txt")
    rec = pycolmap.Reconstruction(str(SCENE))
    cams, ids = camera.colmap.model_to_cameras(model, dtype=mx.float64)
    pts = np.array([p.xyz for p in rec.points3D.values()])
    for b, i in enumerate(np.array(ids).tolist()):
        im = rec.images[i]
        pc = pts @ im.cam_from_world().rotation.matrix().T + im.cam_from_world().translation
        front = pc[:, 2] > 0.1  # COLMAP projects points behind the camera too; mlxgeom flags them
        ref = np.array(rec.cameras[im.camera_id].img_from_cam(pc[front]))
        got = _np(cams.select(b).project(_m(pts[front], mx.float64)).pixels)
        _close(got, ref - 0.5, 1e-6)


# ----- pycolmap (two-view geometry) -------------------------------------------------------------
def _pycolmap_camera(pycolmap):
    return pycolmap.Camera(model="PINHOLE", width=640, height=480, params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])


def _essential_problem(pycolmap, seed):
    """Two views with 20 outliers among 100 matches, pycolmap's camera, and mlxgeom's essential-matrix RANSAC."""
    rel, p1, p2, _ = _two_view(100, seed=seed)
    p2 = _outliers(p2, 20)
    est = epipolar.find_essential_matrix(_m(p1), _m(p2), _m(K), threshold=1.0, key=mx.random.key(0))
    return rel, p1, p2, _pycolmap_camera(pycolmap), est


@row("`pycolmap.estimate_essential_matrix(points2D1, points2D2, camera1, camera2)`")
def test_pycolmap_estimate_essential_matrix():
    pycolmap = pytest.importorskip("pycolmap")
    rel, p1, p2, cam, got = _essential_problem(pycolmap, 19)
    _close(cam.calibration_matrix(), K, 1e-12)
    ref = pycolmap.estimate_essential_matrix(p1, p2, cam, cam, pycolmap.RANSACOptions(max_error=1.0, random_seed=0))
    truth = [False] * 20 + [True] * 80
    assert got.ok.item() and ref["num_inliers"] == got.num_inliers.item() == 80
    assert np.array(got.inliers).tolist() == np.array(ref["inlier_mask"]).tolist() == truth
    _close(_unit(got.E), _unit(ref["E"]), 1e-3)  # E has no sign convention
    pose = _np(epipolar.recover_pose(got.E, _m(p1), _m(p2), _m(K), mask=got.inliers).pose)
    _close(pose[:3], ref["cam2_from_cam1"].matrix(), 1e-3)


@row("`pycolmap.estimate_fundamental_matrix(points2D1, points2D2)`")
def test_pycolmap_estimate_fundamental_matrix():
    pycolmap = pytest.importorskip("pycolmap")
    rel, p1, p2, _ = _two_view(100, seed=20)
    p2 = _outliers(p2, 20)
    ref = pycolmap.estimate_fundamental_matrix(p1, p2, pycolmap.RANSACOptions(max_error=1.0, random_seed=0))
    got = epipolar.find_fundamental_matrix(_m(p1), _m(p2), method="ransac", threshold=1.0, key=mx.random.key(0))
    assert got.ok.item() and ref["num_inliers"] == got.num_inliers.item() == 80
    assert np.array(got.inliers).tolist() == np.array(ref["inlier_mask"]).tolist() == [False] * 20 + [True] * 80
    kinv = np.linalg.inv(K)
    truth = _unit(kinv.T @ _skew(rel[:3, 3]) @ rel[:3, :3] @ kinv)
    _close(got.F, truth, 1e-3), _close(_unit(ref["F"]), truth, 1e-3)


@row("`pycolmap.compute_squared_sampson_error(points2D1, points2D2, E)`")
def test_pycolmap_compute_squared_sampson_error():
    pycolmap = pytest.importorskip("pycolmap")
    f, x1, x2 = _f_and_points(seed=21)
    ref = pycolmap.compute_squared_sampson_error(x1, x2, f)
    _close(epipolar.sampson_distance(_m(f), _m(x1), _m(x2)), ref, 1e-4)


@row("`pycolmap.essential_matrix_from_pose(cam2_from_cam1)`")
def test_pycolmap_essential_matrix_from_pose():
    pycolmap = pytest.importorskip("pycolmap")
    rel = _two_view(seed=22)[0]
    rel[:3, 3] *= 2.5 / np.linalg.norm(rel[:3, 3])
    ref = pycolmap.essential_matrix_from_pose(pycolmap.Rigid3d(pycolmap.Rotation3d(rel[:3, :3]), rel[:3, 3]))
    got = _np(epipolar.essential_from_pose(_m(rel)))
    _close(got, _skew(rel[:3, 3]) @ rel[:3, :3], 1e-5)
    _close(got / 2.5, ref, 1e-5)


@row("`pycolmap.estimate_relative_pose`, `pycolmap.estimate_two_view_geometry_pose`")
def test_pycolmap_estimate_relative_pose():
    pycolmap = pytest.importorskip("pycolmap")
    rel, p1, p2, cam, est = _essential_problem(pycolmap, 23)
    ref = pycolmap.estimate_relative_pose(cam, p1, cam, p2, pycolmap.RANSACOptions(max_error=1.0, random_seed=0))
    res = epipolar.recover_pose(est.E, _m(p1), _m(p2), _m(K), mask=est.inliers)
    pose = _np(res.pose)
    assert res.ok.item() and pose.shape == (4, 4)
    _close(pose[:3], ref["cam2_from_cam1"].matrix(), 1e-3)
    _close(pose[:3, 3], rel[:3, 3] / np.linalg.norm(rel[:3, 3]), 1e-3)
    geometry = pycolmap.TwoViewGeometry()
    geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
    geometry.E = _np(est.E)
    geometry.inlier_matches = np.repeat(np.flatnonzero(np.array(est.inliers)), 2).reshape(-1, 2).astype(np.uint32)
    assert pycolmap.estimate_two_view_geometry_pose(cam, p1, cam, p2, geometry)
    _close(pose[:3], geometry.cam2_from_cam1.matrix(), 1e-3)
