"""The import picture of docs/ARCHITECTURE.md, kept true: no import circles (imports inside
functions count too: a lazy import hides a circle, it does not remove it), and no arrow from a
lower layer up to a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "realjudge"

# Lowest first. A module belongs to the layer of its longest listed prefix; it may import its own
# layer (without circles) and any layer below it.
LAYERS = [
    ("foundation", ["realjudge._version", "realjudge.errors", "realjudge.runtime", "realjudge.precision"]),
    ("primitives", ["realjudge.data.decode", "realjudge.preprocess", "realjudge.calibrate", "realjudge.metrics",
                    "realjudge.perturb", "realjudge.provenance", "realjudge.card", "realjudge.records"]),
    ("data", ["realjudge.data", "realjudge.sharpness"]),
    ("models", ["realjudge.models"]),
    ("bundle", ["realjudge.bundle", "realjudge.onnx_bundle"]),
    ("explanations", ["realjudge.explain"]),
    ("scoring", ["realjudge.pipeline", "realjudge.router", "realjudge.detector"]),
    ("training", ["realjudge.train", "realjudge.synthesize", "realjudge.generate"]),
    ("evaluation", ["realjudge.evaluate", "realjudge.search"]),
    ("surface", ["realjudge.serve", "realjudge.cli", "realjudge.__main__", "realjudge"]),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the realjudge modules it imports anywhere in its file (relative imports resolved)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"{module} is in no layer of docs/ARCHITECTURE.md; add it to LAYERS there and here"
    return rank


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_parent_package(module: str, dep: str) -> bool:
    # A package's __init__ importing its own children (registration, re-exports) is not a circle
    # by itself; a child importing its package back is, and the SCC check still sees that.
    return dep.startswith(module + ".")


def test_no_import_circles():
    graph = import_graph()
    assert cycles(graph) == []


def test_no_arrow_from_a_lower_layer_up():
    graph = import_graph()
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
              for m, deps in sorted(graph.items()) for d in sorted(deps)
              if layer_of(d) > layer_of(m) and not _is_parent_package(m, d)]
    assert upward == []


def test_the_checks_can_fail():
    """The checks themselves catch a circle and an upward arrow."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert layer_of("realjudge.data.decode") < layer_of("realjudge.pipeline") < layer_of("realjudge.cli.detect")
    assert layer_of("realjudge.models.ntf_losses") == layer_of("realjudge.models")


@pytest.mark.parametrize("name,prefixes", LAYERS)
def test_the_documented_layers_match(name, prefixes):
    doc = (PACKAGE.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    for p in prefixes:
        shown = p.removeprefix("realjudge.").replace(".", "/") if p != "realjudge" else "realjudge/__init__"
        assert f"`{shown}" in doc, f"docs/ARCHITECTURE.md does not place {p} (layer {name})"
