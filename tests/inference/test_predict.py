"""``sihnet predict``: fold-ensemble probabilities, bad images reported, the others scored."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


def test_a_dicom_folder_is_converted_once_and_read_once(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict's walk of a DICOM folder: converted at the command's edge, once; its voxels read
    once for the alignment, the network's canvas, the reader and the input checks; a second
    predict converts and reads nothing (everything is a cache record)."""
    import sihnet.ingest.resolve as resolve
    import sihnet.preprocessing.cache as cache_module
    from sihnet.inference.predict import run_predict
    from sihnet.preprocessing.cache import VolumeCache

    counts = {"converted": 0, "read": 0}

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            counts[name] += 1
            return function(*args)

        return wrapper

    monkeypatch.setattr(
        resolve, "dicom_folder_to_nifti", counted("converted", resolve.dicom_folder_to_nifti)
    )
    monkeypatch.setattr(cache_module, "load_volume", counted("read", cache_module.load_volume))
    dicom = tmp_path / "dicom"
    write_series(dicom, head_volume((40, 48, 44)))
    first = run_predict(tiny_run, [dicom], cache=VolumeCache(tmp_path / "c"))
    assert "error" not in first[0] and counts == {"converted": 1, "read": 1}
    again = run_predict(tiny_run, [dicom], cache=VolumeCache(tmp_path / "c"))
    assert again[0]["probability"] == first[0]["probability"]
    assert counts == {"converted": 1, "read": 1}
