"""Every artefact path of a run or model folder comes from :class:`sihnet.paths.RunPaths`: the
name of a run file is written in ``paths.py`` and nowhere else in the code (docstrings aside)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import sihnet
from sihnet.paths import RunPaths

SRC = Path(sihnet.__file__).parent


def run_file_names() -> set[str]:
    """The file names RunPaths gives for a run folder (fold 0 and a named external cohort)."""
    paths, names = RunPaths(Path("RUN")), set()
    for attribute in dir(RunPaths):
        if attribute.startswith("_"):
            continue
        value = getattr(paths, attribute)
        if callable(value):
            for argument in (0, "x"):
                try:
                    value = value(argument)
                except Exception:
                    continue
                break
        if isinstance(value, Path) and value.suffix:
            names.add(value.name)
    return names


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal of the code (f-string parts included), docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip


def misplaced(root: Path, names: set[str]) -> list[str]:
    """``module:line name`` for each run file name written outside ``paths.py``."""
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, sorted(names))) + r")(?![\w-])")
    found = []
    for module in sorted(root.rglob("*.py")):
        if module.name == "paths.py" and module.parent == root:
            continue
        for line, text in _strings(ast.parse(module.read_text(encoding="utf-8"))):
            found += [f"{module.relative_to(root)}:{line} {m}" for m in pattern.findall(text)]
    return found


def test_run_file_names_are_written_only_in_paths() -> None:
    names = run_file_names()
    assert {"summary.json", "operating_points.json", "best.safetensors", "splits.json"} <= names
    assert misplaced(SRC, names) == []


def test_the_check_sees_a_file_name_built_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "paths.py").write_text('NAME = "summary.json"\n')
    (tmp_path / "other.py").write_text(
        '"""summary.json in a docstring is fine."""\nP = "x/summary.json"\n'
    )
    assert misplaced(tmp_path, {"summary.json"}) == ["other.py:2 summary.json"]
