"""Robustness campaign for mlxgeom.linalg (tests/ROBUSTNESS.md; machinery in test_robustness_harness.py)."""

from __future__ import annotations

import numpy as np

from mlxgeom import linalg
from test_robustness_harness import Arg, Spec, define_tests, normal, rotations, spd, well_conditioned

EYE3 = np.eye(3)
RANK1_3 = np.outer([1.0, 2.0, 3.0], [0.5, -1.0, 2.0])
RANK2_3 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
DRIFT = rotations(np.random.default_rng(5), ()) + 1e-3 * np.random.default_rng(6).normal(size=(3, 3))
SINGULAR = {"zero": (np.zeros((3, 3)), "flagged"), "rank1": (RANK1_3, "flagged"), "rank2": (RANK2_3, "flagged")}


def _n(n: int, value: np.ndarray) -> np.ndarray:
    out = np.eye(n)
    out[:3, :3] = value[:n, :n] if n < 3 else value
    if n < 3:
        out = value[:n, :n].copy()
        out[-1] = out[0]  # exactly singular at every n
    return out


def _inverse_specs() -> list[Spec]:
    specs = []
    for n in (2, 3, 4):
        sing = {f"singular_{k}": ([_n(n, v) if n != 4 else np.pad(v, ((0, 1), (0, 1)))], e) for k, (v, e) in SINGULAR.items()}
        huge = {"entries_1e6": ([np.eye(n) * 1e6 + 1e5], "valid"), "entries_1e-6": ([np.eye(n) * 1e-6], "valid")}
        det_cases = {k: (a, "valid") for k, (a, _) in sing.items()} | huge
        # The inverse fits float32 (and so do its gradients); the cofactors of the unscaled matrix would not.
        huge |= {"entries_1e20": ([well_conditioned(n)(np.random.default_rng(n), ()) * 1e20], "valid")}
        specs += [
            Spec(f"det_{n}", linalg.det, [Arg((n, n), well_conditioned(n))], specials=det_cases),
            Spec(f"inv_{n}", linalg.inv, [Arg((n, n), well_conditioned(n))], specials=sing | huge),
            Spec(f"inv_ex_{n}", linalg.inv_ex, [Arg((n, n), well_conditioned(n))], mask=lambda r: r[1],
                 specials=sing | huge),
            Spec(f"solve_{n}", linalg.solve, [Arg((n, n), well_conditioned(n)), Arg((n,), normal(n))], broadcast_ndim=False,
                 specials={k: (a + [None], e) for k, (a, e) in (sing | huge).items()}),
            Spec(f"solve_{n}_matrix_rhs", linalg.solve,
                 [Arg((n, n), well_conditioned(n)), Arg((n, None), normal(n, n + 1))]),
        ]
    return specs


def _spd_specs() -> list[Spec]:
    notpd = {"indefinite": ([np.diag([1.0, -1.0, 2.0])], "flagged"), "zero": ([np.zeros((3, 3))], "flagged"),
             "semidefinite": ([np.diag([1.0, 0.0, 2.0])], "flagged"), "scale_1e6": ([np.eye(3) * 1e6], "valid"),
             "scale_1e-6": ([np.eye(3) * 1e-6], "valid")}
    cases = {k: (a + [None], e) for k, (a, e) in notpd.items()}
    return [
        Spec("solve_spd", linalg.solve_spd, [Arg((3, 3), spd(3)), Arg((3,), normal(3))], specials=cases,
             broadcast_ndim=False),
        Spec("solve_spd_ex", linalg.solve_spd_ex, [Arg((3, 3), spd(3)), Arg((3,), normal(3))], mask=lambda r: r[1],
             specials=cases, broadcast_ndim=False),
        Spec("solve_spd_ex_6", linalg.solve_spd_ex, [Arg((6, 6), spd(6)), Arg((6, None), normal(6, 2))], mask=lambda r: r[1]),
    ]


def _sym(gen):
    def g(rng, b):
        m = gen(rng, b)
        return (m + np.swapaxes(m, -1, -2)) / 2
    return g




def _spectral_specs() -> list[Spec]:
    sym_cases = {"identity_repeated": ([EYE3], "valid"), "zero": ([np.zeros((3, 3))], "valid"),
                 "rank1": ([RANK1_3 + RANK1_3.T], "valid"), "scale_1e6": ([np.diag([1e6, 2e6, -1e6])], "valid"),
                 "scale_1e-12": ([np.diag([1e-12, 2e-12, 3e-12])], "valid")}
    svd_cases = {"identity_repeated": ([EYE3], "valid"), "zero": ([np.zeros((3, 3))], "valid"),
                 "rank1": ([RANK1_3], "valid"), "rank2": ([RANK2_3], "valid"), "rotation_drift": ([DRIFT], "valid"),
                 "reflection": ([np.diag([1.0, 1.0, -1.0])], "valid"), "scale_1e6": ([RANK2_3 * 1e6], "valid")}
    return [
        Spec("eigh_3", linalg.eigh, [Arg((3, 3), _sym(normal(3, 3)))], specials=sym_cases),
        Spec("eigh_5", linalg.eigh, [Arg((5, 5), _sym(normal(5, 5)))]),
        Spec("eigh3", linalg.eigh3, [Arg((3, 3), _sym(normal(3, 3)))], specials=sym_cases),
        Spec("svd3", linalg.svd3, [Arg((3, 3), normal(3, 3))], specials=svd_cases),
        Spec("project_to_so3", linalg.project_to_so3, [Arg((3, 3), normal(3, 3))],
             specials=svd_cases | {"zero": ([np.zeros((3, 3))], "any"), "rank1": ([RANK1_3], "any")}),
    ]


def _other_specs() -> list[Spec]:
    big = np.array([[0.0, 5e3, 0.0], [-5e3, 0.0, 0.0], [0.0, 0.0, 0.0]])
    return [
        Spec("matrix_exp_3", linalg.matrix_exp, [Arg((3, 3), normal(3, 3))],
             specials={"zero": ([np.zeros((3, 3))], "valid"), "tiny_1e-12": ([RANK2_3 * 1e-12], "valid"),
                       "skew_norm_1e3": ([big / 5], "valid"), "norm_beyond_limit": ([big * 10], "flagged"),
                       "nilpotent": ([np.triu(np.ones((3, 3)), 1)], "valid")}),
        Spec("matrix_exp_5", linalg.matrix_exp, [Arg((5, 5), normal(5, 5))]),
        Spec("matmul", linalg.matmul, [Arg((None, 4), normal(3, 4), integer_ok=False), Arg((4, None), normal(4, 2), integer_ok=False)], low_precision=False),
    ]


SPECS = _inverse_specs() + _spd_specs() + _spectral_specs() + _other_specs()
globals().update(define_tests(SPECS, hypothesis_examples=5))
