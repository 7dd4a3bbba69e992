"""A run with the measured model: every scan read, a model per fold on its training patients, the
fused out-of-fold probability equal to what predict gives, the reader's agreement evaluated, and
the measured models part of an exported model's identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sihnet.config import load_config
from sihnet.data.manifest import read_manifest
from sihnet.evaluation.run_metrics import run_evaluation
from sihnet.models.measured import fuse, logit
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.schemas import PredictionTable
from sihnet.tables import read_rows
from sihnet.training.cross_validation import run_training
from tests.helpers import tiny_config
from tests.inference.test_inference import assert_predict_equals_out_of_fold


@pytest.mark.slow  # reads every scan of the tiny cohort twice (training, predict): about a minute
def test_a_measured_run_fuses_out_of_fold_as_predict_does(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    config = load_config("quick", overrides=tiny_config(measured={"enabled": True}))
    paths, cache = RunPaths(tmp_path / "run"), VolumeCache(tmp_path / "cache")
    run_training(config, read_manifest(tiny_cohort), paths, cache)
    assert len(read_rows(paths.patient_measures)) == 12
    splits = json.loads(paths.splits.read_text())["assignment"]
    for fold in (0, 1):
        model = json.loads(paths.fold_measured_model(fold).read_text())
        assert len(model["coefficients"]) == 7
        table = PredictionTable.read(paths.fold_measured_predictions(fold))
        assert {splits[p] for p in table.patient_ids} == {fold}
        expected = fuse(
            table.scores["probability_network"], logit(table.scores["probability_measured"])
        )
        assert table.probability == pytest.approx(expected, abs=2e-6)
        # the fold's own predictions stay the network's, as its summary.json is
        network = PredictionTable.read(paths.fold_predictions(fold))
        assert "probability_measured" not in network.scores
        assert network.probability == pytest.approx(table.scores["probability_network"])
    metrics = run_evaluation(paths)
    assert metrics.reader is not None and set(metrics.reader["distances"]) == {
        "suprasellar_cistern_mm", "prepontine_cistern_mm", "mamillopontine_distance_mm"
    }  # fmt: skip
    assert "auroc_network" in metrics.reader and "auroc_measured" in metrics.reader
    assert_predict_equals_out_of_fold(paths.root, tiny_cohort, cache)
    # an edited measured model is refused: it is part of the model's identity
    from sihnet.inference.ensemble import identity_files

    assert paths.fold_measured_model(0) in identity_files(paths, [0, 1])
    # issue 37 row 5: a scan the reader measured nothing on says so; no measured probability
    import nibabel as nib
    import numpy as np

    from sihnet.inference.predict import NOTHING_MEASURED, run_predict

    noise = tmp_path / "noise.nii.gz"
    rng = np.random.default_rng(0)
    nib.save(
        nib.Nifti1Image(rng.random((40, 48, 44)).astype(np.float32), np.diag([4.0] * 3 + [1.0])),
        str(noise),
    )
    (record,) = run_predict(paths.root, [noise], cache=cache)
    assert NOTHING_MEASURED in record["warnings"] and record["probability_measured"] is None
    # issue 37 row 4: the model card says the model is fused, and its ONNX recipe gives predict's
    card_recipe_gives_predicts_fold_0(paths.root, tiny_cohort, tmp_path, cache.root)
    # issue 37 row 6: in the run itself too, an edited model or table is refused, not used
    from sihnet.errors import SihnetError

    lines = paths.patient_measures.read_text().splitlines()
    paths.patient_measures.write_text("\n".join(lines[:-1]) + "\n")  # a patient deleted
    with pytest.raises(SihnetError, match=r"patient_measures\.csv was changed after training"):
        run_evaluation(paths)
    paths.patient_measures.unlink()
    with pytest.raises(SihnetError, match=r"patient_measures\.csv is missing"):
        run_evaluation(paths)


@pytest.mark.parametrize("value", ["abc", "nan", "inf"])
def test_a_damaged_measurements_table_is_one_line_naming_file_line_and_column(
    tmp_path: Path, value: str
) -> None:
    """Issue 37 row 14: not an internal ValueError."""
    from sihnet.errors import SihnetError
    from sihnet.models.measurements import read_measurements
    from sihnet.reader.reading import FEATURES

    paths = RunPaths(tmp_path)
    header = ["patient_id", *FEATURES]
    rows = [["p1", *["1.0"] * len(FEATURES)], ["p2", value, *["2.0"] * (len(FEATURES) - 1)]]
    paths.patient_measures.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    with pytest.raises(SihnetError, match=rf"patient_measures.csv line 3: {FEATURES[0]} '{value}'"):
        read_measurements(paths)


def test_an_edited_measured_model_is_refused(tmp_path: Path) -> None:
    """Issue 37 row 6: the measured model's JSON is sealed; a hand edit (a coefficient) is refused
    by the run's own predict as it is by an export's, and a table it was not fitted from too."""
    import dataclasses

    import numpy as np

    from sihnet.errors import SihnetError
    from sihnet.inference.ensemble import read_measured_models
    from sihnet.models.measured import EditedModelError, MeasuredModel
    from sihnet.models.measurements import read_verified_measurements

    rows = [{"a": float(i), "b": float(i % 3)} for i in range(20)]
    model = MeasuredModel.fit(rows, np.array([i % 2 for i in range(20)]), features=("a", "b"))
    values = model.as_json()
    assert MeasuredModel.from_json(values) == model
    edited = {**values, "intercept": values["intercept"] + 1.0}
    with pytest.raises(EditedModelError):
        MeasuredModel.from_json(edited)
    paths = RunPaths(tmp_path)
    paths.fold_measured_model(0).parent.mkdir()
    paths.fold_measured_model(0).write_text(json.dumps(edited))
    config = load_config("quick", overrides=tiny_config(measured={"enabled": True}))
    with pytest.raises(SihnetError, match=r"measured_model\.json was changed after training"):
        read_measured_models(paths, config, [0])
    paths.patient_measures.write_text("patient_id\np1\n")
    other = dataclasses.replace(model, measurements_sha256="0" * 64)
    paths.fold_measured_model(0).write_text(json.dumps(other.as_json()))
    with pytest.raises(SihnetError, match=r"patient_measures\.csv was changed after training"):
        read_verified_measurements(paths, [0])


def card_recipe_gives_predicts_fold_0(
    run: Path, tiny_cohort: Path, tmp_path: Path, cache: Path
) -> None:
    """Export with ONNX, run the model card's onnxruntime snippet as written, compare."""
    import os
    import subprocess
    import sys
    import textwrap

    from tests.helpers import sihnet

    pytest.importorskip("onnxruntime", reason="pip install 'sihnet[onnx]'")
    model = tmp_path / "model"
    result = sihnet("export", run, "--out", model, "--onnx", cache=cache)
    assert result.returncode == 0, result.stderr
    card = (model / "MODEL_CARD.md").read_text()
    assert "**Measured model**" in card and "mean of the two logits" in card
    snippet = textwrap.dedent(card.split("```python\n")[1].split("```")[0])
    image = tiny_cohort.parent / "images" / "synth-004.nii.gz"
    code = snippet.replace("MODEL_DIR", str(model)).replace("IMAGE.nii.gz", str(image))
    ran = subprocess.run(
        [sys.executable, "-c", code + "\nprint(float(probability[0]))"],
        capture_output=True, text=True, env={**os.environ, "SIHNET_CACHE_DIR": str(cache)},
        timeout=600,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    expected = json.loads(sihnet("predict", model, image, "--json", cache=cache).stdout)[0]
    probability = float(ran.stdout.strip().splitlines()[-1])
    assert probability == pytest.approx(expected["fold_probabilities"]["0"], abs=1e-4)


def test_the_training_log_names_the_rows_not_fully_measured_and_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 37 row 15: not only a count."""
    import logging

    import nibabel as nib
    import numpy as np

    from sihnet.models.measurements import measure_patients_in_memory

    noise = np.random.default_rng(0).random((40, 48, 44)).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, np.diag([4.0] * 3 + [1.0])), str(tmp_path / "noise.nii.gz"))
    (tmp_path / "m.csv").write_text("patient_id,image\np1,noise.nii.gz\n")
    cohort = read_manifest(tmp_path / "m.csv", require_labels=False)
    with caplog.at_level(logging.INFO):
        measures = measure_patients_in_memory(cohort, VolumeCache(tmp_path / "c"))
    assert all(v is None for v in measures["p1"].values())
    assert "row 2: the automatic Bern reader did not measure all: not measured: it does not" in (
        caplog.text
    )
