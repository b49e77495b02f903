"""No import cycle inside `jumpvpn_core`: neither among its modules nor among its subpackages.

The import graph is read from the source with `ast` (nothing is imported): every `import`
and `from ... import` statement counts, wherever it stands (a function-level import still
runs), except those under `if TYPE_CHECKING:`, which never run. Importing a submodule
does not count as importing its parent package's `__init__`.

Two graphs are checked: modules (`jumpvpn_core.sim.world` -> `jumpvpn_core.sim.cluster`)
and subpackages, where every module of a subpackage is one node (`sim` -> `gateway`) and a
top-level module is its own node (`peer`). A cycle in the second graph means two layers
lean on each other even when no two modules do.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

PACKAGE = "jumpvpn_core"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

Graph = dict[str, set[str]]


def _module_name(root: Path, package: str, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: those under `if TYPE_CHECKING:` left out (their
    `else:` branch does run)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def import_graph(root: Path, package: str) -> Graph:
    """Module -> modules of the same package it imports (at run time)."""
    files = {_module_name(root, package, path): path for path in sorted(root.rglob("*.py"))}
    graph: Graph = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(name, is_package, node)
                for alias in node.names:
                    # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in files else source)
            for target in targets:
                # `import a.b.c` runs a.b.c; the nearest module of ours is the edge.
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def layer_graph(graph: Mapping[str, Iterable[str]]) -> Graph:
    """The same graph with every module of a subpackage folded into one node."""
    def layer(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else module

    folded: Graph = {}
    for source, targets in graph.items():
        edges = folded.setdefault(layer(source), set())
        edges.update(layer(t) for t in targets if layer(t) != layer(source))
    return folded


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (each an import cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


# --- the checker finds what it must, and only that ------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_a_planted_module_cycle_is_found_and_type_checking_imports_are_not(
        tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import thing\n",
        "b.py": "def f():\n    from . import a\n    return a\n",
        "c.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
                 "import pkg.a\n"),
        "d.py": "import typing\nif typing.TYPE_CHECKING:\n    import pkg.c\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.a"}  # a function-level import still runs
    assert graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.d"] == set()
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_a_planted_subpackage_cycle_is_found(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/x.py": "from ..high import y\n",
        "high/__init__.py": "",
        "high/y.py": "",
        "high/z.py": "from pkg.low.x import name\n",
        "top.py": "from pkg.high import z\n",
    })
    graph = import_graph(root, "pkg")
    assert cycles(graph) == []  # no two modules import each other
    layers = layer_graph(graph)
    assert layers["pkg.top"] == {"pkg.high"}
    assert cycles(layers) == [["pkg.high", "pkg.low"]]


# --- the package itself ---------------------------------------------------------------------


def test_the_package_graph_is_read() -> None:
    graph = import_graph(ROOT, PACKAGE)
    assert "jumpvpn_core.sim.cluster" in graph["jumpvpn_core.sim.world"]
    assert "jumpvpn_core.peer" in graph["jumpvpn_core.sim.attackers"]
    # The core imports no adapter.
    assert not {t for t in graph["jumpvpn_core.machine"] if ".sim" in t or ".gateway" in t}


def test_no_import_cycle_among_modules_or_subpackages() -> None:
    graph = import_graph(ROOT, PACKAGE)
    assert cycles(graph) == [], "module import cycles"
    assert cycles(layer_graph(graph)) == [], "subpackage import cycles"
