"""``sihnet measure``'s folder under careless use (issue 37 rows 7-10): every scan gets its own
file-safe name, a long id does not lose the table, a rerun leaves no stale outputs, and a folder
holding the user's own files is refused before anything is read or written."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sihnet.errors import SihnetError
from sihnet.paths import MeasurePaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.reader import measure as module
from sihnet.reader.profiles import Scan
from sihnet.schemas import Reading
from sihnet.synth.cohort import cohort_patients
from sihnet.synth.render import render


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Reading, Scan]:
    from sihnet.reader.reading import read_scan

    (patient,) = cohort_patients(1, seed=37)
    data, affine = render(patient, 3.0)
    path = tmp_path_factory.mktemp("head") / "head.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    reading = read_scan(data.astype(np.float32), affine)
    assert reading.problem == ""
    return path, reading, Scan(data.astype(np.float32), affine)


@pytest.fixture()
def quick(
    head: tuple[Path, Reading, Scan], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Path, VolumeCache]:
    """Every scan read as the one head (its reading computed once)."""
    path, reading, scan = head
    monkeypatch.setattr(module, "load_scan", lambda image, cache: scan)
    monkeypatch.setattr(module, "read_image", lambda image, cache, scan: reading)
    return path, VolumeCache(tmp_path / "cache")


def _names(out: Path) -> list[str]:
    return [r["name"] for r in csv.DictReader(MeasurePaths(out).table.open())]


def test_every_scan_gets_its_own_safe_name(quick: tuple[Path, VolumeCache], tmp_path: Path) -> None:
    image, cache = quick
    ids = ["x", "x", "x_2", "..", ".hidden", "X"]
    out = tmp_path / "out"
    module.run_measure([(i, image) for i in ids], out, cache)
    names = _names(out)
    assert len(set(n.lower() for n in names)) == len(ids)  # unique, on any file system
    assert not any(n.startswith(".") for n in names)
    assert not [p for p in out.rglob(".*")]  # no hidden file anywhere
    for name in names:
        assert all(path.is_file() for path in MeasurePaths(out).outputs(name)), name


def test_a_long_id_keeps_the_table_and_every_scans_files(
    quick: tuple[Path, VolumeCache], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    image, cache = quick
    ids = ["a" * 300, "b", "a" * 299 + "c"]
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        summary = module.run_measure([(i, image) for i in ids], out, cache)
    assert "measuring 3 of 3: " in caplog.text  # a progress line per scan (issue 37 row 15)
    names = _names(out)
    assert summary.read == 3 and len(set(names)) == 3
    assert all(len(n) <= module.NAME_LENGTH for n in names)
    assert all(MeasurePaths(out).reading(n).is_file() for n in names)


def test_a_rerun_with_other_scans_leaves_no_stale_outputs(
    quick: tuple[Path, VolumeCache], tmp_path: Path
) -> None:
    image, cache = quick
    out = tmp_path / "out"
    module.run_measure([("p1", image), ("p2", image)], out, cache)
    module.run_measure([("p3", image)], out, cache)
    assert _names(out) == ["p3"]
    left = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert left == ["measure.json", "measurements.csv", "p3.json", "p3.mrk.json", "p3.png"]


@pytest.mark.parametrize("own", ["measurements.csv", "readings/scan_1.json"])
def test_a_folder_with_the_users_own_files_is_refused_before_anything_is_read(
    quick: tuple[Path, VolumeCache], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own: str
) -> None:
    image, cache = quick
    out = tmp_path / "out"
    (out / own).parent.mkdir(parents=True, exist_ok=True)
    (out / own).write_text("the user's own")

    def never(*args: object) -> None:
        raise AssertionError("a scan was read into a refused folder")

    monkeypatch.setattr(module, "load_scan", never)
    monkeypatch.setattr(module, "read_image", never)
    with pytest.raises(SihnetError, match="no earlier 'sihnet measure' wrote"):
        module.run_measure([("", image)], out, cache)
    assert (out / own).read_text() == "the user's own"
    assert not MeasurePaths(out).record.exists()


def test_the_users_file_among_an_earlier_measures_outputs_is_not_overwritten(
    quick: tuple[Path, VolumeCache], tmp_path: Path
) -> None:
    image, cache = quick
    out = tmp_path / "out"
    module.run_measure([("p1", image)], out, cache)
    MeasurePaths(out).reading("p2").write_text("the user's own")
    with pytest.raises(SihnetError, match="was not written by an earlier"):
        module.run_measure([("p2", image)], out, cache)
    assert MeasurePaths(out).reading("p2").read_text() == "the user's own"
