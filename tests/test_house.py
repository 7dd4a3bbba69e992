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


def imports_between(root: Path, importer: str, imported: str) -> list[str]:
    """Modules of unit ``importer`` that import a module of unit ``imported`` (anywhere in their
    body, lazily too), as ``importer_module -> imported_module``."""
    from tests.test_layers import import_graph, unit

    graph = import_graph(root)
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if unit(module) == importer
        for target in targets
        if unit(target) == imported
    )


def content_keyed_records(root: Path) -> list[str]:
    """Places outside the cache module that key something by a scan's content (a
    ``content_hash(...)`` inside a ``text_sha256(...)``) or build a path under a cache's root
    (``cache.root / ...``): a record that should go through ``VolumeCache.record``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = str(path.relative_to(root))
        if name == "preprocessing/cache.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "text_sha256":
                inner = [
                    getattr(n.func, "attr", "") for n in ast.walk(node) if isinstance(n, ast.Call)
                ]
                if "content_hash" in inner:
                    found.append(f"{name}:{node.lineno}")
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.left, ast.Attribute)
                and node.left.attr == "root"
                and "cache" in ast.unparse(node.left.value)
            ):
                found.append(f"{name}:{node.lineno}")
    return found


def test_evaluation_imports_nothing_of_training() -> None:
    """What evaluation and training share (the patient AUROC, the Bern prediction columns, the
    measured run's tables) lives below both."""
    assert imports_between(SRC, "evaluation", "training") == []


def test_preprocessing_imports_nothing_of_ingest() -> None:
    """A DICOM folder is converted at the command's edge (``sihnet.ingest.resolve``), never inside
    a cache lookup: the cache only keys and stores."""
    assert imports_between(SRC, "preprocessing", "ingest") == []


def test_every_content_keyed_record_goes_through_the_caches_one_mechanism() -> None:
    assert content_keyed_records(SRC) == []


def test_the_new_checks_see_a_planted_violation(tmp_path: Path) -> None:
    root = tmp_path / "sihnet"
    for folder in ("evaluation", "training", "reader", "preprocessing", "ingest"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "training" / "samples.py").write_text("X = 1\n")
    (root / "evaluation" / "run_metrics.py").write_text(
        "def f() -> int:\n    from sihnet.training.samples import X\n\n    return X\n"
    )
    (root / "reader" / "measure.py").write_text(
        "def f(cache, image):\n"
        "    key = text_sha256(f'{cache.content_hash(image)}|reader v1')\n"
        "    return cache.root / 'reading' / key\n"
    )
    (root / "ingest" / "convert.py").write_text("def dicom_folder_to_nifti(): ...\n")
    (root / "preprocessing" / "cache.py").write_text(
        "def g(self, p):\n    from sihnet.ingest.convert import dicom_folder_to_nifti\n\n"
        "    return text_sha256(self.content_hash(p)), self.root / 'x'\n"
    )
    assert imports_between(root, "evaluation", "training") == [
        "sihnet.evaluation.run_metrics -> sihnet.training.samples"
    ]
    assert content_keyed_records(root) == ["reader/measure.py:2", "reader/measure.py:3"]
    assert imports_between(root, "preprocessing", "ingest") == [
        "sihnet.preprocessing.cache -> sihnet.ingest.convert"
    ]


SCHEMA_CALLS = {"model_validate", "from_json", "decode"}  # decode: VolumeCache.record's


def json_read_without_schema(root: Path) -> list[str]:
    """``json.loads`` calls outside ``schemas.py`` whose result is not handed straight to a schema
    (``Model.model_validate``, ``X.from_json``, the cache record's ``decode``), as ``path:line``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = str(path.relative_to(root))
        if name == "schemas.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        checked = {
            id(node.args[0])
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and node.args
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", "")) in SCHEMA_CALLS
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in {"json.loads", "json.load"}
                and id(node) not in checked
            ):
                found.append(f"{name}:{node.lineno}")
    return sorted(found, key=lambda f: (f.rsplit(":", 1)[0], int(f.rsplit(":", 1)[1])))


def test_no_json_file_is_read_without_its_schema() -> None:
    assert json_read_without_schema(SRC) == []


def test_the_schema_check_sees_a_planted_violation(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "import json\n"
        "ok = Model.model_validate(json.loads(text))\n"
        "bad = json.loads(text).get('key')\n"
        "also = dict(json.load(handle))\n"
    )
    assert json_read_without_schema(tmp_path) == ["a.py:3", "a.py:4"]
