"""labkit's imports flow one way: no import cycles, and no module imports a module of a higher floor.

Why a test: a cycle makes the import order matter (a partly initialised module raises AttributeError
far from the cause) and ties modules that should be usable alone; an upward import (a dataset that
imports the trainer) makes a small module drag in the whole package. Both creep in silently, so every
``import`` of labkit is read here with ``ast``, never executed: top-level ones, ones inside functions
(they run later, but they are still a dependency) and ``if TYPE_CHECKING:`` ones.

Reading ``from labkit import x``: an import of ``labkit.x`` when ``x`` is a submodule, else of the
package. The package ``labkit`` itself only exports ``setup``/``Setup`` lazily (a module-level
``__getattr__`` imports ``labkit.notebook`` on first use, so ``import labkit`` stays fast): those
imports are charged to whoever asks for the lazy name (``from labkit import setup`` depends on
``labkit.notebook``), not to the package, so ``import labkit`` for ``labkit.__version__`` is no cycle.

The floors, lowest first (a module may import its own floor and the floors below):
``checks io runtime`` → ``tokenizer info`` → ``data.*`` → ``model loss`` → ``train batched measure
probe freeze quant ntk interop checkpoint distributed`` → ``sweep cluster`` → ``experiments.*`` →
``exercises.* widgets`` → ``profiles runner site cli notebook __main__``. ``loss`` shares the model's floor because
``Transformer.loss`` is the fused loss (it imports torch only). ``plots`` and ``tables`` are view
helpers any floor may use: they import no labkit module but ``checks`` and ``io``.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "labkit"

FLOORS: tuple[tuple[str, ...], ...] = (
    ("checks", "io", "runtime"),
    ("tokenizer", "info"),
    ("data", "data.*"),
    ("model", "loss"),
    ("train", "batched", "measure", "probe", "structure", "ablate", "freeze", "quant", "ntk", "interop", "checkpoint",
     "distributed", "generate"),
    ("sweep", "cluster"),
    ("experiments", "experiments.*"),
    ("exercises", "exercises.*", "widgets"),
    ("profiles", "runner", "site", "cli", "notebook", "__main__"),
)
VIEWS = ("plots", "tables")  # any floor may use them; they know nothing of models
VIEW_MAY_IMPORT = ("checks", "io", *VIEWS)
BASE = ("checks", "io", "runtime")  # import no other labkit module at all
#: Modules without a floor, and why; a new module must be given a floor (or a reason) here.
UNPLACED = {
    "labkit": "the package: exports setup lazily, imports nothing at import time",
}


@dataclass(frozen=True)
class Import:
    """One import statement's dependency: ``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int
    kind: str  # "top" (runs on import), "function" (runs when called) or "typing" (TYPE_CHECKING only)

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.path}:{self.line}, {self.kind})"


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """``labkit/data/bios.py`` -> ``labkit.data.bios``; ``labkit/data/__init__.py`` -> ``labkit.data``."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """Every import of a module as ``(dotted name, imported names or None, level, line, kind, lazy)``."""

    def __init__(self) -> None:
        self.found: list[tuple[str, tuple[str, ...] | None, int, int, str, bool]] = []
        self.kind, self.lazy = "top", False

    def _within(self, node: ast.AST, kind: str | None = None, lazy: bool | None = None) -> None:
        saved = self.kind, self.lazy
        self.kind = kind or self.kind
        self.lazy = self.lazy if lazy is None else lazy
        self.generic_visit(node)
        self.kind, self.lazy = saved

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        module_level_getattr = node.name == "__getattr__" and self.kind == "top"
        self._within(node, "function" if self.kind != "typing" else None, True if module_level_getattr else None)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._within(node, "function" if self.kind != "typing" else None)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        saved, self.kind = self.kind, "typing"
        for child in node.body:
            self.visit(child)
        self.kind = saved
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, None, 0, node.lineno, self.kind, self.lazy))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = tuple(alias.name for alias in node.names)
        self.found.append((node.module or "", names, node.level, node.lineno, self.kind, self.lazy))


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@dataclass
class _Module:
    name: str
    path: Path
    is_package: bool
    imports: list[tuple[str, tuple[str, ...] | None, int, int, str, bool]]
    top_names: set[str]


def _parse(package_dir: Path) -> dict[str, _Module]:
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        collector = _Collector()
        collector.visit(tree)
        name = module_name(path, package_dir)
        modules[name] = _Module(name, path, path.name == "__init__.py", collector.found, _top_level_names(tree))
    return modules


def _resolve(module: _Module, dotted: str, level: int) -> str:
    if not level:
        return dotted
    base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, dotted] if dotted else base)


def imports_of(package_dir: Path = PACKAGE_DIR) -> list[Import]:
    """Every dependency of a module of ``package_dir``'s package on another module of it (self-imports dropped)."""
    modules = _parse(package_dir)
    root = package_dir.name
    lazy = {m.name: [(_resolve(m, d, lv), n) for d, n, lv, _, _, is_lazy in m.imports if is_lazy]
            for m in modules.values()}

    def targets(dotted: str, names: tuple[str, ...] | None, follow_lazy: bool = True) -> Iterator[str]:
        if names is None:  # import a.b.c: the longest prefix that is a module of ours
            parts = dotted.split(".")
            known = [".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules]
            yield from known[:1]
            return
        for name in names:
            if f"{dotted}.{name}" in modules:
                yield f"{dotted}.{name}"
            elif follow_lazy and dotted in modules and lazy[dotted] and name not in modules[dotted].top_names:
                for lazy_dotted, lazy_names in lazy[dotted]:  # a lazily exported name: its real module
                    yield from targets(lazy_dotted, lazy_names, follow_lazy=False)
            elif dotted in modules:
                yield dotted

    found = []
    for module in modules.values():
        for dotted, names, level, line, kind, is_lazy in module.imports:
            absolute = _resolve(module, dotted, level)
            if is_lazy or not (absolute == root or absolute.startswith(root + ".")):
                continue
            for target in dict.fromkeys(targets(absolute, names)):
                if target != module.name:
                    found.append(Import(module.name, target, module.path.relative_to(package_dir.parent).as_posix(),
                                        line, kind))
    return found


def strongly_connected(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of a directed graph, each sorted."""
    graph: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycle_in(component: list[str], imports: list[Import]) -> list[Import]:
    """One closed path of imports through a strongly connected ``component`` (breadth-first, shortest)."""
    inside = set(component)
    edges: dict[str, list[Import]] = {}
    for imp in imports:
        if imp.source in inside and imp.target in inside:
            edges.setdefault(imp.source, []).append(imp)
    start = component[0]
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for imp in edges.get(node, []):
            if imp.target == start:
                return [*paths[node], imp]
            if imp.target not in paths:
                paths[imp.target] = [*paths[node], imp]
                queue.append(imp.target)
    return []


def floor_of(module: str) -> int | None:
    """The floor of ``labkit.<module>`` (0 = lowest), or None for the view helpers and unplaced modules."""
    short = module.removeprefix("labkit.")
    for floor, patterns in enumerate(FLOORS):
        if any(fnmatch.fnmatchcase(short, pattern) for pattern in patterns):
            return floor
    return None


def _short(module: str) -> str:
    return module.removeprefix("labkit.")


IMPORTS = imports_of()
MODULES = sorted({module_name(p) for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts})


# ---- the reader itself ---------------------------------------------------------------------------------


def test_the_reader_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("VERSION = 1\ndef __getattr__(name):\n    from pkg import lazy\n"
                                     "    return getattr(lazy, name)\n")
    (pkg / "lazy.py").write_text("import pkg\n")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\nfrom .leaf import thing\n")
    (pkg / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\nimport os\nif TYPE_CHECKING:\n    from pkg import lazy\n"
        "def f():\n    import pkg.sub\n    from pkg import VERSION, setup\n    from .. import lazy\n")
    got = {(i.source, i.target, i.kind) for i in imports_of(pkg)}
    assert got == {
        ("pkg.lazy", "pkg", "top"),  # `import pkg` needs the package, not its lazy exports
        ("pkg.sub", "pkg.sub.leaf", "top"),  # `from . import leaf` and `from .leaf import thing`
        ("pkg.sub.leaf", "pkg.lazy", "typing"),
        ("pkg.sub.leaf", "pkg.sub", "function"),
        ("pkg.sub.leaf", "pkg", "function"),  # VERSION is defined in the package
        ("pkg.sub.leaf", "pkg.lazy", "function"),  # `setup` is exported lazily, and `from .. import lazy`
    }
    components = strongly_connected(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    assert sorted(components) == [["a", "b", "c"], ["d"]]


# ---- the package -----------------------------------------------------------------------------------------


def test_no_import_cycles():
    components = [c for c in strongly_connected(MODULES, [(i.source, i.target) for i in IMPORTS]) if len(c) > 1]
    report = "\n\n".join(f"cycle among {', '.join(c)}:\n  " + "\n  ".join(map(str, cycle_in(c, IMPORTS)))
                         for c in components)
    assert not components, f"import cycles in labkit:\n{report}"


def test_every_module_has_a_floor():
    missing = [m for m in MODULES if floor_of(m) is None and _short(m) not in VIEWS and m not in UNPLACED]
    assert not missing, f"give these modules a floor in FLOORS (or a reason in UNPLACED): {missing}"


def test_no_module_imports_a_higher_floor():
    upward = [i for i in IMPORTS if None not in (floor_of(i.source), floor_of(i.target))
              and floor_of(i.target) > floor_of(i.source)]
    assert not upward, "imports against the one-way flow:\n" + "\n".join(
        f"{i} (floor {floor_of(i.source)} imports floor {floor_of(i.target)})" for i in upward)


@pytest.mark.parametrize(("modules", "may_import", "why"), [
    (BASE, (), "the bottom floor imports no other labkit module"),
    (VIEWS, VIEW_MAY_IMPORT, "view helpers know nothing of models"),
])
def test_modules_that_stand_alone(modules, may_import, why):
    bad = [i for i in IMPORTS if _short(i.source) in modules and _short(i.target) not in may_import]
    assert not bad, f"{why}:\n" + "\n".join(map(str, bad))


def test_nothing_imports_the_command_line():
    bad = [i for i in IMPORTS if i.target == "labkit.cli" and i.source != "labkit.__main__"]
    assert not bad, "only `python -m labkit` (labkit/__main__.py) may import labkit.cli:\n" + "\n".join(map(str, bad))


@pytest.mark.parametrize(("low", "forbidden"), [
    ("data*", ("model", "train", "measure", "sweep", "experiments*", "runner", "site", "cli")),
    ("model", ("train", "measure", "sweep", "experiments*")),
    ("info", ("data*",)),
])
def test_named_layers_stay_below(low, forbidden):
    bad = [i for i in IMPORTS if fnmatch.fnmatchcase(_short(i.source), low)
           and any(fnmatch.fnmatchcase(_short(i.target), f) for f in forbidden)]
    assert not bad, "\n".join(map(str, bad))
