"""A run on aligned canvases with a high-resolution view and the Bern heads, end to end: trains,
predicts what it validated, maps a view, and refuses a scan that does not align."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import one_line_error, sihnet, write_config, write_nifti

VIEWS = {
    "preprocessing": {
        "align": "mni152",
        "views": [
            {
                "name": "midline",
                "spacing_mm": 4.0,
                "size": [32, 32, 32],
                "bern_items": [
                    "suprasellar_cistern_mm",
                    "prepontine_cistern_mm",
                    "mamillopontine_distance_mm",
                ],
            }
        ],
    },
    "bern_heads": {"enabled": True},
}


@pytest.fixture(scope="module")
def views_run(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("views")
    config = write_config(folder / "views.yaml", **VIEWS)
    result = sihnet(
        "train", tiny_cohort, "--out", folder / "run", "--config", config, cache=folder / "cache"
    )
    assert result.returncode == 0, result.stderr
    return folder / "run", folder / "cache"


def test_a_views_run_predicts_what_it_validated(
    views_run: tuple[Path, Path], tiny_cohort: Path
) -> None:
    run, cache = views_run
    rows = list(csv.DictReader((run / "oof_predictions.csv").open()))
    images = {
        r["patient_id"]: tiny_cohort.parent / r["image"] for r in csv.DictReader(tiny_cohort.open())
    }
    chosen = rows[:3]
    result = sihnet(
        "predict", run, *(images[r["patient_id"]] for r in chosen), "--json", cache=cache
    )
    assert result.returncode == 0, result.stderr
    for row, record in zip(chosen, json.loads(result.stdout), strict=True):
        assert record["fold_probabilities"][row["fold"]] == pytest.approx(
            float(row["probability"]), abs=1e-6
        )
        assert (
            set(record["bern"]["components"]) >= {"suprasellar_cistern_mm"}
            and not record["warnings"]
        )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["auto_bern"]["n_patients"] == 12


def test_a_view_is_mapped_on_its_grid_and_in_native_space(
    views_run: tuple[Path, Path], tiny_cohort: Path, tmp_path: Path
) -> None:
    import nibabel as nib

    run, cache = views_run
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    args = ["occlusion", run, image, "--out", tmp_path / "map", "--view", "midline", "--fold", "0",
            "--patch", "16", "--target", "suprasellar_cistern_mm"]  # fmt: skip
    result = sihnet(*args, cache=cache)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "map" / "occlusion.json").read_text())
    assert record["grid"] == {"shape": [32, 32, 32], "spacing_mm": 4.0}
    native = nib.load(tmp_path / "map" / "occlusion_native.nii.gz")
    assert native.shape == nib.load(image).shape and np.abs(np.asarray(native.dataobj)).max() > 0
    wrong = sihnet(*args[:-2], "--view", "sinus", cache=cache)
    assert "--view must be one of main, midline" in one_line_error(wrong)


def test_a_scan_that_does_not_align_is_refused_for_training(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    rows = list(csv.DictReader(tiny_cohort.open()))[:4]  # the refusal comes before any split
    for row in rows:
        row["image"] = str(tiny_cohort.parent / row["image"])
    noise = np.random.default_rng(0).random((30, 30, 30)).astype(np.float32)
    rows[2]["image"] = str(
        write_nifti(tmp_path / "noise.nii.gz", noise, np.diag([6.0, 6.0, 6.0, 1.0]))
    )
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = write_config(tmp_path / "views.yaml", **VIEWS)
    result = sihnet(
        "train", manifest, "--out", tmp_path / "run", "--config", config, cache=tmp_path / "cache"
    )
    line = one_line_error(result)
    assert "row 4: noise.nii.gz: refused: it does not align to a head" in line


@pytest.mark.slow  # 26 s: exports and runs onnxruntime on every fold
def test_the_model_cards_onnx_recipe_runs_on_an_aligned_model_with_views(
    views_run: tuple[Path, Path], tiny_cohort: Path, tmp_path: Path
) -> None:
    """Issue 31 row 15: the model card's onnxruntime snippet, run as written on an aligned model
    with a view and the Bern heads, gives predict's fold-0 probability."""
    pytest.importorskip("onnxruntime", reason="pip install 'sihnet[onnx]'")
    run, cache = views_run
    model = tmp_path / "model"
    result = sihnet("export", run, "--out", model, "--onnx", cache=cache)
    assert result.returncode == 0, result.stderr
    card = (model / "MODEL_CARD.md").read_text()
    snippet = textwrap.dedent(card.split("```python\n")[1].split("```")[0])
    image = tiny_cohort.parent / "images" / "synth-004.nii.gz"
    code = snippet.replace("MODEL_DIR", str(model)).replace("IMAGE.nii.gz", str(image))
    environment = {**os.environ, "SIHNET_CACHE_DIR": str(cache)}
    ran = subprocess.run(
        [sys.executable, "-c", code + "\nprint(float(probability[0]))"],
        capture_output=True, text=True, env=environment, timeout=600,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    expected = json.loads(sihnet("predict", model, image, "--json", cache=cache).stdout)[0]
    probability = float(ran.stdout.strip().splitlines()[-1])
    assert probability == pytest.approx(expected["fold_probabilities"]["0"], abs=1e-4)
