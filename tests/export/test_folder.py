"""``sihnet export``: a portable model that predicts the same numbers anywhere, and refuses tampering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import copy_run, one_line_error, sihnet


def test_an_exported_model_elsewhere_predicts_what_the_run_predicts(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    exported = sihnet("export", tiny_run, "--out", tmp_path / "model", cache=tmp_path / "c0")
    assert exported.returncode == 0, exported.stderr
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(tmp_path / "model", moved)
    shutil.rmtree(tmp_path / "model")
    names = sorted(str(p.relative_to(moved)) for p in moved.rglob("*") if p.is_file())
    assert names == [
        "LICENSE", "MODEL_CARD.md", "config.yaml", "configs/inference.json", "configs/logging.conf",
        "configs/metadata.json",
        "docs/README.md", "fold_0/best.safetensors", "fold_0/summary.json", "fold_1/best.safetensors",
        "fold_1/summary.json", "model.json", "models/fold_0.safetensors", "models/fold_1.safetensors",
        "operating_points.json", "reference.json",
    ]  # fmt: skip
    images = [tiny_cohort.parent / "images" / f"synth-00{i}.nii.gz" for i in (1, 2)]
    from_run = sihnet("predict", tiny_run, *images, "--json", cache=tmp_path / "c1")
    from_model = sihnet("predict", moved, *images, "--json", cache=tmp_path / "c2")  # fresh cache
    assert from_run.returncode == from_model.returncode == 0, from_model.stderr
    for a, b in zip(json.loads(from_run.stdout), json.loads(from_model.stdout), strict=True):
        assert b["probability"] == pytest.approx(a["probability"], abs=1e-6)
        assert (
            b["operating_points"] == a["operating_points"]
            and b["model_sha256"] == a["model_sha256"]
        )
        assert set(b) == {"image", "probability", "probability_sd", "fold_probabilities",
                          "operating_points", "warnings", "model_sha256", "measured", "notice"}  # fmt: skip
    card = (moved / "MODEL_CARD.md").read_text()
    for section in ("## Intended use", "## Out-of-scope use", "## Training data", "## Metrics",
                    "## Calibration", "## Factors and subgroups", "not a medical model"):  # fmt: skip
        assert section in card
    metadata = json.loads((moved / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    assert "synth-" not in "".join(p.read_text(errors="ignore") for p in moved.rglob("*.json"))
    weights = moved / "fold_1" / "best.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4:] = b"\0\0\0\1"
    weights.write_bytes(bytes(data))
    tampered = sihnet("predict", moved, images[0], cache=tmp_path / "c3")
    assert "fold_1/best.safetensors was changed after the export" in one_line_error(tampered)


def test_a_partial_run_is_not_exported_unless_asked(tiny_run: Path, tmp_path: Path) -> None:
    from sihnet.errors import SihnetError
    from sihnet.export import run_export

    run = tmp_path / "run"
    copy_run(tiny_run, run)
    (run / "fold_1" / "summary.json").unlink()
    with pytest.raises(SihnetError, match="all folds are required"):
        run_export(run, tmp_path / "m")
    assert run_export(run, tmp_path / "m", allow_missing_folds=True).is_dir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    occupied = sihnet("export", tiny_run, "--out", tmp_path / "full", cache=tmp_path)
    assert "is not an empty folder" in one_line_error(occupied)


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
def test_an_exported_model_evaluated_on_a_site_still_predicts(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    """Issue 37 row 11: the model card's own recipe (``evaluate MODEL --manifest SITE``) writes
    ``external/`` into the model folder; that is a result of the model, not a change to it. Any
    other added file is still refused."""
    from sihnet.synth.cohort import run_synth

    model = tmp_path / "model"
    assert sihnet("export", tiny_run, "--out", model, cache=tmp_path / "c").returncode == 0
    site = run_synth(tmp_path / "site", n=10, seed=13, spacing_mm=8.0, workers=1)
    evaluated = sihnet("evaluate", model, "--manifest", site, cache=tmp_path / "c")
    assert evaluated.returncode == 0, evaluated.stderr
    assert any((model / "external").iterdir())
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    predicted = sihnet("predict", model, image, cache=tmp_path / "c")
    assert predicted.returncode == 0, predicted.stderr
    (model / "fold_0" / "notes.txt").write_text("added")
    refused = sihnet("predict", model, image, cache=tmp_path / "c")
    assert "fold_0/notes.txt is not part of this exported model" in one_line_error(refused)
