"""Shared fixtures: a tiny synthetic cohort (8 mm) and a tiny trained run, made once per pytest
session — also when pytest-xdist runs the tests in several worker processes (``pytest -n 2``): the
first worker builds them under a file lock in the session's shared temporary folder, the others
wait and reuse them. In-process registrations of the same scan are computed once per session."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest


def _shared(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(folder)`` once per session, whatever the number of xdist workers; returns its
    result (a path), recorded in ``folder/done.json``."""
    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(factory.mktemp(name))
    root = factory.getbasetemp().parent  # shared by the workers of this session
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        done = folder / "done.json"
        if done.is_file():
            return Path(json.loads(done.read_text())["path"])
        folder.mkdir(exist_ok=True)
        path = build(folder)
        done.write_text(json.dumps({"path": str(path)}))
        return path


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_worker() -> None:
    """Two xdist workers on two cores: one torch thread each (no oversubscription)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:
        import torch

        torch.set_num_threads(1)
        os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_registration_per_scan() -> Iterator[None]:
    """The MNI152 registration (about 1.4 s a scan) is a pure function of the voxels and the
    affine: tests that preprocess the same tiny-cohort scans into fresh caches share one result
    per content. Tests of the registration itself call ``registration.align_to_template``."""
    import hashlib

    from sihnet.preprocessing import cache as cache_module

    original = cache_module.align_to_template
    done: dict[str, object] = {}

    def memo(volume: np.ndarray, affine: np.ndarray, check_mirror: bool = True) -> object:
        key = hashlib.sha256(
            b"".join([np.ascontiguousarray(volume).tobytes(), np.asarray(affine).tobytes(),
                      str((volume.shape, volume.dtype, check_mirror)).encode()])
        ).hexdigest()  # fmt: skip
        if key not in done:
            done[key] = original(volume, affine, check_mirror)
        return done[key]

    cache_module.align_to_template = memo  # type: ignore[assignment]
    yield
    cache_module.align_to_template = original


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic patients (6 with fistula) at 8 mm; returns the manifest path."""

    def build(folder: Path) -> Path:
        from sihnet.synth.cohort import run_synth

        return run_synth(folder / "cohort", n=12, seed=3, spacing_mm=8.0, workers=1)

    return _shared(tmp_path_factory, "cohort", build)


@pytest.fixture(scope="session")
def tiny_run(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny cohort trained in process: two folds, one epoch, 32^3 at 8 mm, fp32; evaluated."""

    def build(root: Path) -> Path:
        from sihnet.config import load_config
        from sihnet.data.manifest import read_manifest
        from sihnet.evaluation.run_metrics import run_evaluation
        from sihnet.paths import RunPaths
        from sihnet.preprocessing.cache import VolumeCache
        from sihnet.training.cross_validation import run_training
        from tests.helpers import TINY_CONFIG

        paths = RunPaths(root / "run")
        config = load_config("quick", overrides=TINY_CONFIG)
        run_training(config, read_manifest(tiny_cohort), paths, VolumeCache(root / "cache"))
        run_evaluation(paths)
        return paths.root

    return _shared(tmp_path_factory, "tiny_run", build)


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private preprocessed-volume cache for the test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SIHNET_CACHE_DIR", str(folder))
    return folder
