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


def test_two_processes_of_batch_two_train_what_one_process_of_batch_four_trains(
    tmp_path: Path,
) -> None:
    one = torchrun(1, "-m", "sihnet.training.ddp_check", tmp_path / "one.json")
    two = torchrun(2, "-m", "sihnet.training.ddp_check", tmp_path / "two.json")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    single, double = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert double["losses"] == pytest.approx(single["losses"], rel=1e-8, abs=0)
    assert double["checksums"][0] == double["checksums"][1]  # identical parameters on both ranks
    assert double["checksums"][0] == pytest.approx(single["checksums"][0], rel=1e-10)


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
    from sihnet.training.fold import FoldState

    config = load_config(
        "quick", overrides={"preprocessing": {"spacing_mm": 8.0, "size": [32, 32, 32]}}
    )
    state = FoldState.start(config, 0, Inference(torch.device("cpu"), "fp32"))
    saved = {**state.checkpoint({}), "world_size": 2}
    with pytest.raises(SihnetError, match=r"trained by 2 process.*torchrun --nproc_per_node 2"):
        state.restore(saved, fold=0)


def _activation_memory_mb(checkpointing: bool) -> tuple[float, list[float]]:
    """Peak tensor memory of a forward and backward pass at 64³, batch 2, and a sample of the
    gradients."""
    from sihnet.models.densenet import build_model
    from sihnet.training.plan import peak_tensor_bytes

    torch.manual_seed(0)
    model = build_model(checkpointing)
    x = torch.rand(2, 1, 64, 64, 64, generator=torch.Generator().manual_seed(1))
    used = peak_tensor_bytes(lambda: model(x)[:, 1].sum().backward(), model)
    grads = [float(p.grad.double().sum()) for p in list(model.parameters())[::40]]
    return used / 2**20, grads


def test_activation_checkpointing_keeps_gradients_and_lowers_peak_memory() -> None:
    plain_memory, plain = _activation_memory_mb(False)
    saved_memory, saved = _activation_memory_mb(True)
    assert saved == pytest.approx(plain, rel=1e-4, abs=1e-6)  # the same gradients
    assert saved_memory < 0.75 * plain_memory, (plain_memory, saved_memory)
