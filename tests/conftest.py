"""Shared fixtures: a tiny synthetic cohort (8 mm) and a tiny trained run, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic patients (6 with fistula) at 8 mm; returns the manifest path."""
    from sihnet.synth.cohort import run_synth

    return run_synth(tmp_path_factory.mktemp("cohort"), n=12, seed=3, spacing_mm=8.0, workers=1)


@pytest.fixture(scope="session")
def tiny_run(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny cohort trained in process: two folds, one epoch, 32^3 at 8 mm, fp32; evaluated."""
    from sihnet.config import load_config
    from sihnet.data.manifest import read_manifest
    from sihnet.evaluation.run import run_evaluation
    from sihnet.paths import RunPaths
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.training.run import run_training
    from tests.helpers import TINY_CONFIG

    root = tmp_path_factory.mktemp("tiny_run")
    paths = RunPaths(root / "run")
    config = load_config("quick", overrides=TINY_CONFIG)
    run_training(config, read_manifest(tiny_cohort), paths, VolumeCache(root / "cache"))
    run_evaluation(paths)
    return paths.root


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private preprocessed-volume cache for the test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SIHNET_CACHE_DIR", str(folder))
    return folder
