"""Samplers of rotation vectors / twists shared by the Lie group tests, and checks of the samplers."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

SAMPLERS = ("haar", "identity", "tiny", "near_pi")


def unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def rotvecs(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) float64 rotation vectors with angle in [0, pi).

    haar: Haar-uniform rotations; identity: exactly 0; tiny: N(0, 1) * 1e-7;
    near_pi: angle pi - 10^U(-4, -1) (pi - 1e-4 included).
    """
    if kind == "haar":
        return Rotation.random(n, random_state=rng).as_rotvec()
    if kind == "identity":
        return np.zeros((n, 3))
    if kind == "tiny":
        return rng.standard_normal((n, 3)) * 1e-7
    if kind == "near_pi":
        gap = 10.0 ** rng.uniform(-4, -1, n)
        gap[0] = 1e-4
        return unit_vectors(n, rng) * (np.pi - gap)[:, None]
    raise ValueError(kind)


def twists(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 6) twists [rho, phi] with phi from :func:`rotvecs` and rho ~ N(0, 1) (scaled like phi for tiny)."""
    phi = rotvecs(kind, n, rng)
    rho = rng.standard_normal((n, 3)) * (1e-7 if kind == "tiny" else 1.0)
    return np.concatenate([rho, phi], axis=-1)


def test_near_pi_sampler_stays_below_pi_and_reaches_1e4():
    v = rotvecs("near_pi", 50, np.random.default_rng(0))
    t = np.linalg.norm(v, axis=-1)
    assert np.all(t < np.pi) and np.all(t > np.pi - 0.11)
    assert np.isclose(t[0], np.pi - 1e-4)


def test_haar_sampler_has_zero_mean_matrix():
    r = Rotation.from_rotvec(rotvecs("haar", 20000, np.random.default_rng(1))).as_matrix()
    assert np.abs(r.mean(axis=0)).max() < 0.03
