"""Table-driven robustness checks shared by the tests/test_robustness_<subpackage>.py files.

A :class:`Spec` describes one public function: how to build valid inputs of any batch shape,
which outputs are masks, and which arguments may be differentiated. The ``check_*`` functions
below drive every spec through the same case families (tests/ROBUSTNESS.md):

- shapes: unbatched, batched, large leading dims, B = 0, broadcast and clashing batches,
  wrong trailing dims (``ValueError`` naming the expected shape);
- input kinds: numpy, Python lists, integers, float64, float16 and bfloat16 (dtype policy of
  mlxgeom/_checks.py);
- NaN / inf in one batch entry (other entries bit-identical, the entry flagged by its mask or
  non-finite, never silently finite);
- hand-picked special values per function, stacked between two ordinary entries;
- gradients of the valid entries (a sum over them, masked with ``mx.where``) finite.

This file holds no tests itself; the per-subpackage files parametrise over their tables.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import strategies as st
from helpers import on_cpu

Gen = Callable[[np.random.Generator, tuple], np.ndarray]


@dataclasses.dataclass
class Arg:
    """One array argument: its trailing shape (None: any size) and a generator of valid values."""

    trailing: tuple[int | None, ...]
    gen: Gen
    diff: bool = True  # differentiate through it in the gradient checks
    integer_ok: bool = True  # rounding it to ints still gives a valid input


@dataclasses.dataclass
class Spec:
    """How to drive one public function through the campaign."""

    name: str
    fn: Callable[..., Any]
    args: list[Arg]
    # mask(result) -> bool array whose leading dims are the batch (True = entry is valid)
    mask: Callable[[Any], mx.array] | None = None
    # outputs(result) -> the float arrays the gradient and NaN checks look at
    outputs: Callable[[Any], list[mx.array]] | None = None
    # specials: name -> (list of unbatched args, expectation) with expectation in
    # "valid" (finite outputs, mask True), "flagged" (mask False or non-finite output) or "any"
    specials: dict[str, tuple[list[Any], str]] = dataclasses.field(default_factory=dict)
    grad: bool = True
    low_precision: bool = True  # float16/bfloat16 in, same dtype out
    broadcast: bool = True  # batch dims of the array arguments broadcast against each other
    # an argument with fewer batch dims broadcasts too (False where ndim decides the reading,
    # e.g. solve's vector-or-matrix right-hand side)
    broadcast_ndim: bool = True
    wrong_trailing: bool = True
    # atol/rtol used when comparing a batched entry with the unbatched call
    tol: float = 1e-4
    # absolute tolerance of float16/bfloat16 results against float32 on the same rounded inputs,
    # for wrappers whose intermediate values (e.g. dst = pi(H src)) are rounded too; None: relative
    lowp_atol: float | None = None
    # NaN in the input may come out finite where the function ignores those entries
    # (e.g. it reads only part of a matrix): then only isolation is checked.
    nan_must_show: bool = True
    nan_args: Sequence[int] | None = None  # args poisoned in the NaN checks (default all)
    # known failures in files this campaign may not edit: "family[:case]" -> reason. The test
    # must still fail (strict): once fixed it fails with "known failure fixed", so the entry goes.
    known: dict[str, str] = dataclasses.field(default_factory=dict)
    kinds: Sequence[str] | None = None  # input kinds the function takes (default: all of INPUT_KINDS)

    def __str__(self) -> str:
        return self.name


# ---------------------------------------------------------------- generators

def normal(*trailing: int, scale: float = 1.0, shift: float = 0.0) -> Gen:
    return lambda rng, b: rng.normal(size=b + trailing) * scale + shift


def uniform(*trailing: int, lo: float = -1.0, hi: float = 1.0) -> Gen:
    return lambda rng, b: rng.uniform(lo, hi, size=b + trailing)


def rotations(rng: np.random.Generator, b: tuple) -> np.ndarray:
    q = rng.normal(size=b + (4,))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    r = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=-1)
    return r.reshape(b + (3, 3))


def poses(rng: np.random.Generator, b: tuple) -> np.ndarray:
    t = np.zeros(b + (4, 4))
    t[..., :3, :3] = rotations(rng, b)
    t[..., :3, 3] = rng.normal(size=b + (3,))
    t[..., 3, 3] = 1.0
    return t


def well_conditioned(n: int) -> Gen:
    return lambda rng, b: rng.normal(size=b + (n, n)) * 0.3 + np.eye(n) * 2.0


def spd(n: int) -> Gen:
    def gen(rng: np.random.Generator, b: tuple) -> np.ndarray:
        m = rng.normal(size=b + (n, n))
        return m @ np.swapaxes(m, -1, -2) / n + np.eye(n)
    return gen


def intrinsics(rng: np.random.Generator, b: tuple) -> np.ndarray:
    k = np.zeros(b + (3, 3))
    f = rng.uniform(300, 600, size=b)
    k[..., 0, 0], k[..., 1, 1] = f, f * rng.uniform(0.9, 1.1, size=b)
    k[..., 0, 2], k[..., 1, 2] = rng.uniform(200, 400, size=b), rng.uniform(150, 300, size=b)
    k[..., 2, 2] = 1.0
    return k


def const(value: Any) -> Gen:
    value = np.asarray(value, dtype=np.float64)
    return lambda rng, b: np.broadcast_to(value, b + value.shape).copy()


# ---------------------------------------------------------------- helpers

def leaves(tree: Any) -> list[Any]:
    if isinstance(tree, (list, tuple)):
        return [x for t in tree for x in leaves(t)]
    if isinstance(tree, dict):
        return [x for t in tree.values() for x in leaves(t)]
    return [tree]


def arrays(result: Any) -> list[mx.array]:
    return [x for x in leaves(result) if isinstance(x, mx.array)]


def float_outputs(spec: Spec, result: Any) -> list[mx.array]:
    outs = spec.outputs(result) if spec.outputs else arrays(result)
    return [o for o in outs if mx.issubdtype(o.dtype, mx.floating)]


def np64(x: mx.array) -> np.ndarray:
    if x.dtype in (mx.float16, mx.bfloat16):
        x = x.astype(mx.float32)
    return np.array(x).astype(np.float64) if x.dtype != mx.bool_ else np.array(x)


def make_args(spec: Spec, batch: tuple, seed: int = 0, batches: Sequence[tuple] | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    batches = batches or [batch] * len(spec.args)
    return [a.gen(rng, tuple(b)) for a, b in zip(spec.args, batches)]


def to_mx(values: Sequence[np.ndarray], dtype: mx.Dtype = mx.float32) -> list[mx.array]:
    return [mx.array(np.asarray(v, dtype=np.float64)).astype(dtype) for v in values]


def entry_mask(spec: Spec, result: Any, batch: tuple) -> np.ndarray | None:
    """Per batch entry: True where every element of the spec's mask is True."""
    if spec.mask is None:
        return None
    m = np.array(spec.mask(result))
    assert m.dtype == np.bool_, f"{spec.name}: mask dtype {m.dtype}"
    assert m.shape[: len(batch)] == tuple(batch), f"{spec.name}: mask shape {m.shape} for batch {batch}"
    return m.reshape(m.shape[: len(batch)] + (-1,)).all(-1) if m.ndim > len(batch) else m


def entry_finite(out: mx.array, batch: tuple) -> np.ndarray:
    a = np64(out)
    return np.isfinite(a.reshape(a.shape[: len(batch)] + (-1,))).all(-1)


def assert_entries_equal(spec: Spec, got: Any, want: Any, index: tuple, label: str) -> None:
    """Entry ``index`` of the batched result equals the unbatched result ``want``."""
    g_all, w_all = arrays(got), arrays(want)
    assert len(g_all) == len(w_all), f"{spec.name}: {label}: {len(g_all)} vs {len(w_all)} outputs"
    for k, (g, w) in enumerate(zip(g_all, w_all)):
        ge = np64(g)[index]
        assert ge.shape == w.shape, f"{spec.name}: {label}: output {k} entry shape {ge.shape} vs unbatched {w.shape}"
        np.testing.assert_allclose(ge, np64(w), rtol=spec.tol, atol=spec.tol, equal_nan=True,
                                   err_msg=f"{spec.name}: {label}: output {k}")


# ---------------------------------------------------------------- case families

BATCHES = [(), (3,), (2, 3, 2), (0,), (1, 0, 2)]


def check_batch_shape(spec: Spec, batch: tuple) -> None:
    """Outputs lead with the batch shape and every entry equals the unbatched call."""
    vals = make_args(spec, batch)
    res = spec.fn(*to_mx(vals))
    for k, out in enumerate(arrays(res)):
        assert tuple(out.shape[: len(batch)]) == batch, f"{spec.name}: output {k} shape {out.shape}, batch {batch}"
    n = int(np.prod(batch)) if batch else 1
    if n == 0:
        return
    flat_idx = [np.unravel_index(i, batch) if batch else () for i in (0, n - 1)]
    for idx in flat_idx:
        idx = tuple(int(i) for i in idx)
        single = spec.fn(*to_mx([v[idx] for v in vals]))
        assert_entries_equal(spec, res, single, idx, f"batch {batch} entry {idx}")


def check_broadcast(spec: Spec) -> None:
    """Arg 0 with batch (3, 1), the others (1, 2): batch (3, 2); then arg 0 (2,) against unbatched others."""
    if len(spec.args) < 2 or not spec.broadcast:
        pytest.skip("single-argument or non-broadcasting function")
    batches = [(3, 1)] + [(1, 2)] * (len(spec.args) - 1)
    vals = make_args(spec, (), batches=batches)
    res = spec.fn(*to_mx(vals))
    for out in arrays(res):
        assert tuple(out.shape[:2]) == (3, 2), f"{spec.name}: broadcast output shape {out.shape}"
    single = spec.fn(*to_mx([vals[0][2, 0]] + [v[0, 1] for v in vals[1:]]))
    assert_entries_equal(spec, res, single, (2, 1), "broadcast entry (2, 1)")
    if spec.broadcast_ndim:
        vals = make_args(spec, (), batches=[(2,)] + [()] * (len(spec.args) - 1))
        res = spec.fn(*to_mx(vals))
        for out in arrays(res):
            assert tuple(out.shape[:1]) == (2,), f"{spec.name}: broadcast output shape {out.shape}"
        single = spec.fn(*to_mx([vals[0][1]] + vals[1:]))
        assert_entries_equal(spec, res, single, (1,), "broadcast entry (1,)")


def check_batch_clash(spec: Spec) -> None:
    """Batches (3,) and (4,) do not broadcast: ValueError."""
    if len(spec.args) < 2 or not spec.broadcast:
        pytest.skip("single-argument or non-broadcasting function")
    for j in range(1, len(spec.args)):
        batches = [(3,)] * len(spec.args)
        batches[j] = (4,)
        vals = make_args(spec, (), batches=batches)
        with pytest.raises(ValueError):
            mx.eval(arrays(spec.fn(*to_mx(vals))))


def check_wrong_trailing(spec: Spec, which: int) -> None:
    """The last trailing dim of one argument off by one, or a missing dim: ValueError naming the shape."""
    arg = spec.args[which]
    if not arg.trailing or not spec.wrong_trailing:
        pytest.skip("scalar argument")
    vals = make_args(spec, (7,))
    shape = vals[which].shape
    bad_shapes = []
    for k, d in enumerate(arg.trailing):
        if d is not None:
            axis = len(shape) - len(arg.trailing) + k
            bad_shapes.append(shape[:axis] + (shape[axis] + 1,) + shape[axis + 1 :])
    if None not in arg.trailing:
        bad_shapes.append(shape[:-1])  # a trailing dim missing
    for shape in bad_shapes:
        bad = list(vals)
        bad[which] = np.ones(shape)
        with pytest.raises(ValueError) as err:
            mx.eval(arrays(spec.fn(*to_mx(bad))))
        msg = str(err.value)
        assert "expected" in msg or "expects" in msg, f"{spec.name}: arg {which} {shape}: message does not name the expected shape: {msg}"


INPUT_KINDS = ["numpy", "list", "int", "float64", "float16", "bfloat16"]


def check_input_kind(spec: Spec, kind: str) -> None:
    """numpy / list / int / float64 / float16 / bfloat16 inputs follow the dtype policy."""
    if spec.kinds is not None and kind not in spec.kinds:
        pytest.skip(f"takes {spec.kinds} only")
    vals = make_args(spec, (2,))
    if kind == "int":
        if not all(a.integer_ok for a in spec.args):
            pytest.skip("rounded values are not a valid input")
        vals = [np.round(v * 4).astype(np.int32) if a.integer_ok else v for v, a in zip(vals, spec.args)]
    ref_dtype = mx.float64 if kind == "float64" else mx.float32
    ref = spec.fn(*to_mx(vals, ref_dtype))
    if kind in ("float16", "bfloat16"):
        if not spec.low_precision:
            pytest.skip("no low-precision path")
        dt = getattr(mx, kind)
        low = [mx.array(v.astype(np.float32)).astype(dt) for v in vals]
        ref = spec.fn(*[x.astype(mx.float32) for x in low])
        res, want_dtype, tol = spec.fn(*low), dt, (2e-2 if kind == "float16" else 1e-1)
    elif kind == "float64":
        res, want_dtype, tol = ref, mx.float64, 0.0
    elif kind == "numpy":
        res, want_dtype, tol = spec.fn(*[v.astype(np.float32) for v in vals]), mx.float32, 1e-6
    elif kind == "list":
        res, want_dtype, tol = spec.fn(*[v.tolist() for v in vals]), mx.float32, 1e-6
    else:
        res, want_dtype, tol = spec.fn(*[mx.array(v) for v in vals]), mx.float32, 1e-6
    for k, (o, r) in enumerate(zip(float_outputs(spec, res), float_outputs(spec, ref))):
        assert o.dtype == want_dtype, f"{spec.name}: {kind} input gave output {k} dtype {o.dtype}"
        if tol:
            a, b = np64(o), np64(r)
            scale = np.nanmax(np.abs(b), initial=1.0) if b.size else 1.0
            if kind in ("float16", "bfloat16") and spec.lowp_atol is not None:
                tol, scale = spec.lowp_atol, 1.0
            fin = np.isfinite(b)
            np.testing.assert_allclose(a[fin], b[fin], rtol=tol, atol=tol * scale, err_msg=f"{spec.name}: {kind} output {k}")


def _poison(values: list[np.ndarray], which: int, index: int, bad: float | np.ndarray) -> list[np.ndarray]:
    out = [v.copy() for v in values]
    out[which][index] = bad
    return out


def check_entry_isolated(spec: Spec, values: list[np.ndarray], bad_index: int, expect: str, label: str) -> None:
    """Entry ``bad_index`` (of batch (3,)) is odd; the others equal a clean run; it is flagged if asked."""
    clean = make_args(spec, (3,), seed=1)
    res = spec.fn(*to_mx(values))
    ref = spec.fn(*to_mx(clean))
    for k, (o, r) in enumerate(zip(arrays(res), arrays(ref))):
        for i in range(3):
            if i != bad_index:
                np.testing.assert_allclose(np64(o)[i], np64(r)[i], rtol=1e-5, atol=1e-6, equal_nan=True,
                                           err_msg=f"{spec.name}: {label} leaked into entry {i} (output {k})")
    flagged = _flagged(spec, res, (3,))[bad_index]
    if expect == "flagged":
        assert flagged, f"{spec.name}: {label}: entry not flagged (mask True and outputs finite)"
    if expect == "valid":
        assert not flagged, f"{spec.name}: {label}: valid entry flagged or non-finite"


def _flagged(spec: Spec, res: Any, batch: tuple) -> np.ndarray:
    m = entry_mask(spec, res, batch)
    fin = np.ones(batch, bool)
    for o in float_outputs(spec, res):
        fin &= entry_finite(o, batch)
    if m is None:
        return ~fin
    return ~m | (~fin if spec.nan_must_show else np.zeros(batch, bool))


def check_nonfinite(spec: Spec, which: int, bad: float) -> None:
    """NaN / inf everywhere in entry 1 of one argument: entries 0 and 2 are untouched, entry 1 flagged."""
    if spec.nan_args is not None and which not in spec.nan_args:
        pytest.skip("argument not poisoned for this function")
    vals = _poison(make_args(spec, (3,), seed=1), which, 1, bad)
    expect = "flagged" if spec.nan_must_show else "any"
    check_entry_isolated(spec, vals, 1, expect, f"{bad} in arg {which}")
    if spec.grad:
        check_grad(spec, vals, valid_entries=[0, 2])


def check_special(spec: Spec, case: str) -> None:
    """A hand-picked entry between two ordinary ones: isolated, flagged or valid as promised, finite gradients."""
    args, expect = spec.specials[case]
    clean = make_args(spec, (3,), seed=1)
    vals = [c.copy() for c in clean]
    for j, a in enumerate(args):
        if a is not None:
            vals[j][1] = np.broadcast_to(np.asarray(a, dtype=np.float64), vals[j].shape[1:])
    check_entry_isolated(spec, vals, 1, expect, case)
    if spec.grad:
        valid = [0, 1, 2] if expect == "valid" else [0, 2]
        check_grad(spec, vals, valid_entries=valid)


def check_grad(spec: Spec, values: list[np.ndarray], valid_entries: Sequence[int]) -> None:
    """Gradient of the sum of the valid entries' outputs is finite for those entries' inputs."""
    diff = [j for j, a in enumerate(spec.args) if a.diff]
    if not diff:
        return
    xs = to_mx(values)
    res0 = spec.fn(*xs)
    m = entry_mask(spec, res0, (3,))
    keep = np.zeros(3, bool)
    keep[list(valid_entries)] = True
    if m is not None:
        keep &= m
    # Entries whose own outputs are not finite are not valid, whatever the mask says.
    for o in float_outputs(spec, res0):
        keep &= entry_finite(o, (3,))
    keep_mx = mx.array(keep)

    def loss(*diff_xs):
        full = list(xs)
        for j, x in zip(diff, diff_xs):
            full[j] = x
        total = mx.array(0.0)
        for o in float_outputs(spec, spec.fn(*full)):
            sel = keep_mx.reshape((3,) + (1,) * (o.ndim - 1))
            total = total + mx.where(sel, o, 0.0).astype(mx.float32).sum()
        return total

    grads = mx.grad(loss, argnums=list(range(len(diff))))(*[xs[j] for j in diff])
    grads = [grads] if isinstance(grads, mx.array) else grads
    for j, g in zip(diff, grads):
        g = np64(g)
        for i in np.flatnonzero(keep):
            assert np.isfinite(g[i]).all(), f"{spec.name}: non-finite gradient w.r.t. arg {j} at valid entry {i}"


# ---------------------------------------------------------------- hypothesis

batch_shapes = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)
kinds = st.sampled_from(["mx32", "numpy", "list", "float64"])


def check_random_batch(spec: Spec, batch: tuple, kind: str, seed: int, nan_at: int | None) -> None:
    """Random batch shape / input kind / NaN position: shapes, dtype, isolation of the NaN entry."""
    with on_cpu(mx.float64 if kind == "float64" else mx.float32):
        _check_random_batch(spec, batch, kind, seed, nan_at)


def _check_random_batch(spec: Spec, batch: tuple, kind: str, seed: int, nan_at: int | None) -> None:
    vals = make_args(spec, batch, seed=seed)
    n = int(np.prod(batch)) if batch else 1
    bad = None
    if nan_at is not None and n > 1 and batch:
        bad = np.unravel_index(nan_at % n, batch)
        which = (spec.nan_args or range(len(vals)))[nan_at % len(spec.nan_args or vals)]
        vals[which][bad] = np.nan
    if spec.kinds is not None and kind not in spec.kinds:
        kind = "mx32"
    if kind == "list" and n == 0:
        kind = "numpy"  # an empty nested list has lost its trailing dims
    if kind == "numpy":
        inputs = [v.astype(np.float32) for v in vals]
    elif kind == "list":
        inputs = [v.tolist() for v in vals]
    else:
        inputs = to_mx(vals, mx.float64 if kind == "float64" else mx.float32)
    res = spec.fn(*inputs)
    for out in arrays(res):
        assert tuple(out.shape[: len(batch)]) == batch
    for o in float_outputs(spec, res):
        assert o.dtype == (mx.float64 if kind == "float64" else mx.float32)
    if bad is not None:
        flagged = _flagged(spec, res, batch)
        if spec.nan_must_show:
            assert flagged[bad], f"{spec.name}: NaN entry {bad} not flagged"
        clean_vals = make_args(spec, batch, seed=seed)
        ref = spec.fn(*to_mx(clean_vals, mx.float64 if kind == "float64" else mx.float32))
        other = np.ones(batch, bool)
        other[bad] = False
        for o, r in zip(arrays(res), arrays(ref)):
            np.testing.assert_allclose(np64(o)[other], np64(r)[other], rtol=1e-5, atol=1e-6, equal_nan=True,
                                       err_msg=f"{spec.name}: NaN at {bad} leaked")


def spec_ids(specs: Sequence[Spec]) -> list[str]:
    return [s.name for s in specs]


def arg_cases(specs: Sequence[Spec]) -> list[tuple[Spec, int]]:
    return [(s, j) for s in specs for j in range(len(s.args))]


def special_cases(specs: Sequence[Spec]) -> list[tuple[Spec, str]]:
    return [(s, c) for s in specs for c in s.specials]


def run_case(spec: Spec, family: str, case: str, check: Callable[[], None]) -> None:
    """Run ``check``; a failure listed in ``spec.known`` becomes a strict xfail."""
    reason = spec.known.get(f"{family}:{case}", spec.known.get(family))
    if reason is None:
        check()
        return
    if family == "random":
        pytest.skip(f"known: {reason}")  # hypothesis would spend its time shrinking the known failure
    try:
        check()
    except (AssertionError, ValueError, TypeError) as err:
        pytest.xfail(f"known: {reason} ({type(err).__name__}: {str(err)[:200]})")
    pytest.fail(f"{spec.name}: known failure fixed, remove spec.known[{family!r}]: {reason}")


def define_tests(specs: Sequence[Spec], hypothesis_examples: int = 6) -> dict[str, Callable[..., None]]:
    """The parametrised tests over ``specs`` (a per-subpackage file puts them in its globals)."""
    from hypothesis import given, settings

    ids = spec_ids(specs)
    args = arg_cases(specs)
    arg_ids = [f"{s.name}-arg{j}" for s, j in args]
    specials = special_cases(specs)
    special_ids = [f"{s.name}-{c}" for s, c in specials]
    grad_specs = [s for s in specs if s.grad]

    @pytest.mark.parametrize("batch", BATCHES, ids=str)
    @pytest.mark.parametrize("spec", specs, ids=ids)
    def test_outputs_lead_with_the_batch_shape_and_match_unbatched_calls(spec, batch):
        run_case(spec, "batch", str(batch), lambda: check_batch_shape(spec, batch))

    @pytest.mark.parametrize("spec", specs, ids=ids)
    def test_batch_dims_broadcast_between_arguments(spec):
        run_case(spec, "broadcast", "", lambda: check_broadcast(spec))

    @pytest.mark.parametrize("spec", specs, ids=ids)
    def test_clashing_batch_dims_raise_value_error(spec):
        run_case(spec, "clash", "", lambda: check_batch_clash(spec))

    @pytest.mark.parametrize("spec,which", args, ids=arg_ids)
    def test_wrong_trailing_dims_raise_value_error_naming_the_shape(spec, which):
        run_case(spec, "trailing", str(which), lambda: check_wrong_trailing(spec, which))

    @pytest.mark.parametrize("kind", INPUT_KINDS)
    @pytest.mark.parametrize("spec", specs, ids=ids)
    def test_input_kinds_follow_the_dtype_policy(spec, kind):
        run_case(spec, "kind", kind, lambda: check_input_kind(spec, kind))

    @pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
    @pytest.mark.parametrize("spec,which", args, ids=arg_ids)
    def test_non_finite_entry_stays_in_its_entry_and_is_flagged(spec, which, bad):
        run_case(spec, "nonfinite", f"{which}-{bad}", lambda: check_nonfinite(spec, which, bad))

    @pytest.mark.parametrize("spec,case", specials, ids=special_ids)
    def test_special_values_behave_as_promised(spec, case):
        run_case(spec, "special", case, lambda: check_special(spec, case))

    @pytest.mark.parametrize("spec", grad_specs, ids=spec_ids(grad_specs))
    def test_gradients_of_ordinary_inputs_are_finite(spec):
        run_case(spec, "grad", "", lambda: check_grad(spec, make_args(spec, (3,), seed=2), valid_entries=[0, 1, 2]))

    @pytest.mark.parametrize("spec", specs, ids=ids)
    @settings(max_examples=hypothesis_examples)
    @given(batch=batch_shapes, kind=kinds, seed=st.integers(0, 2**16), nan_at=st.none() | st.integers(0, 1000))
    def test_random_batches_kinds_and_nan_positions(spec, batch, kind, seed, nan_at):
        run_case(spec, "random", "", lambda: check_random_batch(spec, batch, kind, seed, nan_at))

    return {f.__name__: f for f in [
        test_outputs_lead_with_the_batch_shape_and_match_unbatched_calls,
        test_batch_dims_broadcast_between_arguments,
        test_clashing_batch_dims_raise_value_error,
        test_wrong_trailing_dims_raise_value_error_naming_the_shape,
        test_input_kinds_follow_the_dtype_policy,
        test_non_finite_entry_stays_in_its_entry_and_is_flagged,
        test_special_values_behave_as_promised,
        test_gradients_of_ordinary_inputs_are_finite,
        test_random_batches_kinds_and_nan_positions,
    ]}
