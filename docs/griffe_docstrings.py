"""Griffe extension used by the docs build: render mlxgeom's docstrings as Markdown faithfully.

mlxgeom's docstrings are written for readers of the source and for doctest (Google style
with a few reStructuredText habits). Read as Markdown by mkdocstrings, four of those habits
would render wrongly or raise warnings, which fail ``mkdocs build --strict``:

- ``Example:`` (singular) is not a Google section name, so griffe makes it an admonition
  whose ``>>>`` lines Markdown reads as nested block quotes; doctest blocks placed directly
  in the description have the same problem. Both become an ``Examples:`` section, which
  griffe renders as ``pycon`` code blocks.
- Parameters documented together (``src, dst: (*, N, 2) ...``) are one item to griffe,
  which then warns that no parameter is named ``"src, dst"``. Each name gets its own copy
  of the item, so the unknown-parameter check stays on for real typos.
- Shapes such as ``(*, N, 2)`` and ``(*)`` in prose pair up into Markdown emphasis: ``*``
  outside code is escaped.
- Sphinx roles (``:func:`inv_ex```, ``:class:`~mlxgeom.camera.Camera```) become
  cross-references when the target is rendered on one of the API pages, else inline code.

It also fixes one static-analysis blind spot: ``from .eigh import eigh`` in a package's
``__init__`` rebinds ``mlxgeom.linalg.eigh`` to the function at run time, but griffe keeps the
submodule under that name, so an exported function named like its module would vanish from
the API page. Such package members become aliases of the function, as at run time.

Only griffe's in-memory copy of each docstring changes; the source files are untouched.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from griffe import Alias, AliasResolutionError, CyclicAliasError, Extension, Module, NameResolutionError, Object

#: The subpackages that have an API page (``docs/api/<name>.md``) rendering their ``__all__``.
API_PACKAGES = ("linalg", "lie", "camera", "homography", "optim")
#: Submodules rendered on their own in an API page (``::: mlxgeom.camera.colmap``).
API_MODULES = ("camera.colmap",)

_PARAM_SECTIONS = {"args", "arguments", "params", "parameters", "keyword args", "keyword arguments",
                   "other args", "other arguments", "other params", "other parameters"}
_SECTIONS = _PARAM_SECTIONS | {"raises", "exceptions", "returns", "yields", "receives", "examples", "example",
                               "attributes", "functions", "methods", "classes", "modules", "warns", "warnings",
                               "note", "notes", "see also", "references"}
_HEADER = re.compile(r"^(\s*)([A-Za-z][A-Za-z ]*):\s*$")
_GROUPED = re.compile(r"^(\s*)([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)\s*:(.*)$")
_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc):`(~?)([\w.]+)(?:\(\))?`")
_CODE_SPAN = re.compile(r"(`+).+?\1")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _section_header(line: str) -> str | None:
    match = _HEADER.match(line)
    if match and match.group(2).lower() in _SECTIONS:
        return match.group(2).lower()
    return None


def split_grouped_params(lines: list[str]) -> list[str]:
    """Inside parameter sections, expand ``a, b: text`` items into one item per name."""
    out: list[str] = []
    section, section_indent, item_indent = None, 0, None
    i = 0
    while i < len(lines):
        line = lines[i]
        name = _section_header(line)
        if name is not None:
            section, section_indent, item_indent = name, _indent(line), None
            out.append(line)
            i += 1
            continue
        if line.strip() and section is not None and _indent(line) <= section_indent:
            section = None
        if section in _PARAM_SECTIONS and line.strip() and item_indent is None:
            item_indent = _indent(line)
        grouped = _GROUPED.match(line) if section in _PARAM_SECTIONS else None
        if grouped and _indent(line) == item_indent:
            block = [line]
            i += 1
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) > item_indent:
                block.append(lines[i])
                i += 1
            lead, names, rest = grouped.group(1), grouped.group(2), grouped.group(3)
            for param in (n.strip() for n in names.split(",")):
                out.append(f"{lead}{param}:{rest}")
                out.extend(block[1:])
            continue
        out.append(line)
        i += 1
    return out


def doctest_sections(lines: list[str]) -> list[str]:
    """Rename ``Example:`` to ``Examples:`` and put top-level doctest blocks under that header.

    A section's content is indented, so a ``>>>`` block at column 0 is outside any section
    (griffe would render it as Markdown text) and gets its own ``Examples:`` header.
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _indent(line) == 0 and _section_header(line) == "example":
            out.append("Examples:")
            i += 1
            continue
        if line.startswith(">>>"):
            if out and out[-1].strip():
                out.append("")
            out.append("Examples:")
            while i < len(lines) and lines[i].strip():
                out.append("    " + lines[i])
                i += 1
            continue
        out.append(line)
        i += 1
    return out


def _escape_outside_code(line: str, link: Any) -> str:
    """Escape ``*`` and turn roles into links in the parts of ``line`` outside code spans."""
    pieces, pos = [], 0
    for span in _CODE_SPAN.finditer(line):
        text = line[pos:span.start()]
        pieces.append(text.replace("*", r"\*"))
        pieces.append(span.group(0))
        pos = span.end()
    pieces.append(line[pos:].replace("*", r"\*"))
    # Roles contain backticks, so they are matched on the escaped line (their targets hold no '*').
    return _ROLE.sub(link, "".join(pieces))


def markdown_safe(lines: list[str], link: Any) -> list[str]:
    """Escape prose (not doctest blocks or fences) with :func:`_escape_outside_code`."""
    out: list[str] = []
    in_doctest = in_fence = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        elif stripped.startswith(">>>"):
            in_doctest = True
        elif not stripped:
            in_doctest = False
        out.append(line if in_fence or in_doctest or stripped.startswith("```") else _escape_outside_code(line, link))
    return out


def _objects(obj: Object) -> Iterator[Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # ty:ignore[invalid-argument-type]


class MlxgeomDocstrings(Extension):
    """Rewrite every docstring of the package once it is loaded (see the module docstring)."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        if pkg.name != "mlxgeom":
            return
        objects = list(_objects(pkg))  # before the swap below hides the submodules' contents
        for sub in API_PACKAGES:
            if sub in pkg.members:
                self._functions_over_modules(pkg.members[sub])
        public = self._public_paths(pkg)
        for obj in objects:
            if obj.docstring is None:
                continue
            lines = doctest_sections(split_grouped_params(obj.docstring.value.split("\n")))
            obj.docstring.value = "\n".join(markdown_safe(lines, self._linker(pkg, obj, public)))

    @staticmethod
    def _functions_over_modules(mod: Module) -> None:
        """Replace an exported submodule ``x`` holding a member ``x`` by an alias of that member."""
        for name in [str(e) for e in (mod.exports or [])]:
            member = mod.members.get(name)
            if member is None or member.is_alias or not member.is_module or name not in member.members:
                continue
            # Aliases into the submodule must be resolved while it is still reachable by path.
            for other in mod.members.values():
                if other.is_alias and other.target_path.startswith(member.path + "."):
                    try:
                        other.resolve_target()
                    except (AliasResolutionError, CyclicAliasError):
                        pass
            mod.members[name] = Alias(name, member.members[name], parent=mod)

    @staticmethod
    def _public_paths(pkg: Module) -> dict[str, str]:
        """Canonical path -> path of the rendered heading, for everything on the API pages."""
        public: dict[str, str] = {}
        for sub in API_PACKAGES:
            mod = pkg.members.get(sub)
            if mod is None:
                continue
            public[mod.path] = mod.path
            for name in [str(e) for e in (mod.exports or [])]:
                member = mod.members.get(name)
                if member is None:
                    continue
                target = member.target_path if member.is_alias else member.path
                public[target] = f"{mod.path}.{name}"
        for path in API_MODULES:
            public[f"mlxgeom.{path}"] = f"mlxgeom.{path}"
        return public

    @staticmethod
    def _linker(pkg: Module, obj: Object, public: dict[str, str]) -> Any:
        scope = obj if obj.is_module or obj.is_class else obj.parent

        def heading(target: str) -> str | None:
            """The rendered heading of ``target`` (a canonical path), or None."""
            for prefix in sorted(public, key=len, reverse=True):
                if target == prefix or target.startswith(prefix + "."):
                    rest = target[len(prefix):]
                    if not rest:
                        return public[prefix]
                    if any(part.startswith("_") for part in rest.split(".")[1:]):
                        return None
                    try:
                        member = pkg[(public[prefix] + rest).removeprefix("mlxgeom.")]
                    except (KeyError, ValueError, AliasResolutionError, CyclicAliasError):
                        return None
                    return public[prefix] + rest if member.docstring is not None else None
            return None

        def resolve(name: str) -> str | None:
            if name.startswith("mlxgeom."):
                return name
            head, _, tail = name.partition(".")
            try:
                base = scope.resolve(head) if scope is not None else None
            except NameResolutionError:
                return None
            return f"{base}.{tail}" if base and tail else base

        def link(match: re.Match) -> str:
            short, name = match.group(1), match.group(2)
            label = name.rsplit(".", 1)[-1] if short else name
            target = resolve(name)
            found = heading(target) if target else None
            return f"[`{label}`][{found}]" if found else f"`{label}`"

        return link
