"""Every command over the bad inputs a careless or hostile user gives: exit 2, one line on stderr
naming the row or file, no traceback, and the good inputs next to the bad one still processed."""

from __future__ import annotations

import gzip
import json
import os
import resource
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import brain_like, copy_run, one_line_error, sihnet, write_config, write_nifti

Case = Callable[[Path, Path, Path], list[str | Path]]  # (tmp, run, cohort) -> arguments


def _config(tmp: Path, **changes: dict[str, object]) -> Path:
    return write_config(tmp / "c.yaml", **changes)  # type: ignore[arg-type]


def _bomb(tmp: Path) -> Path:
    """A 2 kB .nii.gz whose header claims 2000^3 voxels."""
    header = bytearray(write_nifti(tmp / "h.nii", brain_like()).read_bytes()[:352])
    header[40:48] = struct.pack("<4h", 3, 2000, 2000, 2000)
    (tmp / "bomb.nii.gz").write_bytes(gzip.compress(bytes(header) + b"\0" * 1600))
    return tmp / "bomb.nii.gz"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.nii.gz")
    return tmp / "pipe.nii.gz"


def _damaged(run: Path, tmp: Path, name: str, text: str) -> Path:
    copy = tmp / "damaged_run"
    copy_run(run, copy)
    (copy / name).write_text(text)
    return copy


TRAIN: dict[str, tuple[Callable[[Path], Path], str]] = {
    "lr nan": (lambda t: _config(t, training={"learning_rate": float("nan")}), "learning_rate must be a positive"),
    "lr negative": (lambda t: _config(t, training={"learning_rate": -1.0}), "learning_rate must be a positive"),
    "percentile": (lambda t: _config(t, preprocessing={"upper_percentile": 101.0}), "upper_percentile must be in (0, 100]"),
    "device tpu": (lambda t: _config(t, training={"device": "tpu"}), "training.device must be"),
    "threads": (lambda t: _config(t, training={"threads": -2}), "threads, loader_workers and seed must be non-negative"),
    "size": (lambda t: _config(t, preprocessing={"size": [5000, 64, 64]}), "exceeds 1024 voxels"),
    "binary yaml": (lambda t: (t / "c.yaml").write_bytes(b"\x00\xff\xfe") and t / "c.yaml", "is not a text file"),
    "yaml syntax": (lambda t: (t / "c.yaml").write_text("training: [epochs: 3") and t / "c.yaml", "is not valid YAML (line"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TRAIN))
def test_train_configuration_mistakes(tiny_cohort: Path, tmp_path: Path, case: str) -> None:
    make, message = TRAIN[case]
    config = make(tmp_path)
    result = sihnet(
        "train", tiny_cohort, "--out", tmp_path / "r", "--config", config, cache=tmp_path
    )
    assert message in one_line_error(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train"], "Missing argument 'manifest'"),
        (
            ["train", "m.csv", "--out", "r", "--epochs", "many"],
            "'--epochs': Input should be a valid integer",
        ),
        (["predict"], "Missing argument"),
        (
            ["occlusion", "r", "i.nii.gz", "--out", "o", "--colour", "red"],
            "No such option: --colour",
        ),
        (["frobnicate"], "No such command"),
        (["train", "m.csv", "--out", "r", "--seed", "-4"], "seed must be non-negative"),
    ],
)
def test_usage_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "m.csv").write_text("patient_id,image,label\n")
    result = subprocess.run(
        [sys.executable, "-m", "sihnet.cli", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert message in one_line_error(result)


PREDICT: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda t: t / "gone.nii.gz", "gone.nii.gz: not found"),
    "fifo": (_fifo, "pipe.nii.gz: not a regular file or folder"),
    "memory bomb": (_bomb, "bomb.nii.gz: 8,000,000,000 voxels exceed the limit"),
    "not nifti": (lambda t: (t / "x.nii.gz").write_bytes(b"junk") and t / "x.nii.gz", "x.nii.gz: cannot read NIfTI"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PREDICT))
def test_predict_names_the_bad_image_and_scores_the_good_one(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path, case: str
) -> None:
    make, message = PREDICT[case]
    good = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    result = sihnet("predict", tiny_run, good, make(tmp_path), "--json", cache=tmp_path / "c")
    assert "1 of 2 images could not be scored" in one_line_error(result)
    records = json.loads(result.stdout)
    assert 0 <= records[0]["probability"] <= 1 and message in records[1]["error"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("fold_0/summary.json", "{not json", "fold_0/summary.json is missing or damaged"),
        ("fold_1/predictions.csv", "patient_id,label\nx,maybe\n", "fold_1/predictions.csv is missing or damaged"),
        ("cohort.json", "[1, 2", "cohort.json is damaged"),
        ("config.yaml", "training: {epochs: -3}", "training.epochs"),
    ],
)  # fmt: skip
def test_evaluate_names_a_damaged_run_file(
    tiny_run: Path, tmp_path: Path, name: str, text: str, message: str
) -> None:
    result = sihnet("evaluate", _damaged(tiny_run, tmp_path, name, text), cache=tmp_path)
    assert message in one_line_error(result)


def test_output_places_that_cannot_be_used(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    (tmp_path / "afile").write_text("x")
    occlusion = sihnet("occlusion", tiny_run, image, "--out", tmp_path / "afile", cache=tmp_path)
    assert "is a file" in one_line_error(occlusion)
    (tmp_path / "folder").mkdir()
    bern = sihnet("bern", tiny_cohort, "--out", tmp_path / "folder", cache=tmp_path)
    assert "--out folder is a folder" in one_line_error(bern)
    blocked = sihnet("bern", tiny_cohort, "--out", tmp_path / "afile" / "bern.csv", cache=tmp_path)
    assert "cannot write or read" in one_line_error(blocked)


def test_a_file_size_limit_is_one_line(tiny_cohort: Path, tmp_path: Path) -> None:
    def limit() -> None:  # ulimit -f: 64 kB
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "sihnet.cli", "synth", "--out", str(tmp_path / "s"), "--n", "4", "--spacing", "4"],
        capture_output=True, text=True, preexec_fn=limit,
    )  # fmt: skip
    assert "the file size limit (ulimit -f) was reached" in one_line_error(result)


def test_train_names_a_bad_row_and_keeps_the_good_images(tiny_cohort: Path, tmp_path: Path) -> None:
    import csv

    rows = list(csv.DictReader(tiny_cohort.open()))
    for row in rows:
        row["image"] = str(tiny_cohort.parent / row["image"])
    rows.append(dict(rows[0], patient_id="ROOT", image="/"))
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    rows.append(dict(rows[0], patient_id="BROKEN", image=str(broken)))
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = sihnet(
        "train",
        manifest,
        "--out",
        tmp_path / "r",
        "--config",
        _config(tmp_path),
        cache=tmp_path / "c",
    )
    assert "row 14: / is the file-system root, not a folder of one study" in one_line_error(result)
    assert "(+1 more, named above)" in result.stderr
    assert "row 15: broken.nii.gz" in result.stderr  # every bad row is named (issue 31 row 13)
    assert "row 15: broken.nii.gz" in (tmp_path / "r" / "train.log").read_text()
    assert len(list((tmp_path / "c" / "volumes").rglob("*.safetensors"))) == 12  # the good ones
