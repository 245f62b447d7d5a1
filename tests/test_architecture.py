"""The import graph of symplug and its two shipped plugins, read from the source (AST):
no import cycle between modules, and the core never imports a plugin.

Rules of the graph:

- a node is a module; a package is the node of its ``__init__.py``;
- every ``import`` and ``from ... import`` statement counts, at module level or inside a
  function body (a deferred import is still an arrow);
- ``from P import x`` points at the submodule ``P.x`` when there is one, else at ``P``
  (``x`` is then a name defined in ``P``, e.g. ``from symplug import SymplugError``);
  relative imports are resolved against the importing module's package;
- ``import a.b.c`` points at the deepest of ``a.b.c``, ``a.b``, ``a`` that is a module;
- an arrow from a package's ``__init__.py`` to its own submodules is left out: Python
  runs ``__init__.py`` before any submodule, so the package importing its parts (e.g.
  ``symplug`` importing ``symplug.errors``) does not make the parts depend on the package;
  only the opposite arrows (a submodule importing names of its package) count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"symplug": ROOT / "symplug", "symplug_atoms": ROOT / "plugins" / "symplug_atoms",
            "symplug_jets": ROOT / "plugins" / "symplug_jets"}
PLUGINS = ("symplug_atoms", "symplug_jets")


def _modules() -> dict[str, Path]:
    """{dotted module name: source file} of every module of :data:`PACKAGES`."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            modules[".".join([package, *(p for p in parts if p != "__init__")])] = path
    return modules


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The absolute names that module ``name`` (file ``path``) imports, anywhere in it:
    ``P.x`` for ``from P import x`` when ``P.x`` is one of ``modules``, else ``P``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1]
                                + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return found


def _module_of(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest prefix of the dotted ``name`` that is one of ``modules``."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def import_graph() -> dict[str, set[str]]:
    """{module: the modules of :data:`PACKAGES` it imports} (rules: module docstring)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = name + "." if path.name == "__init__.py" else None
        targets = {_module_of(t, modules) for t in _imported(name, path, modules)}
        graph[name] = {t for t in targets
                       if t is not None and t != name and not (own and t.startswith(own))}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle through the first module of a strongly connected ``component``, as the
    path start -> ... -> start (breadth first: a shortest one)."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & inside):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"{component} is not strongly connected")


def test_the_graph_sees_deferred_and_submodule_imports():
    graph = import_graph()
    assert "symplug.training.trainer" in graph["symplug.training.commands"]  # in a function
    assert "symplug.errors" in graph["symplug.training.config"]  # from ..errors import X
    assert "symplug" in graph["symplug.training.tracking"]  # from .. import __version__
    assert not any(t.startswith("symplug.") for t in graph["symplug"])  # its own parts: left out


def test_a_planted_cycle_is_found_and_printed():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert _cycle(["a", "b", "c"], graph) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    graph = import_graph()
    cycles = [" -> ".join(_cycle(c, graph)) for c in strongly_connected(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_core_imports_no_plugin():
    modules = _modules()
    wrong = sorted(f"{name} imports {target}" for name, path in modules.items()
                   if name.split(".")[0] == "symplug"
                   for target in _imported(name, path, modules)
                   if target.split(".")[0] in PLUGINS)
    assert not wrong, "\n".join(wrong)
