"""``sihnet predict``: fold-ensemble probabilities, bad images reported, the others scored."""

from __future__ import annotations

import json
from pathlib import Path

from sihnet.synth.dicom import head_volume, write_series
from tests.helpers import sihnet


def test_predict_scores_good_images_and_names_the_bad_one(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    images = tiny_cohort.parent / "images"
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"oops")
    dicom = tmp_path / "dicom"
    write_series(dicom, head_volume((40, 48, 44)))
    result = sihnet(
        "predict", tiny_run, images / "synth-001.nii.gz", bad, dicom, "--json", cache=tmp_path / "c"
    )
    assert result.returncode == 2 and "1 of 3 images could not be scored" in result.stderr
    records = json.loads(result.stdout)
    assert [r["image"] for r in records] == [
        "#1 synth-001.nii.gz",
        "#2 bad.nii.gz",
        "#3 (DICOM folder)",
    ]
    first = records[0]
    assert 0 <= first["probability"] <= 1 and set(first["fold_probabilities"]) == {"0", "1"}
    folds = list(first["fold_probabilities"].values())
    assert first["probability"] == sum(folds) / 2
    assert "cannot read NIfTI" in records[1]["error"] and 0 <= records[2]["probability"] <= 1
    # the automatic Bern reader's reading beside the probability, or why it has none
    assert first["measured"]["problem"] or set(first["measured"]["items"]) >= {
        "prepontine_cistern_mm"
    }
    warnings = " ".join(w for r in records if "warnings" in r for w in r["warnings"])
    assert "the probability is not reliable: it does not align" in warnings  # the DICOM toy
    assert "the image it" not in warnings and "the image its" not in warnings
    text = sihnet("predict", tiny_run, images / "synth-001.nii.gz", cache=tmp_path / "c")
    assert "measured Bern score" in text.stdout or "automatic Bern reader" in text.stdout
