"""Discovery: header reading (fast path and whole headers agree), grouping, mosaics, copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from sihnet.ingest.discover import SELECTION_TAGS, discover, read_header
from sihnet.synth.dicom import bloat_headers, head_volume, write_multiframe, write_series


@pytest.mark.parametrize("vendor", ["siemens", "philips"])
def test_selection_tags_read_the_same_series_as_whole_headers(tmp_path: Path, vendor: str) -> None:
    files = write_series(tmp_path / "in", head_volume((20, 32, 32)), rescale=(2.0, -5.0))
    bloat_headers(files, vendor)
    fast, slow = discover(tmp_path, SELECTION_TAGS), discover(tmp_path, None)
    assert [(s.series_uid, s.frames, s.files) for s in fast[0]] == [
        (s.series_uid, s.frames, s.files) for s in slow[0]
    ]
    for keyword in ("SeriesDescription", "ImageOrientationPatient", "ContrastBolusAgent"):
        assert fast[0][0].header.get(keyword) == slow[0][0].header.get(keyword)


@pytest.mark.parametrize("cut", [2, 600, 2000])
def test_truncated_pixels_are_found_behind_private_groups(tmp_path: Path, cut: int) -> None:
    files = write_series(tmp_path / "in", head_volume((20, 32, 32)))
    bloat_headers(files[:1], "philips")
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) - cut])
    assert read_header(files[0]) == "truncated DICOM file (pixel data shorter than the header says)"
    assert not isinstance(read_header(files[1]), str)


def test_mosaic_slices_are_counted_from_the_mosaic_header(tmp_path: Path) -> None:
    from pydicom.dataelem import DataElement

    from sihnet.ingest.discover import _mosaic_images
    from sihnet.ingest.select import assess

    files = write_series(
        tmp_path / "bold", head_volume((3, 64, 64)), plane="axial", description="SERIES 4",
        contrast_agent=None, image_type=("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"),
        extra={"ScanningSequence": "EP"},
    )  # fmt: skip
    for path in files:  # Siemens CSA: NumberOfImagesInMosaic (0019,100A), US
        ds = pydicom.dcmread(path)
        ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
        ds.add_new(0x0019100A, "US", 36)
        ds.save_as(path)
    [series], _ = discover(tmp_path)
    assert series.mosaic_images == 36 and series.frames == 108
    assessment = assess(series)
    assert assessment.reason == "EPI (mosaic), not a T1 (ImageType MOSAIC)"
    raw = series.header  # implicit VR exports give the private value as raw bytes
    raw[0x0019100A] = DataElement(0x0019100A, "UN", (36).to_bytes(2, "little"))
    assert _mosaic_images(raw) == 36


def test_two_exports_of_one_series_stay_apart_and_copies_are_quarantined(
    tmp_path: Path,
) -> None:
    study, uid = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    volume = head_volume((20, 32, 32))
    files = write_series(tmp_path / "classic", volume, study_uid=study, series_uid=uid)
    write_multiframe(tmp_path / "enhanced" / "mf.dcm", volume, series_uid=uid, study_uid=study)
    shutil.copy(files[0], tmp_path / "classic" / "copy_of_first.dcm")
    series, quarantined = discover(tmp_path)
    assert sorted((s.multiframe, s.frames) for s in series) == [(False, 20), (True, 20)]
    assert [q.reason for q in quarantined] == ["copy of another file (same SOPInstanceUID)"]
