"""Every public function and method documents the shapes of its arrays and shows a runnable example.

Walks the ``__all__`` of every subpackage. A function or method whose annotations mention arrays
(``mx.array`` or ``Any``) must name a shape in its docstring: a batch shape such as ``(*, N, 2)``,
``(..., 3, 3)``, ``(*batch)``, a fixed one such as ``(3,)`` or ``(N, 3)``, or the word "scalar".
Every one must have a ``>>>`` example: its own, or, for a method or property, a line of its
class's (or a base class's) example that calls it (``.name``), or, for a class, a line of a base
class's example that builds it (``Name(``). The examples themselves run as doctests
(``--doctest-modules``).
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re

import pytest

SUBPACKAGES = ("linalg", "lie", "camera", "homography", "solve", "optim", "epipolar", "sfm", "calibration")
SHAPE = re.compile(
    r"\((?:\*|\.\.\.)[a-z_]*(?:, *[^()]+)?\)"  # (*, N, 2), (..., 3, 3), (*batch), (*, tangent_dim)
    r"|\([A-Za-z0-9_]+(?: *[*+] *[A-Za-z0-9_]+)*(?:, *[A-Za-z0-9_*+ -]+)+\)"  # (N, 3), (B, 4, 4), (rows * cols, 3)
    r"|\([A-Z0-9],?\)"  # (3,), (N)
    r"|\bscalar\b"
)


def _takes_arrays(fn) -> bool:
    ann = inspect.get_annotations(fn)
    return not ann or any(re.search(r"array|Any", str(v)) for v in ann.values())


def _public() -> list[tuple[str, object, object]]:
    """``(name, function or property, owning class or None)`` of every public function and method,
    once each."""
    found, seen = [], set()
    for sub in SUBPACKAGES:
        mod = importlib.import_module(f"mlxgeom.{sub}")
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isfunction(obj):
                found.append((f"{sub}.{name}", obj, None))
            elif inspect.isclass(obj) and not issubclass(obj, enum.Enum):
                found.append((f"{sub}.{name}", obj, None))
                for attr, member in vars(obj).items():
                    fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                    if not attr.startswith("_") and inspect.isfunction(fn):
                        found.append((f"{sub}.{name}.{attr}", member if isinstance(member, property) else fn, obj))
    return found


PUBLIC = _public()


def _example_calls(classes: tuple, pattern: str) -> bool:
    """Whether a ``>>>`` line of one of the classes' docstrings matches ``pattern``."""
    lines = [line for c in classes for line in (inspect.getdoc(c) or "").splitlines()]
    return any(line.lstrip().startswith(">>>") and re.search(pattern, line) for line in lines)


@pytest.mark.parametrize("name, obj, owner", PUBLIC, ids=[p[0] for p in PUBLIC])
def test_docstring_names_shapes_and_has_an_example(name: str, obj: object, owner: object) -> None:
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    is_tuple_result = inspect.isclass(obj) and issubclass(obj, tuple)
    fn = obj.fget if isinstance(obj, property) else obj
    if is_tuple_result or (not inspect.isclass(obj) and _takes_arrays(fn)):
        assert SHAPE.search(doc), f"{name}: the docstring names no shape such as (*, N, 2) or 'scalar'"
    if is_tuple_result:
        return  # a result type: its fields' shapes are what it documents
    attr = name.rsplit(".", 1)[-1]
    if owner is not None:  # a method: its own example, or a line of its class's (or a base's) that calls it
        shown = _example_calls(owner.__mro__, rf"\.{attr}\b")
    elif inspect.isclass(obj):  # a class: its own example, or one of its base's that builds it
        shown = _example_calls(obj.__mro__[1:], rf"\b{attr}\(")
    else:
        shown = False
    assert ">>>" in doc or shown, f"{name} has no >>> example"


def test_the_walk_finds_the_public_api() -> None:
    names = {p[0] for p in PUBLIC}
    assert len(PUBLIC) > 200
    assert {"camera.project_points", "camera.Camera.project", "lie.SE3.from_rt", "solve.Huber.rho",
            "optim.solve_pnp", "linalg.inv"} <= names
