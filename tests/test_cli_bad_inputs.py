"""Every bad input is one line naming the file or row, a non-zero exit, and no traceback."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import brain_like, sihnet, train_tiny, write_nifti


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["patient_id", "image", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def good_rows(tiny_cohort: Path) -> list[dict[str, str]]:
    return [
        {
            "patient_id": r["patient_id"],
            "image": str(tiny_cohort.parent / r["image"]),
            "label": r["label"],
        }
        for r in csv.DictReader(tiny_cohort.open())
    ]


def save(image: nib.Nifti1Image, path: Path) -> None:
    nib.save(image, str(path))


BAD_IMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "nan": (
        lambda p: save(
            nib.Nifti1Image(
                np.where(brain_like() > 100, np.nan, 1.0).astype(np.float32), np.eye(4)
            ),
            p,
        ),
        "contains NaN or infinite voxels",
    ),
    "inf": (
        lambda p: save(
            nib.Nifti1Image(
                np.where(brain_like() > 100, np.inf, 1.0).astype(np.float32), np.eye(4)
            ),
            p,
        ),
        "contains NaN or infinite voxels",
    ),
    "constant": (
        lambda p: save(nib.Nifti1Image(np.full((20, 20, 20), 7.0, dtype=np.float32), np.eye(4)), p),
        "constant image",
    ),
    "2d": (
        lambda p: save(nib.Nifti1Image(brain_like()[:, :, 0], np.eye(4)), p),
        "image of shape (24, 28);",
    ),
    "4d": (
        lambda p: save(nib.Nifti1Image(np.stack([brain_like()] * 3, -1), np.eye(4)), p),
        "4D image (3 volumes)",
    ),
    "spacing": (
        lambda p: save(nib.Nifti1Image(brain_like(), np.diag([0.001, 1.0, 1.0, 1.0])), p),
        "voxel spacing",
    ),
    "unreadable": (lambda p: p.write_bytes(b"\x1f\x8b\x08 this is no NIfTI"), "cannot read NIfTI"),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_bad_image_names_its_row_and_the_rest_is_cached(
    tiny_cohort: Path, tmp_path: Path, case: str
) -> None:
    make, message = BAD_IMAGES[case]
    bad = tmp_path / f"bad_{case}.nii.gz"
    make(bad)
    rows = good_rows(tiny_cohort)
    rows.append({"patient_id": "BAD", "image": str(bad), "label": "1"})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    result = train_tiny(manifest, tmp_path)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert f"row {len(rows) + 1}: bad_{case}.nii.gz: {message}" in line, result.stderr
    assert "Traceback" not in result.stderr
    assert len(list((tmp_path / "cache" / "volumes").rglob("*.safetensors"))) == len(rows) - 1


def test_a_path_outside_the_manifest_folder_is_allowed_but_reported(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    rows = good_rows(tiny_cohort)
    for index, row in enumerate(rows):
        name = Path(row["image"]).name
        folder, text = (
            ("outside", f"../outside/{name}") if index == 1 else ("data/images", f"images/{name}")
        )
        (tmp_path / folder / name).write_bytes(Path(row["image"]).read_bytes())
        row["image"] = text
    manifest = write_manifest(tmp_path / "data" / "m.csv", rows)
    result = train_tiny(manifest, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 image(s) lie outside the manifest's folder tree (row 3)" in result.stderr
    assert result.stderr.count("outside the manifest's folder tree") == 1


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([], [], "has no rows"),
        (
            [{"patient_id": f"P{i}", "image": "IMG", "label": "1"} for i in range(6)],
            [],
            "one class only",
        ),
        (
            [{"patient_id": f"P{i}", "image": "IMG", "label": str(i % 2)} for i in range(3)],
            ["--folds", "5"],
            "3 patients are fewer than 5 folds",
        ),
        (
            [{"patient_id": "P0", "image": "IMG", "label": "indeterminate"}],
            [],
            "no patients left after exclusions",
        ),
    ],
)
def test_cohort_level_problems(
    tiny_cohort: Path, tmp_path: Path, rows: list[dict[str, str]], extra: list[str], message: str
) -> None:
    image = good_rows(tiny_cohort)[0]["image"]
    rows = [{**r, "image": image if r["image"] == "IMG" else r["image"]} for r in rows]
    # One distinct image per patient (the same content under two IDs is refused on its own).
    for index, row in enumerate(rows):
        row["image"] = str(write_nifti(tmp_path / f"img{index}.nii.gz", brain_like(seed=index)))
    result = sihnet(
        "train",
        write_manifest(tmp_path / "m.csv", rows),
        "--out",
        tmp_path / "run",
        "--profile",
        "quick",
        *extra,
        cache=tmp_path / "cache",
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("sihnet: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (OSError(13, "Permission denied", "/data/DOE^JOHN/IM0001"), 2, "IM0001: permission denied"),
        (OSError(28, "No space left on device", "/data/DOE^JOHN/x"), 2, "the disk is full"),
        (RuntimeError("failed on /data/DOE^JOHN/IM0001"), 1, "internal error: RuntimeError"),
    ],
)
def test_an_unexpected_error_is_one_line_without_paths(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    code: int,
    message: str,
) -> None:
    import sihnet.cli as cli

    def broken(**options: object) -> None:
        raise error

    monkeypatch.setattr(cli, "app", broken)
    returned = cli.main([])
    text = capsys.readouterr().err
    assert returned == code and len(text.strip().splitlines()) == 1
    assert message in text and "DOE" not in text
