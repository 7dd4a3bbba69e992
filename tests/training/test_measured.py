"""A run with the measured model: every scan read, a model per fold on its training patients, the
fused out-of-fold probability equal to what predict gives, the reader's agreement evaluated, and
the measured models part of an exported model's identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sihnet.config import load_config
from sihnet.data.manifest import read_manifest
from sihnet.evaluation.run import run_evaluation
from sihnet.models.measured import fuse, logit
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.schemas import PredictionTable
from sihnet.tables import read_rows
from sihnet.training.run import run_training
from tests.helpers import tiny_config
from tests.inference.test_inference import assert_predict_equals_out_of_fold


@pytest.mark.slow  # reads every scan of the tiny cohort twice (training, predict): about a minute
def test_a_measured_run_fuses_out_of_fold_as_predict_does(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    config = load_config("quick", overrides=tiny_config(measured={"enabled": True}))
    paths, cache = RunPaths(tmp_path / "run"), VolumeCache(tmp_path / "cache")
    run_training(config, read_manifest(tiny_cohort), paths, cache)
    assert len(read_rows(paths.measurements)) == 12
    splits = json.loads(paths.splits.read_text())["assignment"]
    for fold in (0, 1):
        model = json.loads(paths.fold_measured_model(fold).read_text())
        assert len(model["coefficients"]) == 7
        table = PredictionTable.read(paths.fold_predictions(fold))
        assert {splits[p] for p in table.patient_ids} == {fold}
        expected = fuse(
            table.scores["probability_network"], logit(table.scores["probability_measured"])
        )
        assert table.probability == pytest.approx(expected, abs=2e-6)
    metrics = run_evaluation(paths)
    assert metrics.reader is not None and set(metrics.reader["distances"]) == {
        "suprasellar_cistern_mm", "prepontine_cistern_mm", "mamillopontine_distance_mm"
    }  # fmt: skip
    assert "auroc_network" in metrics.reader and "auroc_measured" in metrics.reader
    assert_predict_equals_out_of_fold(paths.root, tiny_cohort, cache)
    # an edited measured model is refused: it is part of the model's identity
    from sihnet.inference.ensemble import identity_files

    assert paths.fold_measured_model(0) in identity_files(paths, [0, 1])


@pytest.mark.parametrize("value", ["abc", "nan", "inf"])
def test_a_damaged_measurements_table_is_one_line_naming_file_line_and_column(
    tmp_path: Path, value: str
) -> None:
    """Issue 37 row 14: not an internal ValueError."""
    from sihnet.errors import SihnetError
    from sihnet.reader.reading import FEATURES
    from sihnet.training.measured import read_measurements

    paths = RunPaths(tmp_path)
    header = ["patient_id", *FEATURES]
    rows = [["p1", *["1.0"] * len(FEATURES)], ["p2", value, *["2.0"] * (len(FEATURES) - 1)]]
    paths.measurements.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    with pytest.raises(SihnetError, match=rf"measurements.csv line 3: {FEATURES[0]} '{value}'"):
        read_measurements(paths)
