"""The GPU benchmark runs as is; here on the CPU at a tiny size, as a user without a GPU would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_benchmark.py"


@pytest.mark.slow  # a benchmark: make test-slow
def test_the_gpu_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "32,32,32", "--steps", "1", "--batch", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    rows = results["rows"]
    switches = {(r["precision"], r["channels_last"], r["checkpointing"]) for r in rows}
    assert {("fp32", False, False), ("fp32", True, True)} <= switches and len(rows) >= 4
    assert sum(r["plain_monai"] for r in rows) == 1 and results["ceiling_tflops"] > 0
    assert all(r["seconds"] > 0 and r["tflops"] > 0 for r in rows)
    assert "| custom 32×32×32 b2 | fp32 |" in (tmp_path / "gpu.md").read_text()
