"""What ``sihnet measure`` says when it cannot (issue 37 row 15): each message names what it is
about - a scan that is not a magnitude image, a manifest given beside images, a folder of NIfTI
files, and in the table the reason each item was not measured."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from sihnet.cli import main
from sihnet.synth.cohort import cohort_patients
from sihnet.synth.render import render
from tests.helpers import write_nifti


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "measurements.csv").open()))


def test_negative_intensities_are_named_not_a_diverged_registration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (patient,) = cohort_patients(1, seed=15)
    data, affine = render(patient, 4.0)
    inverted = write_nifti(
        tmp_path / "inverted.nii.gz", np.asarray(-data, dtype=np.float32), affine
    )
    code = main(
        ["measure", str(inverted), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    )
    assert code == 2
    (row,) = _rows(tmp_path / "o")
    assert "below zero" in row["problem"] and "not a magnitude image" in row["problem"]
    assert "diverged" not in capsys.readouterr().err


def test_a_manifest_beside_images_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,image\np1,a.nii.gz\n")
    code = main(
        ["measure", str(manifest), str(tmp_path / "b.nii.gz"), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "manifest.csv is a manifest: give it alone" in err
    assert len(err.strip().splitlines()) == 1


def test_a_folder_of_nifti_files_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "niftis"
    folder.mkdir()
    write_nifti(folder / "a.nii.gz", np.zeros((8, 8, 8), np.float32), np.eye(4))
    main(["measure", str(folder), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")])
    (row,) = _rows(tmp_path / "o")
    assert "niftis is a folder of NIfTI files, not a DICOM series" in row["problem"]


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
def test_the_table_says_why_an_item_was_not_measured(tmp_path: Path) -> None:
    (patient,) = cohort_patients(1, seed=16)
    data, affine = render(patient, 2.0)
    thick = affine.copy()
    thick_data = data[:, :, ::3]  # every third slice of the third axis: 6 mm apart
    thick[:3, 2] *= 3
    image = write_nifti(tmp_path / "thick.nii.gz", np.asarray(thick_data, dtype=np.float32), thick)
    main(["measure", str(image), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")])
    (row,) = _rows(tmp_path / "o")
    assert row["problem"] == "", row["problem"]
    assert row["suprasellar_cistern_mm"] == ""
    assert "suprasellar_cistern_mm: slices 6.0 mm thick" in row["not_measured"]


def test_predict_says_why_an_item_was_not_measured() -> None:
    from sihnet.cli.summaries import measured_lines
    from sihnet.reader.reading import items_not_measured
    from sihnet.schemas import ReadDistance, Reading, ReadMeasure

    why = "slices 5.0 mm thick: the midline cisterns need 3.5 mm or less"
    reading = Reading(
        version=1,
        items={"suprasellar_cistern_mm": None, "pachymeningeal_enhancement": None},
        distances={"suprasellar_cistern_mm": ReadDistance(mm=None, reason=why)},
        measures={"dural_enhancement": ReadMeasure(value=None, unit="mm", reason="no contrast")},
    )
    reasons = items_not_measured(reading)
    assert reasons == {"suprasellar_cistern_mm": why, "pachymeningeal_enhancement": "no contrast"}
    (line,) = measured_lines({"items": reading.items, "not_measured": reasons})
    assert f"not measured ({why})" in line and "not measured (no contrast)" in line


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
def test_a_manifest_with_a_missing_image_still_reads_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (patient,) = cohort_patients(1, seed=17)
    data, affine = render(patient, 4.0)
    write_nifti(tmp_path / "present.nii.gz", np.asarray(data, dtype=np.float32), affine)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,image\np1,present.nii.gz\np2,missing.nii.gz\n")
    code = main(
        ["measure", str(manifest), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    )
    rows = _rows(tmp_path / "o")
    assert code == 2 and [r["patient_id"] for r in rows] == ["p1", "p2"]
    assert not rows[0]["problem"].startswith("not read")
    assert rows[1]["problem"] == "not read: missing.nii.gz: not found"


def test_every_problem_of_a_manifest_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sihnet.data.manifest import read_manifest
    from sihnet.errors import SihnetError

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,image,label\np1,a.nii.gz,2\np2,b.nii.gz,x\np3,c.nii.gz,7\n")
    with pytest.raises(SihnetError, match="named above"):
        read_manifest(manifest)
    logged = caplog.text
    assert "row 3" in logged and "row 4" in logged  # the second and third, named in the log


def test_a_cache_that_cannot_be_written_is_named_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    image = write_nifti(tmp_path / "x.nii.gz", np.zeros((8, 8, 8), np.float32), np.eye(4))
    code = main(
        ["measure", str(image), "--out", str(tmp_path / "o"), "--cache-dir", str(blocker / "cache")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--cache-dir cache cannot be written (a file is in the way)" in err
    assert not (tmp_path / "o").exists()  # nothing was read or written
