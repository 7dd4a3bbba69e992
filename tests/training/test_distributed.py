"""Several processes per fold (torchrun, gloo on the CPU): the same training as one process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import write_config

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def torchrun(
    processes: int, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*TORCHRUN, f"--nproc_per_node={processes}", *map(str, args)],
        capture_output=True, text=True, timeout=900, env=environment,
    )  # fmt: skip


@pytest.mark.slow  # a process boundary (minutes): make test-slow, run by CI
def test_two_processes_of_batch_two_train_what_one_process_of_batch_four_trains(
    tmp_path: Path,
) -> None:
    from sihnet.training.ddp_check import run_check

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process
    try:
        single = run_check()  # one process: this one
    finally:
        torch.set_num_threads(threads)
    two = torchrun(2, "-m", "sihnet.training.ddp_check", tmp_path / "two.json")
    assert single is not None and two.returncode == 0, two.stderr[-2000:]
    double = json.loads((tmp_path / "two.json").read_text())
    assert double["losses"] == pytest.approx(single["losses"], rel=1e-8, abs=0)
    assert double["checksums"][0] == double["checksums"][1]  # identical parameters on both ranks
    assert double["checksums"][0] == pytest.approx(single["checksums"][0], rel=1e-10)


@pytest.mark.slow  # a process boundary (minutes): make test-slow, run by CI
def test_torchrun_trains_a_tiny_cohort_and_only_rank_0_writes(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    result = torchrun(
        2, "-m", "sihnet", "train", tiny_cohort, "--out", run, "--config", config,
        env={"SIHNET_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]  # a write by rank 1 would have failed it
    oof = list(csv.DictReader((run / "oof_predictions.csv").open()))
    assert len(oof) == len({row["patient_id"] for row in oof}) == 12
    assert json.loads((run / "metrics.json").read_text())["folds_evaluated"] == [0, 1]
    assert (run / "train.log").read_text().count(" sihnet train ") == 1  # rank 0 logged alone
    state = torch.load(run / "fold_0" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # both ranks' random states


def test_a_fold_is_resumed_by_as_many_processes_as_trained_it() -> None:
    from sihnet.config import load_config
    from sihnet.errors import SihnetError
    from sihnet.inference import Inference
    from sihnet.training.state import FoldState

    config = load_config(
        "quick", overrides={"preprocessing": {"spacing_mm": 8.0, "size": [32, 32, 32]}}
    )
    state = FoldState.start(config, 0, Inference(torch.device("cpu"), "fp32"))
    saved = {**state.checkpoint({}), "world_size": 2}
    with pytest.raises(SihnetError, match=r"trained by 2 process.*torchrun --nproc_per_node 2"):
        state.restore(saved, fold=0)


def _gradients(checkpointing: bool, size: int) -> list[float]:
    """A sample of DenseNet-121's gradients of one forward and backward pass, batch 2."""
    from sihnet.models.densenet import build_model

    torch.manual_seed(0)
    model = build_model(checkpointing)
    x = torch.rand(2, 1, size, size, size, generator=torch.Generator().manual_seed(1))
    model(x)[:, 1].sum().backward()
    return [float(p.grad.double().sum()) for p in list(model.parameters())[::40]]


def test_activation_checkpointing_keeps_gradients_and_lowers_memory() -> None:
    from sihnet.models.densenet import build_model
    from sihnet.models.memory import saved_activation_bytes

    assert _gradients(True, 32) == pytest.approx(_gradients(False, 32), rel=1e-4, abs=1e-6)
    shape = (2, 1, 64, 64, 64)
    plain, _ = saved_activation_bytes(build_model, shape, torch.float32)
    kept, _ = saved_activation_bytes(lambda: build_model(True), shape, torch.float32)
    assert kept < 0.5 * plain, (plain, kept)  # what autograd keeps for the backward pass


@pytest.mark.slow  # 64^3 under MemTracker
def test_activation_checkpointing_lowers_the_peak_of_a_real_step() -> None:
    from sihnet.models.densenet import build_model
    from sihnet.training.plan import peak_tensor_bytes

    peaks = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model(checkpointing)
        x = torch.rand(2, 1, 64, 64, 64, generator=torch.Generator().manual_seed(1))
        peaks.append(peak_tensor_bytes(lambda m=model, x=x: m(x)[:, 1].sum().backward(), model))
    assert peaks[1] < 0.75 * peaks[0], peaks
