"""`bincount.data` is layered: each module imports only the layers below it, so there is no
import circle (lazy imports inside functions count too).

    layout <- stores <- retry <- s3 <- fetch <- sources     (reading a source)
    layout <- manifest <- fetch                              (fetch checks what it reads)

Checked over the source with `ast`, without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bincount.data

PACKAGE = "bincount.data"
FOLDER = Path(bincount.data.__file__).parent

# Each reading layer and the layers it may import (directly).
LAYERS = {
    "layout": set(),
    "stores": {"layout"},
    "retry": {"stores"},
    "s3": {"layout", "stores", "retry"},
    "manifest": {"layout"},
    "fetch": {"layout", "stores", "retry", "manifest"},
    "sources": {"layout", "stores", "retry", "s3", "fetch", "manifest"},
}


def data_imports(path: Path) -> set[str]:
    """The `bincount.data` modules that a file imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == PACKAGE:
                names = [f"{PACKAGE}.{a.name}" for a in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            if name.startswith(PACKAGE + "."):
                found.add(name.removeprefix(PACKAGE + ".").split(".")[0])
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in FOLDER.glob("*.py") if p.stem != "__init__"}
    return {m: data_imports(FOLDER / f"{m}.py") & modules for m in sorted(modules)}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_no_import_circle_in_bincount_data():
    found = cycle(graph())
    assert found is None, "import circle in bincount.data: " + " -> ".join(found)


def test_each_layer_imports_only_layers_below_it():
    edges = graph()
    for module, allowed in LAYERS.items():
        extra = edges[module] - allowed
        assert not extra, f"bincount.data.{module} imports {sorted(extra)} (layers above it)"


def test_the_check_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert cycle({"a": {"b"}, "b": set()}) is None
