"""Every run file sihnet writes and reads back goes through one schema: the files of a real run
and its export read back, and a field renamed by hand is refused in one line naming the file."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sihnet.data.splits import load_splits
from sihnet.errors import SihnetError
from sihnet.inference.ensemble import read_reference, read_thresholds, verify_exported
from sihnet.paths import RunPaths
from sihnet.schemas import (
    FoldSummary,
    ImageIdentities,
    MetricsFile,
    PredictionTable,
    read_json,
)
from tests.helpers import sihnet


def _rename_json(path: Path, key: str) -> None:
    """Rename ``key`` (dotted: nested) in a JSON file, as a hand edit or another version would."""
    record = json.loads(path.read_text())
    *parents, last = key.split(".")
    node: Any = record
    for part in parents:
        node = node[part]
    node[f"{last}_renamed"] = node.pop(last)
    path.write_text(json.dumps(record))


def _rename_column(path: Path, column: str) -> None:
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header.replace(column, f"{column}_renamed"), *rows]) + "\n")


# file (relative to the run), the field renamed, the reader sihnet uses
RUN_FILES: list[tuple[str, str, Callable[[RunPaths], object]]] = [
    ("splits.json", "assignment", lambda p: load_splits(p.splits)),
    ("metrics.json", "auroc_pooled", lambda p: read_json(p.metrics, MetricsFile)),
    ("cohort.json", "labels", lambda p: p.read_cohort()),
    ("fold_0/summary.json", "weights_sha256", lambda p: FoldSummary.read(p.fold_summary(0))),
    (
        "image_identities.json",
        "identities",
        lambda p: read_json(p.image_identities, ImageIdentities),
    ),
    ("operating_points.json", "model Youden.threshold", lambda p: read_thresholds(p)),
    ("reference.json", "quantities", lambda p: read_reference(p)),
    ("oof_predictions.csv", "probability", lambda p: PredictionTable.read(p.oof_predictions)),
    ("fold_0/predictions.csv", "label", lambda p: PredictionTable.read(p.fold_predictions(0))),
]


@pytest.mark.parametrize(("name", "field", "read"), RUN_FILES, ids=[f[0] for f in RUN_FILES])
def test_a_run_file_reads_back_and_a_renamed_field_is_refused(
    tiny_run: Path, tmp_path: Path, name: str, field: str, read: Callable[[RunPaths], object]
) -> None:
    run = tmp_path / "run"  # only the file under test: a run's weights are hundreds of MB
    (run / name).parent.mkdir(parents=True)
    shutil.copyfile(tiny_run / name, run / name)
    paths = RunPaths(run)
    assert read(paths) is not None  # as written by the run
    rename = _rename_column if name.endswith(".csv") else _rename_json
    rename(run / name, field)
    with pytest.raises(SihnetError, match=re.escape(Path(name).name)):
        read(paths)


def test_metrics_and_the_exported_models_record_read_back_and_refuse_a_renamed_field(
    tiny_run: Path, tmp_path: Path
) -> None:
    metrics = read_json(RunPaths(tiny_run).metrics, MetricsFile)
    assert metrics.folds_evaluated == [0, 1]
    model = tmp_path / "model"
    assert sihnet("export", tiny_run, "--out", model, cache=tmp_path / "c").returncode == 0
    paths = RunPaths(model)
    record = json.loads(paths.model_record.read_text())
    assert verify_exported(paths, record["folds"], read_thresholds(paths)) == record["model_sha256"]
    _rename_json(paths.model_record, "model_sha256")
    with pytest.raises(SihnetError, match=r"model\.json is damaged"):
        verify_exported(paths, record["folds"], read_thresholds(paths))
