"""The house rules of ``src/`` (issue 30): modules and functions small enough to read, and the
fold loop without process-wide mutable state."""

from __future__ import annotations

import ast
from pathlib import Path

import sihnet

SRC = Path(sihnet.__file__).parent
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_FOLD_LINES = 400, 60, 300


def oversized(root: Path) -> list[str]:
    """Modules over ``MAX_MODULE_LINES`` and functions over ``MAX_FUNCTION_LINES`` (docstring
    included), as ``path[:function] lines``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(root)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{name} {len(text.splitlines())}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.name} {lines}")
    return found


def module_state(path: Path) -> list[str]:
    """Module-level names bound to a mutable container (dict, list, set, or a call making one)."""
    mutable = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        made = isinstance(value, ast.Call) and getattr(value.func, "id", "") in {
            "dict",
            "list",
            "set",
        }
        if isinstance(value, mutable) or made:
            found += [t.id for t in targets if isinstance(t, ast.Name)]
    return found


def test_modules_and_functions_are_small_enough_to_read() -> None:
    assert oversized(SRC) == []


def test_the_fold_loop_reads_top_to_bottom_without_process_wide_state() -> None:
    fold = SRC / "training" / "fold.py"
    assert len(fold.read_text().splitlines()) <= MAX_FOLD_LINES
    assert module_state(fold) == []


def test_the_checks_see_a_long_function_and_module_state(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def f() -> None:\n{body}\n")
    (tmp_path / "state.py").write_text("_SEEN: dict[str, int] = {}\nLIMIT = 3\nCACHE = dict()\n")
    assert oversized(tmp_path) == [f"long.py:f {MAX_FUNCTION_LINES + 1}"]
    assert module_state(tmp_path / "state.py") == ["_SEEN", "CACHE"]
