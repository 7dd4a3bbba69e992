"""``sihnet evaluate RUN --manifest``: external validation with the run's fold models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sihnet.synth.cohort import run_synth
from tests.helpers import copy_run, sihnet


def test_evaluate_an_external_cohort_with_the_run_models(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    copy_run(tiny_run, run)
    development = {
        name: (run / name).read_bytes() for name in ("metrics.json", "oof_predictions.csv")
    }
    external = run_synth(tmp_path / "external", n=10, seed=11, spacing_mm=8.0, workers=1)
    result = sihnet("evaluate", run, "--manifest", external, cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert "external cohort cohort-" in result.stdout and ": 10 patients, AUROC" in result.stdout
    (folder,) = (run / "external").iterdir()
    assert folder.name.startswith("cohort-")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n_patients"] == 10 and len(metrics["auroc_fold_models"]) == 2
    assert metrics["auroc_ci95"][0] <= metrics["auroc"] <= metrics["auroc_ci95"][1]
    assert metrics["operating_point"]["thresholds"] and "bern" in metrics
    rows = list(csv.DictReader((folder / "predictions.csv").open()))
    assert len(rows) == 10 and list(rows[0]) == [
        "patient_id",
        "label",
        "probability",
        "probability_fold_0",
        "probability_fold_1",
    ]
    mean = (float(rows[0]["probability_fold_0"]) + float(rows[0]["probability_fold_1"])) / 2
    assert float(rows[0]["probability"]) == pytest.approx(mean, abs=1e-5)
    assert (folder / "roc.png").is_file() and (folder / "reliability.png").is_file()
    for name, before in development.items():  # the development results are untouched
        assert (run / name).read_bytes() == before, name
    # a second site whose manifest has the same file name keeps the first site's results whole
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = run_synth(tmp_path / "site_b" / "external", n=10, seed=12, spacing_mm=8.0, workers=1)
    assert second.name == external.name
    result = sihnet("evaluate", run, "--manifest", second, cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert len(list((run / "external").iterdir())) == 2
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first
    # the report shows both sites, read through the external metrics' schema
    assert sihnet("report", run, cache=tmp_path / "c").returncode == 0
    page = (run / "report.html").read_text()
    assert 'id="external"' in page and page.count("cohort-") >= 2


def test_an_external_cohort_with_one_negative_patient_is_refused_in_one_line(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    rows = list(csv.DictReader(tiny_cohort.open()))
    negative = next(r for r in rows if r["label"] == "0")
    positives = [r for r in rows if r["label"] == "1"][:3]
    manifest = tmp_path / "site.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["patient_id", "image", "label"])
        writer.writeheader()
        for i, row in enumerate([negative, *positives]):
            image = str(tiny_cohort.parent / row["image"])
            writer.writerow({"patient_id": f"x{i}", "image": image, "label": row["label"]})
    result = sihnet("evaluate", tiny_run, "--manifest", manifest, cache=tmp_path / "c")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "needs at least two patients with and two without fistula (it has 3 and 1)" in result.stderr
    )
    assert [line for line in result.stderr.splitlines() if "error" in line] == [
        line for line in result.stderr.splitlines() if line.startswith("sihnet: error: external")
    ]


def test_an_external_cohort_of_development_images_is_warned_about(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    """Issue 31 row 4: the training images under new patient IDs ran as an "external" cohort with
    no warning (reused IDs were warned about, reused images were not)."""
    rows = list(csv.DictReader(tiny_cohort.open()))
    manifest = tmp_path / "renamed.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["patient_id", "image", "label"])
        writer.writeheader()
        for i, row in enumerate(rows):
            image = str(tiny_cohort.parent / row["image"])
            writer.writerow({"patient_id": f"new{i}", "image": image, "label": row["label"]})
    run = tmp_path / "run"
    copy_run(tiny_run, run)
    result = sihnet("evaluate", run, "--manifest", manifest, cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert "12 external image(s) are development images" in result.stderr
    assert "not an external validation" in result.stderr
