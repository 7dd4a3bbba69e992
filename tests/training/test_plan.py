"""``sihnet train --plan``: measured costs and the run's duration, nothing trained."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import sihnet, write_config


def test_plan_measures_and_trains_nothing(tiny_cohort: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "tiny.yaml", training={"epochs": 10})
    result = sihnet(
        "train",
        tiny_cohort,
        "--out",
        tmp_path / "run",
        "--config",
        config,
        "--plan",
        cache=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "plan on cpu (fp32), 1 process(es), batch 4 per process, canvas 32×32×32"
    )
    assert "checkpointing off" in lines[1] and "checkpointing on" in lines[2]
    assert "peak memory" in lines[1] and "whole run 2 folds × 10 epochs" in lines[3]
    assert not (tmp_path / "run").exists()
