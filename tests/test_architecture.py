"""The module map of docs/architecture.md holds: minigru's imports form no cycle, and the layers
depend one way only (backend → functional → nn → models), read from the sources with ``ast``.

Every import counts, at module level or inside a function (a lazy import still ties two modules
together). ``from . import x`` is an edge to the submodule ``x`` when there is one, else to the
package itself (its ``__init__``).
"""
import ast
from pathlib import Path

import pytest

import minigru

PACKAGE = Path(minigru.__file__).resolve().parent


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def _resolve(module, node):
    """The minigru modules that an Import / ImportFrom node of ``module`` loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    is_package = MODULES[module].name == "__init__.py"
    if node.level:
        base = module.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target not in MODULES:
        return []
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in MODULES else target)
    return found


def _graph():
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(m for m in _resolve(module, node) if m != module)
        graph[module] = edges
    return graph


def _find_cycle(graph, skip=frozenset()):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in skip:
                continue
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and node not in skip:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read():
    graph = _graph()
    assert "minigru.functional.gru" in graph["minigru.nn.gru"] or "minigru.functional" in graph["minigru.nn.gru"]
    assert "minigru.functional._recurrent" in graph["minigru.functional.gru"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_minigru_has_no_import_cycle():
    assert _find_cycle(_graph()) is None


@pytest.mark.parametrize("lower, higher", [
    ("minigru.backend", ("minigru.functional", "minigru.nn", "minigru.models", "minigru.train", "minigru._checks")),
    ("minigru._checks", ("minigru.functional", "minigru.nn", "minigru.models", "minigru.train")),
    ("minigru.functional", ("minigru.nn", "minigru.models", "minigru.train", "minigru.data", "minigru.optim")),
    ("minigru.nn", ("minigru.models", "minigru.train", "minigru.data", "minigru.optim")),
])
def test_layers_depend_one_way(lower, higher):
    graph = _graph()
    for module, edges in graph.items():
        if module == lower or module.startswith(lower + "."):
            wrong = sorted(e for e in edges if any(e == h or e.startswith(h + ".") for h in higher))
            assert not wrong, f"{module} imports {wrong}, a layer above it"
