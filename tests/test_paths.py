"""Every artefact path of a run, model, occlusion or measure folder comes from :mod:`sihnet.paths`
(``RunPaths``, ``OcclusionPaths``, ``MeasurePaths``): the name of such a file is written in
``paths.py`` and nowhere else in the code (docstrings aside)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import sihnet
from sihnet.paths import MeasurePaths, OcclusionPaths, RunPaths

SRC = Path(sihnet.__file__).parent


def run_file_names() -> set[str]:
    """The file names the path classes give (fold 0, a named external cohort, a scan "x")."""
    names = set()
    for kind in (RunPaths, OcclusionPaths, MeasurePaths):
        paths = kind(Path("RUN"))
        for attribute in dir(kind):
            if attribute.startswith("_"):
                continue
            value = getattr(paths, attribute)
            if callable(value):
                for argument in ((0,), ("x",), ()):
                    try:
                        value = value(*argument)
                    except Exception:
                        continue
                    break
            for path in value if isinstance(value, tuple) else (value,):
                if isinstance(path, Path) and path.suffix and path.stem not in ("x", "0"):
                    names.add(path.name)
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
    pattern = re.compile(
        r"(?<![\w.-])(" + "|".join(map(re.escape, sorted(names))) + r")(?![\w-]|\.\w)"
    )  # a template "report.html.j2" is not a run file
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
    assert {"occlusion.json", "regions.tsv", "measure.json", "MODEL_CARD.md"} <= names
    assert misplaced(SRC, names) == []


def test_the_check_sees_a_file_name_built_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "paths.py").write_text('NAME = "summary.json"\n')
    (tmp_path / "other.py").write_text(
        '"""summary.json in a docstring is fine."""\nP = "x/summary.json"\n'
    )
    assert misplaced(tmp_path, {"summary.json"}) == ["other.py:2 summary.json"]
