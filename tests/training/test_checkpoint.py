"""Resume, safe resume state, atomic checkpoints (issue: reliability)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sihnet.errors import SihnetError
from sihnet.training.checkpoint import load_state, save_state
from tests.helpers import sihnet, start, write_config


def run(args: list[str | Path], cache: Path) -> subprocess.CompletedProcess[str]:
    return sihnet(*args, cache=cache)


def interrupt_after_first_epoch(
    args: list[str | Path], cache: Path, history: Path
) -> subprocess.CompletedProcess[str]:
    process = start(args, cache)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 2:
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def history_without_time(path: Path) -> list[list[str]]:
    return [line.split(",")[:-1] for line in path.read_text().splitlines()]


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", training={"epochs": 3})


@dataclasses.dataclass(frozen=True)
class Stopped:
    """A copy of the tiny cohort and a run of it stopped by SIGTERM after its first epoch."""

    manifest: Path
    run: Path
    config: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def stopped_once(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Stopped:
    """One interrupted training (a child process, SIGTERM) shared by the resume tests."""
    folder = tmp_path_factory.mktemp("stopped")
    shutil.copytree(tiny_cohort.parent, folder / "cohort")
    manifest, out = folder / "cohort" / tiny_cohort.name, folder / "run"
    config = write_config(folder / "c.yaml", training={"epochs": 3})
    args: list[str | Path] = ["train", manifest, "--out", out, "--config", config]
    result = interrupt_after_first_epoch(args, folder / "cache", out / "fold_0" / "history.csv")
    return Stopped(manifest, out, config, result)


@pytest.fixture()
def stopped(stopped_once: Stopped, tmp_path: Path) -> Stopped:
    """This test's own copy of the stopped run and its cohort."""
    shutil.copytree(stopped_once.manifest.parent, tmp_path / "cohort")
    shutil.copytree(stopped_once.run, tmp_path / "run")
    shutil.copy(stopped_once.config, tmp_path / "c.yaml")
    manifest = tmp_path / "cohort" / stopped_once.manifest.name
    return Stopped(manifest, tmp_path / "run", tmp_path / "c.yaml", stopped_once.result)


@pytest.mark.slow  # a process boundary (minutes): make test-slow, run by CI
def test_sigterm_then_resume_equals_a_straight_run(stopped: Stopped, tmp_path: Path) -> None:
    cache, config = tmp_path / "cache", stopped.config
    straight = run(["train", stopped.manifest, "--out", tmp_path / "a", "--config", config], cache)
    assert straight.returncode == 0, straight.stderr
    assert stopped.result.returncode == 128 + signal.SIGTERM, stopped.result.stderr
    assert "stopped by SIGTERM" in stopped.result.stderr and "--resume" in stopped.result.stderr
    assert "Traceback" not in stopped.result.stderr
    assert not (stopped.run / "fold_1" / "summary.json").exists()
    shutil.move(stopped.run, tmp_path / "b")
    args: list[str | Path] = [
        "train",
        stopped.manifest,
        "--out",
        tmp_path / "b",
        "--config",
        config,
    ]
    again = run([*args], cache)
    assert again.returncode == 2 and "continue it with --resume" in again.stderr
    resumed = run([*args, "--resume"], cache)
    assert resumed.returncode == 0, resumed.stderr
    for fold in (0, 1):
        a, b = tmp_path / "a" / f"fold_{fold}", tmp_path / "b" / f"fold_{fold}"
        assert history_without_time(a / "history.csv") == history_without_time(b / "history.csv")
        weights_a, weights_b = (
            load_file(str(a / "best.safetensors")),
            load_file(str(b / "best.safetensors")),
        )
        assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert (
        json.loads((tmp_path / "a" / "metrics.json").read_text())["auroc_pooled"]
        == json.loads((tmp_path / "b" / "metrics.json").read_text())["auroc_pooled"]
    )


def test_resume_refuses_changed_config_manifest_or_splits(stopped: Stopped, tmp_path: Path) -> None:
    cache, out, config, tiny_cohort = (
        tmp_path / "cache",
        stopped.run,
        stopped.config,
        stopped.manifest,
    )
    args: list[str | Path] = ["train", tiny_cohort, "--out", out, "--config", config]
    assert stopped.result.returncode == 128 + signal.SIGTERM, stopped.result.stderr
    changed_config = run([*args, "--resume", "--epochs", "5"], cache)
    assert changed_config.returncode == 2 and "training.epochs (3 -> 5)" in changed_config.stderr
    splits = json.loads((out / "splits.json").read_text())
    first, second = (
        (p for p in splits["assignment"] if splits["assignment"][p] == 0),
        (p for p in splits["assignment"] if splits["assignment"][p] == 1),
    )
    a, b = next(first), next(second)
    splits["assignment"][a], splits["assignment"][b] = 1, 0
    (out / "splits.json").write_text(json.dumps(splits))
    changed_splits = run([*args, "--resume"], cache)
    assert changed_splits.returncode == 2 and "the splits changed" in changed_splits.stderr
    edited = tmp_path / "edited.csv"
    edited.write_text(tiny_cohort.read_text().replace("synthetic", "site-b"))
    rows = edited.read_text().replace("images/", f"{tiny_cohort.parent}/images/")
    edited.write_text(rows)
    changed_manifest = run(["train", edited, "--out", out, "--config", config, "--resume"], cache)
    assert changed_manifest.returncode == 2 and "the manifest changed" in changed_manifest.stderr


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch SENTINEL_CREATED",))


@pytest.mark.slow  # through the CLI; test_pickled_file_is_refused_in_process runs in CI
def test_a_pickle_payload_in_the_resume_state_is_refused_and_not_run(
    tiny_cohort: Path, tmp_path: Path, config: Path
) -> None:
    cache, out = tmp_path / "cache", tmp_path / "run"
    args: list[str | Path] = ["train", tiny_cohort, "--out", out, "--config", config]
    assert (
        interrupt_after_first_epoch(args, cache, out / "fold_0" / "history.csv").returncode
        == 128 + signal.SIGTERM
    )
    torch.save({"epoch": 0, "model": Payload()}, out / "fold_0" / "last.pt")
    env_cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        torch.load(out / "fold_0" / "last.pt", weights_only=False)  # the payload is live:
        assert (tmp_path / "SENTINEL_CREATED").exists()  # unpickling it runs a command
        (tmp_path / "SENTINEL_CREATED").unlink()
        result = run([*args, "--resume"], cache)
    finally:
        os.chdir(env_cwd)
    assert result.returncode == 2 and "not a safe sihnet resume state" in result.stderr
    assert not (tmp_path / "SENTINEL_CREATED").exists() and not Path("SENTINEL_CREATED").exists()


def test_pickled_file_is_refused_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({"epoch": 0, "model": Payload()}, tmp_path / "last.pt")
    with pytest.raises(SihnetError, match="not a safe sihnet resume state"):
        load_state(tmp_path / "last.pt")
    assert not (tmp_path / "SENTINEL_CREATED").exists()  # the payload never ran


def test_a_failing_save_keeps_the_earlier_checkpoint_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_state(path, {"epoch": 1, "model": {"w": torch.ones(3)}})

    def broken_save(obj: object, target: Path) -> None:
        Path(target).write_bytes(b"PK\x03\x04 half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_state(path, {"epoch": 2, "model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    state = load_state(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_resume_refuses_an_image_replaced_since_the_start(stopped: Stopped, tmp_path: Path) -> None:
    manifest, cache, out, config = stopped.manifest, tmp_path / "cache", stopped.run, stopped.config
    args: list[str | Path] = ["train", manifest, "--out", out, "--config", config]
    assert stopped.result.returncode == 128 + signal.SIGTERM, stopped.result.stderr
    import nibabel as nib
    import numpy as np

    image = nib.load(tmp_path / "cohort" / "images" / "synth-001.nii.gz")
    changed = np.asarray(image.dataobj) * 1.01  # a re-exported scan: slightly other values
    nib.save(
        nib.Nifti1Image(changed, image.affine), tmp_path / "cohort" / "images" / "synth-001.nii.gz"
    )
    resumed = run([*args, "--resume"], cache)
    assert resumed.returncode == 2
    assert "the content of an image changed since it was started" in resumed.stderr


def test_a_comment_added_to_the_runs_config_does_not_stop_a_resume(
    stopped: Stopped, tmp_path: Path
) -> None:
    """Issue 31 row 11: "the configuration changed", naming no key, for a comment."""
    config_file = stopped.run / "config.yaml"
    config_file.write_text("# a note of the team\n" + config_file.read_text())
    args: list[str | Path] = [
        "train",
        stopped.manifest,
        "--out",
        stopped.run,
        "--config",
        stopped.config,
    ]
    resumed = run([*args, "--resume"], tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr
    assert (stopped.run / "fold_0" / "summary.json").is_file()
