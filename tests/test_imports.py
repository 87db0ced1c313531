"""calibkit's modules import each other without a circle, counting function-local imports too: so no function-local
import exists to hide a circle (they are there only to keep start-up fast)."""
import ast
from pathlib import Path

import calibkit

ROOT = Path(calibkit.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py") if "tasks" not in p.parts}
    graph = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                # the most specific calibkit module named (``from . import sweep`` -> calibkit.sweep)
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != mod and not mod.startswith(t + "."):  # a package's own __init__ is not a circle
                    graph[mod].add(t)
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_no_import_circle_even_through_function_local_imports():
    graph = _graph()
    assert len(graph) > 30 and graph["calibkit.spec"] >= {"calibkit.data.calibration", "calibkit.selfgen"}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_data_never_loads_models():
    graph = _graph()
    for mod, deps in graph.items():
        if mod.startswith("calibkit.data"):
            assert not deps & {"calibkit.models", "calibkit.selfgen", "calibkit.spec", "calibkit.prune"}, mod
