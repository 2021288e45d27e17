"""The package's shape: no import circles among lada's modules (imports inside functions
count too), the layers in order, and the speed machinery in one place."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The lada modules ``name`` imports anywhere in its file (``from pkg import mod`` counts
    as importing ``pkg.mod`` where that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    out = set()
    for target in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_among_lada_modules():
    assert _cycles(_graph()) == []


def test_lada_train_imports_nothing_from_lada_models():
    graph = _graph()
    bad = {
        m: sorted(t for t in targets if t.startswith("lada.models"))
        for m, targets in graph.items()
        if m.startswith("lada.train")
    }
    assert {m: t for m, t in bad.items() if t} == {}


def test_config_and_hosts_import_nothing_of_each_other():
    """Settings are owned by the hosts (light ``*_config`` modules listed by dotted path in
    lada.plugins), so neither package imports the other."""
    graph = _graph()

    def crossing(src: str, dst: str) -> dict[str, list[str]]:
        bad = {
            m: sorted(t for t in targets if t.startswith(dst))
            for m, targets in graph.items()
            if m.startswith(src)
        }
        return {m: t for m, t in bad.items() if t}

    assert crossing("lada.hosts", "lada.config") == {}
    assert crossing("lada.config", "lada.hosts") == {}


def test_c_sources_live_in_lada_accel_only():
    outside = [p for p in SRC.rglob("*.c") if "accel" not in p.relative_to(SRC).parts[:2]]
    assert outside == []
    assert list((SRC / "lada" / "accel" / "kernels").glob("*.c"))


def test_no_environment_switch_for_kernels():
    name = "LADA_" + "KERNELS"  # the retired switch: runtime.accel replaced it
    assert [p for p in SRC.rglob("*.py") if name in p.read_text()] == []
