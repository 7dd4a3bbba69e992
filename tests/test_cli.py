"""End-to-end command-line runs on tiny volumes (CPU, seconds)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations
from sklearn.metrics import roc_auc_score

from tests.helpers import sihnet, write_config

METRIC_KEYS = {
    "auroc_folds",
    "auroc_mean",
    "auroc_std",
    "auroc_pooled",
    "auroc_pooled_ci95",
    "selection",
    "auroc_last_epoch_folds",
    "folds_missing",
}


def assert_run_folder(run: Path, folds: int) -> dict[str, object]:
    for name in ("config.yaml", "splits.json", "oof_predictions.csv", "metrics.json", "roc.png"):
        assert (run / name).is_file(), name
    for fold in range(folds):
        for name in ("best.safetensors", "last.pt", "history.csv", "predictions.csv"):
            assert (run / f"fold_{fold}" / name).is_file(), f"fold_{fold}/{name}"
        header = (run / f"fold_{fold}" / "history.csv").read_text().splitlines()[0]
        assert header == "epoch,loss,val_auroc,inner_auroc,lr,seconds"
    oof = list(csv.DictReader((run / "oof_predictions.csv").open()))
    assert list(oof[0]) == ["patient_id", "fold", "label", "probability"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= METRIC_KEYS
    labels = [int(r["label"]) for r in oof]
    assert metrics["auroc_pooled"] == pytest.approx(
        roc_auc_score(labels, [float(r["probability"]) for r in oof])
    )
    splits = json.loads((run / "splits.json").read_text())["assignment"]
    assert {r["patient_id"]: int(r["fold"]) for r in oof} == splits
    return metrics


def test_train_two_folds_one_epoch_then_evaluate(tiny_cohort: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "tiny.yaml", training={"selection": "inner"})
    run = tmp_path / "run"
    result = sihnet(
        "train",
        tiny_cohort,
        "--out",
        run,
        "--profile",
        "quick",
        "--config",
        config,
        cache=tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr
    assert str(run / "metrics.json") in result.stdout and str(run / "roc.png") in result.stdout
    metrics = assert_run_folder(run, folds=2)
    assert metrics["selection"] == "inner" and len(metrics["auroc_folds"]) == 2  # type: ignore[arg-type]
    bern = metrics["bern"]
    assert {"auroc_bern", "auroc_bern_ci95", "auroc_model", "delong_p", "n_patients"} <= set(bern)  # type: ignore[arg-type]
    assert bern["auroc_model"] == pytest.approx(metrics["auroc_pooled"])  # type: ignore[index]
    assert (run / "roc_vs_bern.png").is_file() and (run / "reliability.png").is_file()
    assert "vs Bern score on 12 patients" in result.stdout
    again = sihnet("evaluate", run, cache=tmp_path / "cache")
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "metrics.json").read_text())["auroc_pooled"] == metrics["auroc_pooled"]


@pytest.mark.slow  # the parallel fold jobs of tests/training/test_cross_validation.py cover it in CI
def test_one_fold_at_a_time_and_evaluate_merges_what_exists(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    assert (
        sihnet(
            "train",
            tiny_cohort,
            "--out",
            run,
            "--config",
            config,
            "--fold",
            "1",
            cache=tmp_path / "c",
        ).returncode
        == 0
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds_evaluated"] == [1] and not (run / "fold_0").exists()
    assert (
        sihnet(
            "train",
            tiny_cohort,
            "--out",
            run,
            "--config",
            config,
            "--fold",
            "0",
            cache=tmp_path / "c",
        ).returncode
        == 0
    )
    assert json.loads((run / "metrics.json").read_text())["folds_evaluated"] == [0, 1]


def test_quick_profile_on_mixed_orientations(tiny_cohort: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader(tiny_cohort.open()))
    for index, row in enumerate(rows):
        image = nib.as_closest_canonical(nib.load(str(tiny_cohort.parent / row["image"])))
        target = ("RAS", "LPS", "PIR")[index % 3]
        transform = orientations.ornt_transform(
            orientations.io_orientation(image.affine), orientations.axcodes2ornt(tuple(target))
        )
        data = orientations.apply_orientation(np.asarray(image.dataobj), transform)
        affine = image.affine @ orientations.inv_ornt_aff(transform, image.shape)
        row["image"] = f"{row['patient_id']}_{target}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), str(tmp_path / row["image"]))
        assert nib.aff2axcodes(affine) == tuple(target)
    with (tmp_path / "mixed.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run = tmp_path / "run"
    result = sihnet(
        "train",
        tmp_path / "mixed.csv",
        "--out",
        run,
        "--profile",
        "quick",
        "--epochs",
        "1",
        "--folds",
        "2",
        cache=tmp_path / "c",
    )
    assert result.returncode == 0, result.stderr
    assert_run_folder(run, folds=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "{missing}", "--out", "{tmp}/r"], "does not exist"),
        (["train", "{bad}", "--out", "{tmp}/r"], "missing column(s) image"),
        (["train", "{bad}", "--out", "{tmp}/r", "--profile", "fast"], "unknown profile"),
        (["evaluate", "{tmp}"], "not a sihnet run folder"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "bad.csv").write_text("patient_id,label\nP1,1\n")
    values = {
        "missing": str(tmp_path / "none.csv"),
        "bad": str(tmp_path / "bad.csv"),
        "tmp": str(tmp_path),
    }
    result = sihnet(*(a.format(**values) for a in args), cache=tmp_path / "c")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


COMMANDS = (
    "synth", "convert", "measure", "train", "evaluate", "predict", "occlusion", "bern", "report",
    "export", "demo",
)  # fmt: skip


def test_help_lists_the_commands(tmp_path: Path) -> None:
    import typer

    from sihnet.cli import app

    registered = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert registered == set(COMMANDS)
    result = sihnet("--help", cache=tmp_path)
    assert result.returncode == 0
    listed = {
        line.strip("│ ").split()[0] for line in result.stdout.splitlines() if line.strip("│ ")
    }
    assert set(COMMANDS) <= listed  # each command starts a line of the help


def test_no_help_text_loses_words_to_the_terminal_markup() -> None:
    """Issue 37 row 15: rich read '[default: ...]' as a markup tag and printed 'cache .'."""
    from typer.testing import CliRunner

    from sihnet.cli import app

    runner = CliRunner()
    for command in COMMANDS:
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert " ." not in text, (command, [line for line in text.splitlines() if " ." in line])
    measure = runner.invoke(app, ["measure", "--help"], env={"COLUMNS": "200"}).output
    assert "(default: $SIHNET_CACHE_DIR or ~/.cache/sihnet)" in measure


def test_bern_command_prints_scores_and_writes_the_table(tiny_cohort: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader(tiny_cohort.open()))
    rows[0]["suprasellar_cistern_mm"] = ""  # one partial score
    manifest = tmp_path / "cohort.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{**r, "image": str(tiny_cohort.parent / r["image"])} for r in rows])
    result = sihnet("bern", manifest, "--out", tmp_path / "bern.csv", cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert "Bern AUROC" in result.stdout and "on 11 patients" in result.stdout
    table = list(csv.DictReader((tmp_path / "bern.csv").open()))
    assert list(table[0])[:4] == ["patient_id", "bern_score", "bern_category", "bern_complete"]
    assert table[0]["bern_complete"] == "0" and table[0]["bern_score"] == ""
    assert all(r["bern_complete"] == "1" for r in table[1:])
