"""``sihnet demo``'s path end to end (synthesis, training, evaluation, occlusion map, report), on
the tiny configuration instead of the quick profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sihnet.demo as demo
from sihnet.config import OcclusionConfig, load_config
from sihnet.preprocessing.cache import VolumeCache
from tests.helpers import TINY_CONFIG


def test_the_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        demo, "load_config", lambda profile: load_config(profile, overrides=TINY_CONFIG)
    )
    coarse = OcclusionConfig(patch_1mm=(32, 32, 32))
    result = demo.run_demo(
        tmp_path / "demo", "quick", 12, 8.0, 3, VolumeCache(tmp_path / "c"), coarse
    )
    run = tmp_path / "demo" / "run"
    assert result.paths.root == run and result.metrics.n_patients == 12
    assert (run / "occlusion" / "occlusion.nii.gz").is_file() and result.occlusion.folds
    assert result.report == run / "report.html" and "Occlusion maps" in result.report.read_text()
    assert "(fistula) with fold" in result.occlusion_line
    stages = json.loads((tmp_path / "demo" / "stage_seconds.json").read_text())
    assert list(stages) == list(demo.DEMO_SHARES) and all(s >= 0 for s in stages.values())
    assert stages["training"] > 0
