"""The package's import structure: no import cycles anywhere (lazy imports inside functions
count too: a cycle there is still a tangle), and the verifier's stages import only from
earlier stages: form -> spec -> bounds -> milp -> decide -> runs (the shared leaves
``status.py`` and ``highs.py`` import no stage)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "robustbench_mr"
STAGES = ("form", "spec", "bounds", "milp", "decide", "runs")
LEAVES = ("status", "highs")


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules ``name`` imports anywhere in its body (the root package itself is left
    out: importing any submodule imports it)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            for a in node.names:
                found.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod)
    return {m for m in found if m in known and m != name and m != "robustbench_mr"}


GRAPH = {n: _imports(n, p, _modules()) for n, p in _modules().items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["robustbench_mr", "verifiers"] or len(parts) < 3:
        return None
    return parts[2]


@pytest.mark.parametrize("stage", STAGES + LEAVES)
def test_a_stage_imports_only_earlier_stages(stage: str) -> None:
    rank = {s: i for i, s in enumerate(STAGES)}
    bad = []
    for mod, deps in GRAPH.items():
        if _stage(mod) != stage:
            continue
        for d in deps:
            ds = _stage(d)
            if ds is None or ds == stage:
                continue
            allowed = ds in LEAVES if stage in LEAVES else (ds in LEAVES or rank.get(ds, 99) < rank[stage])
            if not allowed:
                bad.append(f"{mod} -> {d}")
    assert not bad, bad


def test_every_verifier_module_sits_in_a_stage() -> None:
    loose = [m for m in GRAPH if _stage(m) is not None and _stage(m) not in STAGES + LEAVES]
    assert not loose, loose
