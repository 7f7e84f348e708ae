"""The import graph of dicomml/ (cli/ and demo.py included): no cycle between modules and
no private ``_name`` imported from another module (make a shared name public instead).

Read from the source (AST), so a lazy import inside a function counts as much as one at
the top: both are a dependency. An import of a package's ``__init__`` from inside that
package (a re-export) is not an edge of a cycle. ``from . import x`` of a submodule is an
edge to that submodule, not to the package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import dicomml

PACKAGE = Path(dicomml.__file__).resolve().parent



def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        mods[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def _targets(mods, current: str, node) -> list[tuple[str, str | None]]:
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names]
    base = current if mods[current].name == "__init__.py" else current.rsplit(".", 1)[0]
    for _ in range(max(node.level - 1, 0)):
        base = base.rsplit(".", 1)[0]
    if node.level:
        module = f"{base}.{node.module}" if node.module else base
    else:
        module = node.module
    return [(module, a.name) for a in node.names]


def import_graph() -> tuple[dict[str, set[str]], set[str]]:
    """(edges module -> modules it imports, "private: ..." findings)."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = set()
    for current, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for module, name in _targets(mods, current, node):
                if not module or not (module == "dicomml" or module.startswith("dicomml.")):
                    continue
                full = f"{module}.{name}" if name and f"{module}.{name}" in mods else module
                while full not in mods and "." in full:
                    full = full.rsplit(".", 1)[0]
                if full not in mods or full == current:
                    continue
                edges[current].add(full)
                if name and name.startswith("_") and not name.startswith("__") \
                        and f"{module}.{name}" not in mods:
                    private.add(f"private: {current} imports {name} from {full}")
    return edges, private


def cycles(edges: dict[str, set[str]], packages=frozenset()) -> set[str]:
    """Strongly connected components of more than one module (Tarjan), as "cycle: ...";
    ``packages``: the modules that are a package's ``__init__``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w in packages and v.startswith(w + "."):
                continue  # a module of a package importing its __init__ (re-exports)
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.add("cycle: " + " <-> ".join(sorted(comp)))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        for v in sorted(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def _findings() -> set[str]:
    edges, private = import_graph()
    packages = {m for m, p in _modules().items() if p.name == "__init__.py"}
    return cycles(edges, packages) | private


def test_the_graph_sees_cli_demo_and_lazy_imports():
    edges, _ = import_graph()
    assert "dicomml.demo" in edges and any(m.startswith("dicomml.cli.") for m in edges)
    # io.header imports the fast reader; the fast reader imports the walker (both at the top)
    assert {"dicomml.io._scan_fast", "dicomml.io.walker"} <= edges["dicomml.io.header"]
    # nothing below the CLI imports it (the demo formats a scan with ScanResult.format)
    assert not any(m.startswith("dicomml.cli") for v, ms in edges.items()
                   if not v.startswith("dicomml.cli") and v != "dicomml.__main__" for m in ms)
    # a made-up cycle is found; an import of the package's own __init__ is no cycle
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.x"}}) == {"cycle: a.x <-> a.y"}
    assert cycles({"a": {"a.x"}, "a.x": {"a"}}, packages={"a"}) == set()
    assert cycles({"a": {"a.x"}, "a.x": {"a"}}) == {"cycle: a <-> a.x"}


def test_no_import_cycle_and_no_private_cross_module_import():
    found = sorted(_findings())
    assert not found, "\n".join(found)
