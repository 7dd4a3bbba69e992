"""``sihnet measure``: a table, a picture and a Slicer markups file per scan; a scan that cannot be
read is one line and a row saying why, the others are read; readings are cached by content."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sihnet.cli import main
from sihnet.synth.cohort import cohort_patients
from sihnet.synth.render import render


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("measure_images")
    paths = []
    for i, patient in enumerate(cohort_patients(2, seed=61)):
        data, affine = render(patient, 3.0)
        path = folder / f"head_{i}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), str(path))
        paths.append(path)
    noise = np.random.default_rng(0).random((40, 48, 44)).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, np.diag([4.0, 4.0, 4.0, 1.0])), str(folder / "noise.nii.gz"))
    (folder / "broken.nii.gz").write_bytes(b"not an image")
    return [*paths, folder / "noise.nii.gz", folder / "broken.nii.gz"]


def test_measure_reads_the_heads_and_says_why_not_for_the_rest(
    images: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "measured"
    code = main(
        ["measure", *map(str, images), "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    )
    captured = capsys.readouterr()
    assert code == 2  # the broken file could not be read
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    assert [r["name"] for r in rows] == ["scan_1", "scan_2", "scan_3", "scan_4"]
    assert rows[0]["problem"] == "" and rows[1]["problem"] == ""
    assert rows[2]["problem"].startswith("not measured: ")
    assert rows[3]["problem"].startswith("not read: ")
    for row in rows[:2]:
        assert row["bern_score_min"] != ""
        if row["suprasellar_cistern_mm"]:  # head 1 is a 5 mm acquisition: no distance, said why
            assert float(row["pituitary_height_mm"]) > 0
        else:
            assert "slices 5.0 mm thick" in row["not_measured"]
        assert (out / "pictures" / f"{row['name']}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        markups = json.loads((out / "markups" / f"{row['name']}.mrk.json").read_text())
        assert markups["markups"][0]["coordinateSystem"] == "LPS"
        assert {p["label"] for p in markups["markups"][0]["controlPoints"]} >= {
            "chiasm_floor",
            "pons_anterior",
        }
    # no input file's name in any output name, one line per unread scan on stderr
    assert not any("head_" in p.name for p in out.rglob("*"))
    assert "scan_4: " in captured.err and "Traceback" not in captured.err

    from sihnet.reader import image as module

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached reading was recomputed")

    monkeypatch.setattr(module, "read_scan", refuse)
    again = tmp_path / "again"
    assert (
        main(
            [
                "measure",
                *map(str, images[:2]),
                "--out",
                str(again),
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert (again / "measurements.csv").read_text().count("\n") == 3


@pytest.mark.parametrize(
    "edit",
    ["score", pytest.param("sign", marks=pytest.mark.slow)],  # 14 s each: two reads
)
def test_an_edited_cached_reading_is_recomputed_not_trusted(
    images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    """Issue 37 row 6: a cached reading whose score or sign was edited does not agree with its own
    measures, and is read again."""
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.reader import image as module

    cache = VolumeCache(tmp_path / "c")
    first = module.read_image(images[0], cache)
    (record,) = (tmp_path / "c" / "reading").rglob("*.json")
    values = json.loads(record.read_text())
    if edit == "score":
        values["bern_score_min"] = values["bern_score_max"] = 99
    else:
        values["items"]["venous_sinus_engorgement"] = 1.0 - (
            values["items"]["venous_sinus_engorgement"] or 0.0
        )
    record.write_text(json.dumps(values))
    calls = []
    original = module.read_scan
    monkeypatch.setattr(module, "read_scan", lambda *a: calls.append(1) or original(*a))
    again = module.read_image(images[0], cache)
    assert calls == [1]
    assert again.items == first.items and again.bern_score_min == first.bern_score_min
