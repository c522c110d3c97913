"""The package layout holds: no import cycle between modules, and the xDS compiler reads only the
xDS vocabulary modules (``node``, ``resources``), never the cache, server or runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import controlplane

ROOT = Path(controlplane.__file__).parent


def imports() -> dict[str, set[str]]:
    """Module -> the controlplane modules it imports (anywhere in the file)."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module in modules:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    graph[name].add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
        graph[name].discard(name)
    return graph


def test_no_module_imports_itself_through_others() -> None:
    graph = imports()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path[path.index(name) :], name))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_the_compiler_reads_only_the_xds_vocabulary() -> None:
    allowed = {"controlplane.xds.node", "controlplane.xds.resources"}
    for name, deps in imports().items():
        if not name.startswith("controlplane.xds.compiler"):
            continue
        outside = {
            d
            for d in deps
            if d.startswith("controlplane.xds.") and not d.startswith("controlplane.xds.compiler")
        }
        assert outside <= allowed, (name, outside - allowed)
