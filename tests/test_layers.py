"""The pipeline's layer order (docs/design.md), read from the imports of ``src/``: a stage imports
only earlier stages (or its own), and no module imports itself in a circle, lazily or not."""

from __future__ import annotations

import ast
from pathlib import Path

import sihnet

SRC = Path(sihnet.__file__).parent
# Earliest first; a unit may import its own layer's units and any earlier layer's.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "errors atomic hashing tables bern bern_reading landmarks config_schema config_sections progress template",
        "config schemas",
        "paths outputs",
        "data synth",
        "ingest",
        "preprocessing",
        "reader",
        "real_heads",
        "models",
        "inference",
        "training",
        "evaluation",
        "interpret",
        "report",
        "export",
        "demo",
        "cli __main__ __init__",
    )
)


def _module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Each ``sihnet`` module -> the ``sihnet`` modules it imports (anywhere in its body)."""
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def unit(module: str) -> str:
    """The pipeline unit a module belongs to: ``sihnet.training.fold`` -> ``training``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} imports {target}"
        for source, targets in graph.items()
        for target in targets
        if layer_of(unit(target)) > layer_of(unit(source))
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_unit_has_a_layer() -> None:
    units = {unit(m) for m in import_graph()}
    assert units <= set().union(*LAYERS), units - set().union(*LAYERS)


def test_no_stage_imports_a_later_stage() -> None:
    assert layer_violations(import_graph()) == []


def test_no_import_cycle_between_or_inside_packages() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_see_a_violation_and_a_cycle() -> None:
    graph = {"sihnet.models.a": {"sihnet.training.b"}, "sihnet.training.b": {"sihnet.models.a"}}
    assert layer_violations(graph) == ["sihnet.models.a imports sihnet.training.b"]
    assert cycles(graph) == [["sihnet.models.a", "sihnet.training.b"]]
