"""``sihnet train --plan``: measured costs and the run's duration, nothing trained; a grid or batch
that cannot fit is refused before anything is allocated."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import one_line_error, sihnet, write_config


def test_plan_measures_and_trains_nothing(
    tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sihnet.training import plan

    monkeypatch.setattr(plan, "TIMED", 1)  # the format is under test, not the figures
    config = write_config(tmp_path / "tiny.yaml", training={"epochs": 10})
    args = ["train", tiny_cohort, "--out", tmp_path / "run", "--config", config, "--plan"]
    result = sihnet(*args, cache=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "plan on cpu (fp32), 1 process(es), batch 4 per process, canvas 32×32×32"
    )
    assert "checkpointing off" in lines[1] and "checkpointing on" in lines[2]
    assert "peak memory" in lines[1] and "whole run 2 folds × 10 epochs" in lines[3]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"preprocessing": {"size": [1024, 1024, 1024]}}, "canvas 1024×1024×1024"),
        ({"preprocessing": {"size": [48, 64, 64]}, "training": {"batch_size": 1000}}, "batch 1000"),
    ],
)
def test_a_grid_or_batch_that_cannot_fit_is_refused_before_allocating(
    tiny_cohort: Path, tmp_path: Path, changes: dict, what: str
) -> None:
    config = write_config(tmp_path / "big.yaml", **changes)
    for plan in (["--plan"], []):
        args = ["train", tiny_cohort, "--out", tmp_path / "run", "--config", config, *plan]
        line = one_line_error(sihnet(*args, cache=tmp_path / "cache"))
        assert "GB is free" in line and what.split()[-1] in line
    assert not (tmp_path / "cache").exists()  # refused before any image was preprocessed


def test_a_1024_cubed_plan_exits_in_seconds_under_one_gigabyte(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "big.yaml", preprocessing={"size": [1024, 1024, 1024]})
    args = ["train", tiny_cohort, "--out", tmp_path / "run", "--config", config, "--plan"]
    code = (
        "import re, sys; from sihnet.cli import main; c = main(sys.argv[1:]); "
        "s = open('/proc/self/status').read(); "
        "print(re.search(r'VmHWM:\\s+(\\d+)', s).group(1), file=sys.stderr); sys.exit(c)"
    )  # VmHWM, not ru_maxrss: the latter keeps the forking pytest process's peak across exec
    import subprocess
    import sys
    import time

    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120,
        env={"SIHNET_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert time.perf_counter() - started < 60
    assert result.returncode == 2 and "GB is free" in result.stderr
    peak_kb = int(result.stderr.strip().splitlines()[-1])
    assert peak_kb < 2**20, peak_kb


def test_plan_and_the_gpu_benchmark_time_the_step_training_takes() -> None:
    """One training step: ``--plan``, the fold loop, DDP's check and the GPU benchmark call the
    same function (breaking it breaks them all)."""
    from sihnet.training import ddp_check, fold, plan, step

    assert plan.train_step is fold.train_step is ddp_check.train_step is step.train_step
    script = Path(__file__).parents[2] / "benchmarks" / "gpu_benchmark.py"
    assert "from sihnet.training.step import Batch, StepSettings, train_step" in script.read_text()


def test_plan_times_a_network_with_views() -> None:
    """Issue 31 row 8: ``--plan`` with views timed the validation scan with the whole head only
    (an internal zip() error)."""
    from sihnet.config import load_config
    from sihnet.training.plan import plan_run

    config = load_config(
        "quick",
        overrides={
            "preprocessing": {
                "align": "mni152", "spacing_mm": 8.0, "size": [32, 32, 32],
                "views": [{"name": "midline", "spacing_mm": 2.0, "size": [48, 40, 40]}],
            },
            "training": {"epochs": 1, "precision": "fp32", "batch_size": 2},
        },
    )  # fmt: skip
    plan = plan_run(config, n_patients=10)
    assert all(cost["scan_seconds"] > 0 for cost in plan["costs"] if cost["fits"])
