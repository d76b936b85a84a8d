"""Peer implementations timed beside mlxgeom: PyTorch (closed forms written here, and
``torch.linalg``), kornia, PyPose and mlx3d. Each is optional: a peer whose package does not
import is left out (its table cell shows "-"). Every factory takes numpy float32 inputs and
returns a zero-argument callable that runs the peer once on its own device (CUDA if there).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 -- any failed import just removes the column
        return None


torch = _optional("torch")
kornia = _optional("kornia")
pypose = _optional("pypose")
mlx3d = _optional("mlx3d")
if mlx3d is not None:
    import mlx3d.transforms  # noqa: F401

DEVICE = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
Peer = Callable[[], Any]


def _t(x: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(DEVICE)


def _torch_so3_exp(phi: Any) -> Any:
    """Rodrigues' formula with a small-angle Taylor branch, as a torch user would write it."""
    theta2 = (phi * phi).sum(-1, keepdim=True)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = phi.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*phi.shape[:-1], 3, 3)
    eye = torch.eye(3, device=phi.device, dtype=phi.dtype)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def _torch_se3_exp(xi: Any) -> Any:
    rho, phi = xi[..., :3], xi[..., 3:]
    theta2 = (phi * phi).sum(-1, keepdim=True)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-6
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    c = torch.where(small, 1 / 6 - theta2 / 120, (theta - torch.sin(theta)) / (theta2 * theta).clamp_min(1e-12))
    x, y, z = phi.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*phi.shape[:-1], 3, 3)
    eye = torch.eye(3, device=xi.device, dtype=xi.dtype)
    k2 = k @ k
    v = eye + b[..., None] * k + c[..., None] * k2
    out = torch.zeros(*xi.shape[:-1], 4, 4, device=xi.device, dtype=xi.dtype)
    out[..., :3, :3] = _torch_so3_exp(phi)
    out[..., :3, 3] = (v @ rho[..., None])[..., 0]
    out[..., 3, 3] = 1
    return out


def _se3_hat_torch(xi: Any) -> Any:
    rho, phi = xi[..., :3], xi[..., 3:]
    x, y, z = phi.unbind(-1)
    zero = torch.zeros_like(x)
    rows = [zero, -z, y, rho[..., 0], z, zero, -x, rho[..., 1], -y, x, zero, rho[..., 2], zero, zero, zero, zero]
    return torch.stack(rows, -1).reshape(*xi.shape[:-1], 4, 4)


def so3_exp(phi: np.ndarray) -> dict[str, Peer]:
    peers: dict[str, Peer] = {}
    if torch is not None:
        t = _t(phi)
        peers["torch closed form"] = lambda: _torch_so3_exp(t)
    if kornia is not None:
        t = _t(phi)
        peers["kornia"] = lambda: kornia.geometry.conversions.axis_angle_to_rotation_matrix(t)
    if mlx3d is not None:
        import mlx.core as mx

        m = mx.array(phi)
        peers["mlx3d"] = lambda: mlx3d.transforms.so3_exp_map(m)
    return peers


def se3_exp(xi: np.ndarray) -> dict[str, Peer]:
    peers: dict[str, Peer] = {}
    if torch is not None:
        t = _t(xi)
        peers["torch closed form"] = lambda: _torch_se3_exp(t)
        peers["torch matrix_exp"] = lambda: torch.linalg.matrix_exp(_se3_hat_torch(t))
    if kornia is not None:
        t = _t(xi)
        se3 = kornia.geometry.liegroup.Se3
        peers["kornia"] = lambda: se3.exp(t).matrix()
    if pypose is not None:
        t = _t(xi)
        peers["pypose"] = lambda: pypose.se3(t).Exp().matrix()
    if mlx3d is not None:
        import mlx.core as mx

        m = mx.array(xi)
        peers["mlx3d"] = lambda: mlx3d.transforms.se3_exp_map(m).get_matrix()
    return peers


def so3_log(r: np.ndarray) -> dict[str, Peer]:
    peers: dict[str, Peer] = {}
    if kornia is not None:
        t = _t(r)
        peers["kornia"] = lambda: kornia.geometry.conversions.rotation_matrix_to_axis_angle(t)
    if mlx3d is not None:
        import mlx.core as mx

        m = mx.array(r)
        peers["mlx3d"] = lambda: mlx3d.transforms.so3_log_map(m)
    return peers


def se3_log(t4: np.ndarray) -> dict[str, Peer]:
    peers: dict[str, Peer] = {}
    if pypose is not None:
        t = _t(t4)
        peers["pypose"] = lambda: pypose.mat2SE3(t, check=False).Log()
    return peers


def inverse(a: np.ndarray) -> dict[str, Peer]:
    return {"torch": (lambda t: (lambda: torch.linalg.inv(t)))(_t(a))} if torch is not None else {}


def matrix_exp(a: np.ndarray) -> dict[str, Peer]:
    return {"torch": (lambda t: (lambda: torch.linalg.matrix_exp(t)))(_t(a))} if torch is not None else {}


def project(points: np.ndarray, k: np.ndarray, pose: np.ndarray) -> dict[str, Peer]:
    """Pinhole projection (no distortion) of world points (N, 3) through C cameras: K (3, 3) and
    world-to-camera poses (C, 4, 4); pixels (C, N, 2)."""
    peers: dict[str, Peer] = {}
    if torch is None:
        return peers
    p, kk, T = _t(points), _t(k), _t(pose)
    rot_t, t = T[:, :3, :3].transpose(1, 2), T[:, None, :3, 3]
    f, c = kk.diagonal()[:2], kk[:2, 2]

    def torch_project():
        pc = torch.matmul(p, rot_t) + t
        return pc[..., :2] / pc[..., 2:3] * f + c

    peers["torch"] = torch_project
    if kornia is not None:
        cams = kk.expand(T.shape[0], 1, 3, 3)
        cloud = p.expand(T.shape[0], *p.shape)
        peers["kornia"] = lambda: kornia.geometry.camera.perspective.project_points(
            kornia.geometry.linalg.transform_points(T, cloud), cams)
    return peers


def homography_dlt(src: np.ndarray, dst: np.ndarray) -> dict[str, Peer]:
    if kornia is None:
        return {}
    s, d = _t(src), _t(dst)
    w = torch.ones(s.shape[:-1], device=s.device)
    return {"kornia DLT": lambda: kornia.geometry.homography.find_homography_dlt(s, d, w)}


def homography_ransac(src: np.ndarray, dst: np.ndarray) -> dict[str, Peer]:
    """kornia's RANSAC handles one pair per call: a loop over pairs."""
    if kornia is None:
        return {}
    ransac = kornia.geometry.ransac.RANSAC("homography", inl_th=3.0, max_iter=10)
    pairs = [(_t(s), _t(d)) for s, d in zip(src, dst)]
    return {"kornia RANSAC loop": lambda: [ransac(s, d)[0] for s, d in pairs]}


def sync() -> None:
    if torch is not None and DEVICE == "cuda":
        torch.cuda.synchronize()
