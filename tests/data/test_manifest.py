import os
from pathlib import Path

import numpy as np
import pytest

from sihnet.data.manifest import read_manifest
from sihnet.errors import SihnetError
from tests.helpers import write_nifti

HEADER = "patient_id,image,label\n"


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    for name in ("a", "b", "c", "d"):
        write_nifti(tmp_path / "img" / f"{name}.nii.gz", np.ones((4, 4, 4), dtype=np.float32))
    (tmp_path / "img" / "notes.txt").write_text("x")
    os.mkfifo(tmp_path / "img" / "fifo.nii.gz")  # would block a reader for ever
    return tmp_path


def manifest(folder: Path, body: str, header: str = HEADER, name: str = "m.csv") -> Path:
    path = folder / name
    path.write_text(header + body)
    return path


def test_reads_rows_relative_to_the_manifest(images: Path) -> None:
    cohort = read_manifest(manifest(images, "P1,img/a.nii.gz,1\nP2,img/b.nii.gz,0\n"))
    assert [s.patient_id for s in cohort.scans] == ["P1", "P2"]
    assert cohort.scans[0].image == (images / "img" / "a.nii.gz").resolve()
    assert cohort.patient_labels() == {"P1": 1, "P2": 0}


def test_several_scans_per_patient_are_kept_together(images: Path) -> None:
    cohort = read_manifest(
        manifest(images, "P1,img/a.nii.gz,1\nP1,img/b.nii.gz,1\nP2,img/c.nii.gz,0\n")
    )
    assert cohort.patient_ids == ["P1", "P2"]
    assert len(cohort.scans_of({"P1"})) == 2


def test_indeterminate_and_slec_are_excluded_and_counted(images: Path) -> None:
    body = "P1,img/a.nii.gz,1,0\nP2,img/b.nii.gz,indeterminate,\nP3,img/c.nii.gz,0,1\nP4,img/d.nii.gz,0,0\n"
    cohort = read_manifest(manifest(images, body, header="patient_id,image,label,slec\n"))
    assert cohort.patient_ids == ["P1", "P4"]
    assert (cohort.excluded_indeterminate, cohort.excluded_slec) == (1, 1)


def test_tsv_and_optional_columns(images: Path) -> None:
    header = "patient_id\timage\tlabel\tsite\tsuprasellar_cistern_mm\n"
    cohort = read_manifest(
        manifest(images, "P1\timg/a.nii.gz\t1\tA\t3.5\n", header=header, name="m.tsv")
    )
    assert cohort.scans[0].fields["site"] == "A"


def test_bids_root_is_read_as_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "participants.tsv").write_text("participant_id\tlabel\nsub-01\t1\nsub-02\t0\n")
    for subject in ("sub-01", "sub-02"):
        write_nifti(
            tmp_path / subject / "anat" / f"{subject}_ce-gadolinium_T1w.nii.gz", np.ones((4, 4, 4))
        )
        write_nifti(tmp_path / subject / "anat" / f"{subject}_T1w.nii.gz", np.ones((4, 4, 4)))
    cohort = read_manifest(tmp_path)
    assert cohort.patient_labels() == {"sub-01": 1, "sub-02": 0}
    assert all("_ce-" in s.image.name for s in cohort.scans)


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ("patient_id,label\n", "P1,1\n", "missing column.*image"),
        ("patient_id,image\n", "P1,img/a.nii.gz\n", "missing column.*label"),
        (HEADER, "P1,img/a.nii.gz,2\n", "row 2: unknown label '2'"),
        (HEADER, "P1,img/a.nii.gz,yes\n", "row 2: unknown label"),
        (HEADER, "P1,img/a.nii.gz,1\nP2,img/missing.nii.gz,0\n", "row 3: image not found"),
        (HEADER, "P1,img/a.nii.gz,1\nP1,img/a.nii.gz,1\n", "row 3: duplicate of row 2"),
        (HEADER, "P1,img/a.nii.gz,1\nP1,img/b.nii.gz,0\n", "row 3: patient has a different label"),
        (
            HEADER,
            "P1,img/a.nii.gz,1\nP2,img/a.nii.gz,0\n",
            "row 3: image also listed for another patient",
        ),
        (HEADER, "P1,img/notes.txt,1\n", "row 2: image must be"),
        (HEADER, ",img/a.nii.gz,1\n", "row 2: empty patient_id"),
        (HEADER, "P1,img/a.nii.gz,\n", "row 2: empty label"),
        (
            "patient_id,image,label,prepontine_cistern_mm\n",
            "P1,img/a.nii.gz,1,wide\n",
            "row 2: prepontine_cistern_mm must be a number",
        ),
        ("patient_id,image,label,slec\n", "P1,img/a.nii.gz,1,maybe\n", "row 2: slec must be"),
        (HEADER, "", "no rows"),
        (HEADER, "P1,img/a.nii.gz,indeterminate\n", "no patients left"),
        (HEADER, '"=HYPERLINK(""http://x"")",img/a.nii.gz,1\n', "must not start with '='"),
        (HEADER, '"P1\nP2",img/a.nii.gz,1\n', "line break or control character"),
        (
            "patient_id,image,label,suprasellar_cistern_mm\n",
            "P1,img/a.nii.gz,1,3_5\n",
            "suprasellar_cistern_mm must be a number, got '3_5'",
        ),
        ("patient_id,image,label,label\n", "P1,img/a.nii.gz,1,0\n", "column 'label' appears"),
        (HEADER, "P1,/dev/zero,1\n", "image is not a regular file or folder"),
        (HEADER, "P1,img/fifo.nii.gz,1\n", "image is not a regular file or folder"),
    ],
)
def test_every_problem_is_one_line_naming_the_row(
    images: Path, header: str, body: str, message: str
) -> None:
    with pytest.raises(SihnetError, match=message) as raised:
        read_manifest(manifest(images, body, header=header))
    assert "\n" not in str(raised.value)


def test_all_problems_are_counted(images: Path) -> None:
    with pytest.raises(SihnetError, match=r"\(\+1 more problems, named above\)"):
        read_manifest(manifest(images, "P1,img/a.nii.gz,7\nP2,img/zz.nii.gz,0\n"))


def test_unlabelled_rows_allowed_when_labels_not_required(images: Path) -> None:
    cohort = read_manifest(
        manifest(images, "P1,img/a.nii.gz\n", header="patient_id,image\n"), require_labels=False
    )
    assert cohort.scans[0].label is None


def test_hidden_files_of_a_bids_root_are_not_scans(tmp_path: Path) -> None:
    (tmp_path / "participants.tsv").write_text("participant_id\tlabel\nsub-01\t1\n")
    anat = tmp_path / "sub-01" / "anat"
    write_nifti(anat / "sub-01_ce-gadolinium_T1w.nii.gz", np.ones((4, 4, 4)))
    write_nifti(anat / ".sub-01_ce-gadolinium_T1w.nii.gz.host-9.x.nii.gz", np.ones((4, 4, 4)))
    assert [s.image.name for s in read_manifest(tmp_path).scans] == [
        "sub-01_ce-gadolinium_T1w.nii.gz"
    ]
