"""The run folder under shared and careless use: parallel fold jobs, foreign folders, leaks."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import one_line_error, sihnet, start, train_tiny, write_config


@pytest.mark.slow  # a process boundary (minutes): make test-slow, run by CI
def test_two_fold_jobs_at_once_and_a_writer_held_mid_write(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys; from pathlib import Path; from sihnet.atomic import atomic_path\n"
            "with atomic_path(Path(sys.argv[1])) as temp:\n"
            "    temp.write_text('mine'); print('ready', flush=True); sys.stdin.readline()",
            str(run / "notes.txt"),
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    assert len([p for p in run.iterdir() if p.name.startswith(".notes.txt.")]) == 1
    config = write_config(tmp_path / "tiny.yaml")
    jobs = [
        start(["train", tiny_cohort, "--out", run, "--config", config, "--fold", str(k)], cache)
        for k in (0, 1)
    ]
    results = [job.communicate(timeout=600) for job in jobs]
    for job, (_, stderr) in zip(jobs, results, strict=True):
        assert job.returncode == 0, stderr
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=60) == 0
    assert (run / "notes.txt").read_text() == "mine"  # the live job's temporary file survived
    merged = sihnet("evaluate", run, cache=cache)
    assert merged.returncode == 0, merged.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds_evaluated"] == [0, 1] and metrics["folds_missing"] == []
    oof = list(csv.DictReader((run / "oof_predictions.csv").open()))
    assert len(oof) == len({r["patient_id"] for r in oof}) == 12  # one row per patient


def test_a_folder_that_is_not_a_run_is_never_taken_over(tiny_cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "run" / ".git").mkdir(parents=True)
    (tmp_path / "run" / "thesis.docx").write_text("chapter 1")
    (tmp_path / "run" / ".git" / ".index.x.tmp").write_text("git's own file")
    line = one_line_error(train_tiny(tiny_cohort, tmp_path))
    assert "not empty and not a sihnet run" in line
    assert (tmp_path / "run" / "thesis.docx").read_text() == "chapter 1"
    assert (tmp_path / "run" / ".git" / ".index.x.tmp").read_text() == "git's own file"
    (tmp_path / "file").write_text("x")
    result = sihnet("train", tiny_cohort, "--out", tmp_path / "file", cache=tmp_path / "c")
    assert "is a file" in one_line_error(result)


def _manifest_with_a_copy(tiny_cohort: Path, folder: Path, how: str = "bytes") -> Path:
    """The tiny cohort with its first scan again under another ID and label: the same bytes, or
    (issue 31 row 5) re-saved as .nii, or with only its header's description changed."""
    import nibabel as nib

    rows = list(csv.DictReader(tiny_cohort.open()))
    for row in rows:
        row["image"] = str(tiny_cohort.parent / row["image"])
    copy = dict(rows[0], patient_id="synth-copy", label=str(1 - int(rows[0]["label"])))
    folder.mkdir(parents=True, exist_ok=True)
    if how == "bytes":
        copy["image"] = str(folder / "copy.nii.gz")
        shutil.copy(rows[0]["image"], copy["image"])
    else:
        image = nib.load(rows[0]["image"])
        if how == "header":
            image.header["descrip"] = b"another description"
        copy["image"] = str(folder / ("copy.nii" if how == "nii" else "copy.nii.gz"))
        nib.save(image, copy["image"])
    manifest = folder / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*rows, copy])
    return manifest


def test_the_same_scan_under_two_ids_is_refused_or_grouped(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    manifest = _manifest_with_a_copy(tiny_cohort, tmp_path)
    line = one_line_error(train_tiny(manifest, tmp_path))
    assert "rows 2 and 14 hold identical images under two patient IDs" in line
    assert "'synth-001', 'synth-copy'" in line
    grouped = train_tiny(manifest, tmp_path / "g", cross_validation={"identical_images": "group"})
    assert grouped.returncode == 0, grouped.stderr
    splits = json.loads((tmp_path / "g" / "run" / "splits.json").read_text())["assignment"]
    assert splits["synth-001"] == splits["synth-copy"]
    for how in ("nii", "header"):  # the same scan by content, not by bytes
        manifest = _manifest_with_a_copy(tiny_cohort, tmp_path / how, how)
        line = one_line_error(train_tiny(manifest, tmp_path / how))
        assert "rows 2 and 14 hold identical images under two patient IDs" in line, how


def test_a_corrected_rerun_after_a_failure_starts_cleanly(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    rows = list(csv.DictReader(tiny_cohort.open()))
    for row in rows:
        row["image"] = str(tiny_cohort.parent / row["image"])
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a volume")
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*rows, dict(rows[0], patient_id="BAD", image=str(bad))])
    assert "cannot read NIfTI" in one_line_error(train_tiny(manifest, tmp_path))
    assert (tmp_path / "run" / "config.yaml").is_file()  # the failed run wrote its config
    fixed = train_tiny(tiny_cohort, tmp_path, training={"learning_rate": 0.0005})
    assert fixed.returncode == 0, fixed.stderr  # another manifest and setting: accepted
    assert "0.0005" in (tmp_path / "run" / "config.yaml").read_text()


def test_a_stop_while_preprocessing_trains_nothing_and_says_so(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    from sihnet.config import load_config
    from sihnet.data.manifest import read_manifest
    from sihnet.errors import TrainingInterrupted
    from sihnet.paths import RunPaths
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.training.checkpoint import graceful_interrupt
    from sihnet.training.cross_validation import run_training
    from tests.helpers import TINY_CONFIG

    paths = RunPaths(tmp_path / "run")
    with graceful_interrupt(), pytest.raises(TrainingInterrupted) as stop:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C before training starts
        run_training(load_config("quick", overrides=TINY_CONFIG), read_manifest(tiny_cohort),
                     paths, VolumeCache(tmp_path / "cache"))  # fmt: skip
    assert not stop.value.resumable and "nothing was trained" in stop.value.what
    assert not paths.fold_started(2)
