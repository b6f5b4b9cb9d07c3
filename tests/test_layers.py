"""The package's import structure: layers point one way and no module imports itself back.

Layers, top to bottom (docs/architecture.md, "Layers"):

    entry points   cli, __main__, commands, benchtools
    orchestration  pipeline, nas, submission, tune, report
    building blocks loadgen, backends, models, data, quantize, accuracy
    basics         config, paths, fileio, errors, enums, registry, outdir, buildrecord, processes

A module may import its own layer and the layers below it, never one above. Every import
statement counts, wherever it stands (module level, inside a function, under
``TYPE_CHECKING``): a lazy import is still a dependency. The graph is read from the source
text; nothing is imported, so this runs in a fraction of a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "code" / "mlperf_bnas"
LAYERS = {
    "entry points": ("cli", "__main__", "commands", "benchtools"),
    "orchestration": ("pipeline", "nas", "submission", "tune", "report"),
    "building blocks": ("loadgen", "backends", "models", "data", "quantize", "accuracy"),
    "basics": ("config", "paths", "fileio", "errors", "enums", "registry", "outdir", "buildrecord", "processes"),
}
RANK = {part: rank for rank, parts in enumerate(reversed(LAYERS.values())) for part in parts}
NAMES = {rank: name for rank, name in enumerate(reversed(LAYERS))}


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their __init__)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = f.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (a name imported from a module counts as that module;
    a module importing its own package, or a package its own module, is not an edge)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        package = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != m and not m.startswith(target + ".") and not target.startswith(m + "."):
                    graph[m].add(target)
    return graph


def rank(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    if part not in RANK:
        raise AssertionError(f"{module}: in no layer; add {part!r} to LAYERS here and to docs/architecture.md")
    return RANK[part]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({NAMES[rank(m)]}) imports {t} ({NAMES[rank(t)]})"
            for m in sorted(graph) if m != "mlperf_bnas" for t in sorted(graph[m]) if rank(t) > rank(m)]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(modules())


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_no_upward_import(graph):
    assert upward_imports(graph) == []


def test_every_module_is_in_a_layer(graph):
    for module in graph:
        if module != "mlperf_bnas":
            rank(module)


def test_module_names_are_unique():
    """No two module files share a name: ``config.py`` means one file (``__init__.py`` aside)."""
    names: dict[str, list[str]] = {}
    for module, f in modules().items():
        if f.name != "__init__.py":
            names.setdefault(f.name, []).append(module)
    assert {n: ms for n, ms in names.items() if len(ms) > 1} == {}


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The rules above fail on a cycle and on an upward import (a check that cannot fail proves nothing)."""
    pkg = tmp_path / "mlperf_bnas"
    for name, text in {"__init__.py": "", "errors.py": "from mlperf_bnas import pipeline\n",
                       "pipeline.py": "from mlperf_bnas.data import x\n",
                       "data/__init__.py": "", "data/x.py": "def f():\n    from mlperf_bnas.data import y\n",
                       "data/y.py": "from mlperf_bnas.data.x import f\n"}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    g = import_graph(modules(pkg))
    assert cycles(g) == [["mlperf_bnas.data.x", "mlperf_bnas.data.y"]]
    assert upward_imports(g) == ["mlperf_bnas.errors (basics) imports mlperf_bnas.pipeline (orchestration)"]
