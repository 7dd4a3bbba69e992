"""``sihnet convert`` on DICOM studies built with pydicom: selection, parity with dcm2niix, no PHI."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from sihnet.errors import SihnetError
from sihnet.ingest.dcm2niix import dcm2niix_binary
from sihnet.ingest.deid import Pseudonyms
from sihnet.ingest.resolve import convert_dicom_inputs
from sihnet.preprocessing.cache import VolumeCache
from sihnet.synth.dicom import (
    SENTINEL,
    SENTINELS,
    head_volume,
    write_series,
)
from tests.helpers import sihnet


def build_export(root: Path) -> dict[str, Path]:
    """Two patients' studies under a folder named with PHI, plus junk files."""
    first = root / f"{SENTINEL}_DOE_JOHN" / "study1"
    study = pydicom.uid.generate_uid()
    series = {
        "localizer": write_series(
            first / "loc",
            head_volume((3, 48, 44)),
            description="localizer",
            series_number=1,
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            study_uid=study,
            time="100000",
            contrast_agent=None,
        ),
        "pre": write_series(
            first / "ax_pre",
            head_volume((24, 48, 44), seed=1),
            plane="axial",
            description="T1 SE tra nativ",
            series_number=2,
            acquisition="2D",
            contrast_agent=None,
            study_uid=study,
            time="100500",
            tr_te=(500.0, 10.0),
        ),
        "post": write_series(
            first / "sag_post",
            head_volume((40, 48, 44), seed=2),
            description="t1_mprage_sag nach KM",
            series_number=5,
            study_uid=study,
            time="102000",
            spacing=(1.0, 0.9, 0.9),
        ),
        "reformat": write_series(
            first / "mpr",
            head_volume((30, 48, 44), seed=3),
            plane="coronal",
            description="MPR cor post",
            series_number=6,
            image_type=("DERIVED", "SECONDARY", "MPR"),
            study_uid=study,
            time="102500",
        ),
        "ct": write_series(
            first / "ct",
            head_volume((20, 32, 32), seed=4),
            plane="axial",
            description="CT head",
            series_number=7,
            modality="CT",
            contrast_agent=None,
            study_uid=study,
            time="103000",
        ),
    }
    second = root / f"{SENTINEL}_ROE_JANE"
    series["fallback"] = write_series(
        second,
        head_volume((36, 40, 40), seed=5),
        plane="axial",
        description="T1 3D tra Gd",
        series_number=3,
        contrast_agent=None,
        phi={"PatientID": f"{SENTINEL}ID002"},
    )
    junk = root / f"{SENTINEL}_DOE_JOHN" / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text(f"patient {SENTINEL} notes")
    source = series["post"][0].read_bytes()
    (junk / "cut.dcm").write_bytes(source[: len(source) - 1500])
    return {name: files[0].parent for name, files in series.items()}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("convert")
    export = root / "export"
    folders = build_export(export)
    (root / "key").write_text("a-secret-key-for-tests")
    labels = root / "labels.csv"
    labels.write_text(
        f"patient_id,label,age,suprasellar_cistern_mm\n{SENTINEL}ID001,1,54,3.1\n{SENTINEL}ID002,0,61,5.0\n"
    )
    out = root / "out"
    result = sihnet(
        "convert", export, "--out", out, "--key-file", root / "key", "--labels", labels,
        "--quarantine-paths", root / "quarantine_paths.tsv", cache=root / "cache",
    )  # fmt: skip
    return {"root": root, "out": out, "result": result, "folders": folders, "export": export}


def read_tsv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(), delimiter="\t"))


def test_exit_code_and_summary(converted: dict[str, object]) -> None:
    result = converted["result"]
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 3, result.stderr  # converted, with quarantined files
    assert "2 of 2 studies converted" in result.stdout
    assert "Traceback" not in result.stderr


def test_right_series_is_picked_and_explained(converted: dict[str, object]) -> None:
    out = Path(str(converted["out"]))
    rows = read_tsv(out / "selection.tsv")
    by_number = {(r["subject"], r["series_number"]): r for r in rows}
    selected = [r for r in rows if r["decision"].startswith("selected")]
    assert sorted(r["series_number"] for r in selected) == ["3", "5"]
    first = next(r for r in selected if r["series_number"] == "5")
    assert (
        first["orientation"] == "sagittal"
        and first["acquisition"] == "3D"
        and first["contrast"] == "post"
    )
    subject = first["subject"]
    assert by_number[(subject, "1")]["reason"] == "localizer"
    assert (
        by_number[(subject, "2")]["contrast"] == "pre"
        and by_number[(subject, "2")]["decision"] == "not post-contrast"
    )
    assert "derived" in by_number[(subject, "6")]["reason"]
    assert "not MR" in by_number[(subject, "7")]["reason"]
    fallback = next(r for r in selected if r["series_number"] == "3")
    assert fallback["decision"] == "selected (uncertain)" and "no sagittal" in fallback["reason"]
    assert fallback["contrast_evidence"] == "description" and first["contrast_evidence"] == "header"
    assert "'Gd'" in fallback["reason"] or "'gd'" in fallback["reason"]


def test_manifest_labels_and_bids_files(converted: dict[str, object]) -> None:
    out = Path(str(converted["out"]))
    manifest = list(csv.DictReader((out / "manifest.csv").open()))
    assert next(list(r) for r in manifest) == [
        "patient_id",
        "image",
        "label",
        "age",
        "suprasellar_cistern_mm",
    ]
    assert sorted(r["label"] for r in manifest) == ["0", "1"]
    for row in manifest:
        assert row["patient_id"].startswith("sub-") and (out / row["image"]).is_file()
        assert (
            row["image"] == f"{row['patient_id']}/anat/{row['patient_id']}_ce-gadolinium_T1w.nii.gz"
        )
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["BIDSVersion"] and description["GeneratedBy"][1]["Name"] == "dcm2niix"
    from sihnet.data.manifest import read_manifest

    assert len(read_manifest(out / "manifest.csv").scans) == 2
    assert len(read_manifest(out).scans) == 2  # also readable as a BIDS root


def test_quarantine_lists_bad_files_without_paths(converted: dict[str, object]) -> None:
    out, root = Path(str(converted["out"])), Path(str(converted["root"]))
    reasons = sorted(r["reason"] for r in read_tsv(out / "quarantine.tsv"))
    assert reasons == [
        "not a DICOM file",
        "truncated DICOM file (pixel data shorter than the header says)",
    ]
    paths = read_tsv(root / "quarantine_paths.tsv")  # outside the output, for the user
    assert sorted(Path(r["path"]).name for r in paths) == ["cut.dcm", "notes.txt"]


def _all_bytes(folder: Path) -> list[tuple[str, bytes]]:
    found = []
    for path in folder.rglob("*"):
        found.append((str(path.relative_to(folder)), str(path.relative_to(folder)).encode()))
        if path.is_file():
            data = path.read_bytes()
            found.append((str(path), gzip.decompress(data) if path.suffix == ".gz" else data))
    return found


def test_no_phi_anywhere_in_output_or_logs(converted: dict[str, object]) -> None:
    out, result = Path(str(converted["out"])), converted["result"]
    assert isinstance(result, subprocess.CompletedProcess)
    for where, data in [
        *_all_bytes(out),
        ("stdout", result.stdout.encode()),
        ("stderr", result.stderr.encode()),
    ]:
        for sentinel in SENTINELS:
            assert sentinel.encode() not in data, f"{sentinel} in {where}"
    image = nib.load(next(out.rglob("*.nii.gz")))
    for field in ("descrip", "aux_file", "db_name", "intent_name"):
        assert image.header[field].item() == b""
    assert len(image.header.extensions) == 0
    sidecar = json.loads(next(out.rglob("sub-*_T1w.json")).read_text())
    assert (
        "SeriesDescription" not in sidecar
        and "InstitutionName" not in sidecar
        and "EchoTime" in sidecar
    )


def test_voxels_and_affine_match_a_direct_dcm2niix_call(
    converted: dict[str, object], tmp_path: Path
) -> None:
    out, folders = Path(str(converted["out"])), converted["folders"]
    assert isinstance(folders, dict)
    subprocess.run(
        [dcm2niix_binary(), "-f", "direct", "-z", "n", "-o", str(tmp_path), str(folders["post"])],
        check=True,
        capture_output=True,
    )
    direct = nib.load(tmp_path / "direct.nii")
    subject = next(r for r in read_tsv(out / "selection.tsv") if r["series_number"] == "5")[
        "subject"
    ]
    ours = nib.load(out / subject / "anat" / f"{subject}_ce-gadolinium_T1w.nii.gz")
    np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(direct.dataobj))
    np.testing.assert_allclose(ours.affine, direct.affine, atol=1e-5)


def test_a_hostile_dcm2nii_ini_changes_nothing(
    converted: dict[str, object], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".dcm2nii.ini").write_text(
        "[Options]\nisGz=1\nisBIDS=0\nfilename=%n_%i_%t\nisIgnorenDerivedAnd2D=1\nisCrop=1\n"
    )
    export = Path(str(converted["export"]))
    folder = export / f"{SENTINEL}_DOE_JOHN" / "study1" / "sag_post"
    (tmp_path / "key").write_text("a-secret-key-for-tests")
    env_out = tmp_path / "out"
    result = subprocess.run(
        [*_cli(), "convert", str(folder), "--out", str(env_out), "--key-file", str(tmp_path / "key")],
        capture_output=True, text=True, env={"HOME": str(home), "PATH": "/usr/bin:/bin", "SIHNET_CACHE_DIR": str(tmp_path / "c")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    converted_out = Path(str(converted["out"]))
    subject = next(
        r for r in read_tsv(converted_out / "selection.tsv") if r["series_number"] == "5"
    )["subject"]
    reference = converted_out / subject / "anat" / f"{subject}_ce-gadolinium_T1w.nii.gz"
    ours = next(env_out.rglob("*_T1w.nii.gz"))
    assert ours.name == reference.name  # same keyed pseudonym
    np.testing.assert_array_equal(
        np.asarray(nib.load(ours).dataobj), np.asarray(nib.load(reference).dataobj)
    )


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "sihnet.cli"]


def test_mapping_table_pseudonyms_and_its_place(tmp_path: Path) -> None:
    write_series(tmp_path / "in", head_volume((20, 32, 32)))
    mapping = tmp_path / "mapping.csv"
    result = sihnet(
        "convert",
        tmp_path / "in",
        "--out",
        tmp_path / "out",
        "--mapping",
        mapping,
        cache=tmp_path / "c",
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(mapping.open()))
    assert rows == [{"original_id": f"{SENTINEL}ID001", "pseudonym": "sub-0001"}]
    assert (tmp_path / "out" / "sub-0001" / "anat" / "sub-0001_ce-gadolinium_T1w.nii.gz").is_file()
    inside = sihnet(
        "convert",
        tmp_path / "in",
        "--out",
        tmp_path / "o2",
        "--mapping",
        tmp_path / "o2" / "m.csv",
        cache=tmp_path / "c",
    )
    assert inside.returncode == 2 and "outside the output folder" in inside.stderr
    none = sihnet("convert", tmp_path / "in", "--out", tmp_path / "o3", cache=tmp_path / "c")
    assert none.returncode == 2 and "pseudonym key" in none.stderr
    assert (
        Pseudonyms(b"0123456789").of("x")
        == Pseudonyms(b"0123456789").of("x")
        != Pseudonyms(b"9876543210").of("x")
    )


def test_dicom_folder_works_where_an_image_does(tmp_path: Path) -> None:
    cache = VolumeCache(tmp_path / "cache")
    folder = tmp_path / f"{SENTINEL}_patient"
    write_series(folder, head_volume((24, 32, 32)))
    with pytest.raises(SihnetError, match="did not convert"):  # the cache never converts
        cache.nifti_of(folder)
    assert convert_dicom_inputs([folder, folder], cache) == 1  # at the command's edge, once
    first = cache.nifti_of(folder)
    assert first.is_file() and SENTINEL not in str(first)
    assert first.parent == tmp_path / "cache" / "dicom"  # under the cache's own root
    mtime = first.stat().st_mtime_ns
    assert convert_dicom_inputs([folder], VolumeCache(tmp_path / "cache")) == 0  # kept
    assert cache.nifti_of(folder) == first and first.stat().st_mtime_ns == mtime
    assert cache.nifti_of(tmp_path / "x.nii.gz") == tmp_path / "x.nii.gz"
    # a folder that cannot be converted: its reason is met where the image is used
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not DICOM")
    assert convert_dicom_inputs([empty], cache) == 0
    with pytest.raises(SihnetError, match="0 studies"):
        cache.nifti_of(empty)


def test_real_files_from_pydicom_and_nibabel_are_converted_or_rejected(tmp_path: Path) -> None:
    pydicom_files = Path(pydicom.__file__).parent / "data" / "test_files"
    result = sihnet(
        "convert",
        pydicom_files,
        "--out",
        tmp_path / "p",
        "--key-file",
        _key(tmp_path),
        cache=tmp_path / "c",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith("sihnet: error: no study was converted")
    )
    rows = read_tsv(tmp_path / "p" / "selection.tsv")
    assert rows and all(
        r["decision"] and (r["reason"] or r["decision"] != "rejected") for r in rows
    )
    assert len(read_tsv(tmp_path / "p" / "quarantine.tsv")) > 10
    # nibabel's Philips enhanced multi-frame MPRAGE: sagittal 3D T1, contrast not stated -> rejected
    # with a reason; with an override it converts, and its geometry check passes.
    philips = tmp_path / "philips"
    philips.mkdir()
    data = Path(nib.__file__).parent / "nicom" / "tests" / "data"
    (philips / "mprage.dcm").write_bytes(
        gzip.decompress((data / "philips_mprage.dcm.gz").read_bytes())
    )
    shutil.copy(data / "0.dcm", philips / "0.dcm")
    result = sihnet(
        "convert",
        philips,
        "--out",
        tmp_path / "n",
        "--key-file",
        _key(tmp_path),
        cache=tmp_path / "c",
    )
    assert result.returncode == 2 and "no study was converted" in result.stderr
    mprage = next(
        r for r in read_tsv(tmp_path / "n" / "selection.tsv") if r["series_number"] == "301"
    )
    assert (mprage["orientation"], mprage["acquisition"], mprage["slices"]) == (
        "sagittal",
        "3D",
        "176",
    )
    assert (mprage["weighting"], mprage["decision"]) == ("T1", "not post-contrast")
    uid = pydicom.dcmread(philips / "mprage.dcm", stop_before_pixels=True).StudyInstanceUID
    (tmp_path / "override.csv").write_text(f"study,series_number\n{uid},301\n")
    result = sihnet(
        "convert", philips, "--out", tmp_path / "n2", "--key-file", _key(tmp_path), "--override", tmp_path / "override.csv", cache=tmp_path / "c"
    )  # fmt: skip
    assert result.returncode == 3, result.stderr  # converted; 0.dcm's study was not
    assert "series 301 converted" in result.stderr
    assert nib.load(next((tmp_path / "n2").rglob("*_T1w.nii.gz"))).shape == (176, 256, 256)


def _key(folder: Path) -> Path:
    key = folder / "key.txt"
    key.write_text("another-secret-key")
    return key


def test_dicom_folder_in_a_manifest_is_cached_for_training(tmp_path: Path) -> None:
    from sihnet.config import load_config
    from sihnet.data.manifest import read_manifest
    from sihnet.preprocessing.cache import read_cached

    write_series(tmp_path / "p1" / "dicom", head_volume((40, 48, 44)))
    (tmp_path / "manifest.csv").write_text("patient_id,image,label\np1,p1/dicom,1\n")
    scan = read_manifest(tmp_path / "manifest.csv").scans[0]
    cache = VolumeCache(tmp_path / "cache")  # no SIHNET_CACHE_DIR: the cache's own root is used
    config = load_config("quick").preprocessing
    convert_dicom_inputs([scan.image], cache)  # what a command does at its edge
    entry = cache.get(scan.image, config)
    assert (
        read_cached(entry).image.shape == (1, *config.size)
        and float(read_cached(entry).image.max()) > 0
    )
    assert list((tmp_path / "cache" / "dicom").glob("*.nii.gz"))
    assert cache.get(scan.image, config) == entry and (cache.hits, cache.misses) == (1, 1)


def test_a_failed_conversion_falls_back_to_the_next_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sihnet.ingest.convert as convert
    from sihnet.errors import SihnetError
    from sihnet.ingest.discover import discover
    from sihnet.ingest.select import choose

    uid = pydicom.uid.generate_uid()  # one study
    volume = head_volume((24, 32, 32))
    write_series(tmp_path / "in" / "sag", volume, series_number=5, time="101000", study_uid=uid)
    write_series(
        tmp_path / "in" / "ax", volume, plane="axial", series_number=6, time="102000", study_uid=uid
    )
    study = discover(tmp_path / "in")[0]
    choice = choose(study)
    assert study[choice.chosen or 0].series_number == 5 and len(choice.alternatives) == 1
    real = convert.convert_series

    def failing_sagittal(series: object, scratch: object) -> object:
        if getattr(series, "series_number", None) == 5:
            raise SihnetError("dcm2niix made 2 volumes from one series (expected 1)")
        return real(series, scratch)  # type: ignore[arg-type]

    monkeypatch.setattr(convert, "convert_series", failing_sagittal)
    ended, image, _, errors = convert._convert_choice(study, choice, tmp_path)
    assert image is not None and study[ended.chosen or 0].series_number == 6
    assert errors == ["series 5: dcm2niix made 2 volumes from one series (expected 1)"]
    assert [d for _, d in ended.decisions] == ["conversion failed", "selected (next candidate)"]


def test_an_unreadable_file_is_quarantined_without_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sihnet.ingest.discover as discovery

    folder = tmp_path / f"{SENTINEL}_x"
    write_series(folder, head_volume((20, 32, 32)))
    (folder / "locked.dcm").write_bytes(b"x")

    def no_access(path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(discovery, "file_sha256", no_access)
    series, quarantined = discovery.discover(tmp_path)
    assert len(series) == 1
    assert [(q.sha256, q.reason) for q in quarantined] == [
        ("", "unreadable file (PermissionError)")
    ]


def test_a_scaled_int16_series_equals_a_direct_dcm2niix_call(tmp_path: Path) -> None:
    # Philips-style stored values with slope and intercept: nothing may be re-quantised.
    write_series(tmp_path / "in", head_volume((24, 40, 36), seed=7), rescale=(0.37, -12.5))
    result = sihnet(
        "convert", tmp_path / "in", "--out", tmp_path / "out", "--key-file", _key(tmp_path),
        cache=tmp_path / "c",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    subprocess.run(
        [dcm2niix_binary(), "-f", "direct", "-z", "n", "-o", str(tmp_path), str(tmp_path / "in")],
        check=True,
        capture_output=True,
    )
    direct = nib.load(tmp_path / "direct.nii")
    ours = nib.load(next((tmp_path / "out").rglob("*_T1w.nii.gz")))
    assert direct.dataobj.slope != 1 and direct.dataobj.inter != 0  # the case under test
    assert ours.get_data_dtype() == direct.get_data_dtype()
    assert (ours.dataobj.slope, ours.dataobj.inter) == (direct.dataobj.slope, direct.dataobj.inter)
    np.testing.assert_array_equal(ours.get_fdata(), direct.get_fdata())


def test_studies_with_only_non_t1_series_after_a_marked_one_convert_nothing(
    tmp_path: Path,
) -> None:
    volume = head_volume((24, 32, 32))
    non_t1 = {
        "fieldmap": {"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"], "ScanningSequence": "GR",
                     "SequenceName": "*fm2d2r"},
        "bold": {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"], "ScanningSequence": "EP"},
        "dwi": {"ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"],
                "ScanningSequence": "EP", "DiffusionBValue": 1000.0},
    }  # fmt: skip
    for index, (name, extra) in enumerate(non_t1.items()):
        uid = pydicom.uid.generate_uid()
        phi = {"PatientID": f"P{index}"}
        write_series(
            tmp_path / "in" / name / "flair",
            volume,
            plane="axial",
            description="t2_flair_tra",
            series_number=2,
            study_uid=uid,
            time="101000",
            phi=phi,
        )  # contrast-marked (the factory sets ContrastBolusAgent), but a FLAIR
        write_series(
            tmp_path / "in" / name / "later", volume, plane="sagittal", description="SERIES 3",
            series_number=3, study_uid=uid, time="102000", contrast_agent=None, phi=phi,
            tr_te=(500.0, 7.38), extra=extra,
        )  # fmt: skip
    result = sihnet(
        "convert", tmp_path / "in", "--out", tmp_path / "out", "--key-file", _key(tmp_path),
        cache=tmp_path / "c",
    )  # fmt: skip
    assert result.returncode == 2 and "no study was converted" in result.stderr
    assert result.stderr.count("not converted: no post-contrast T1 series") == 3
    rows = [r for r in read_tsv(tmp_path / "out" / "selection.tsv") if r["series_number"] == "3"]
    assert sorted(r["weighting"] for r in rows) == ["DWI", "EPI", "field map"]
    assert all(r["decision"] == "not T1" and "not a T1" in r["reason"] for r in rows)
    assert not list((tmp_path / "out").rglob("*.nii.gz"))


def test_an_uncertain_pick_is_said_and_exits_3(tmp_path: Path) -> None:
    uid = pydicom.uid.generate_uid()
    write_series(
        tmp_path / "in" / "ax",
        head_volume((10, 32, 32)),
        plane="axial",
        description="T1 tra",
        series_number=2,
        study_uid=uid,
        time="101000",
    )  # marked by its header, but 10 slices: not an input
    write_series(
        tmp_path / "in" / "sag", head_volume((24, 32, 32)), description="t1_mprage_sag",
        series_number=3, study_uid=uid, time="102000", contrast_agent=None,
    )  # fmt: skip
    result = sihnet(
        "convert", tmp_path / "in", "--out", tmp_path / "out", "--key-file", _key(tmp_path),
        cache=tmp_path / "c",
    )  # fmt: skip
    assert result.returncode == 3 and "uncertain pick" in result.stderr
    assert "only by acquisition order" in result.stderr
    picked = next(
        r for r in read_tsv(tmp_path / "out" / "selection.tsv") if r["series_number"] == "3"
    )
    assert (picked["decision"], picked["contrast_evidence"]) == (
        "selected (uncertain)",
        "acquisition order",
    )


def test_a_label_that_is_not_a_label_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "in", head_volume((20, 32, 32)))
    (tmp_path / "labels.csv").write_text(f"patient_id,label\n{SENTINEL}ID001,yes\n")
    result = sihnet(
        "convert", tmp_path / "in", "--out", tmp_path / "out", "--key-file", _key(tmp_path),
        "--labels", tmp_path / "labels.csv", cache=tmp_path / "c",
    )  # fmt: skip
    assert result.returncode == 2
    assert "labels table labels.csv: row 2: unknown label 'yes'" in result.stderr


def test_a_killed_conversion_leaves_nothing_a_reader_or_the_next_run_keeps(tmp_path: Path) -> None:
    import subprocess as sp

    from sihnet.atomic import HOST

    write_series(tmp_path / "in", head_volume((20, 32, 32)))
    first = sihnet(
        "convert", tmp_path / "in", "--out", tmp_path / "out", "--key-file", _key(tmp_path),
        cache=tmp_path / "c",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    anat = next((tmp_path / "out").glob("sub-*/anat"))
    dead = sp.Popen(["true"])
    dead.wait()
    leftover = anat / f".{anat.parent.name}_ce-gadolinium_T1w.nii.gz.{HOST}-{dead.pid}.ab12.nii.gz"
    leftover.write_bytes(b"half a volume")  # what a kill during the write leaves
    from sihnet.data.manifest import read_manifest

    cohort = read_manifest(tmp_path / "out", require_labels=False)
    assert len(cohort.scans) == 1  # the BIDS reader ignores it
    again = sihnet(
        "convert", tmp_path / "in", "--out", tmp_path / "out", "--key-file", _key(tmp_path),
        cache=tmp_path / "c",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert not leftover.exists()
