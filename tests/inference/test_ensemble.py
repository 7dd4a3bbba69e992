"""A run's fold models: partial runs said or refused, tampered and relabelled weights refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sihnet.config import InferenceConfig
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256
from sihnet.inference.ensemble import FoldEnsemble, available_folds
from sihnet.paths import RunPaths
from sihnet.schemas import FoldSummary
from tests.helpers import copy_run as copy_run_folder


def copy_run(tiny_run: Path, tmp_path: Path) -> RunPaths:
    copy_run_folder(tiny_run, tmp_path / "run")
    return RunPaths(tmp_path / "run")


def test_a_missing_fold_is_said_or_refused(
    tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = copy_run(tiny_run, tmp_path)
    paths.fold_summary(1).unlink()
    with caplog.at_level(logging.WARNING):
        assert available_folds(paths, 2) == [0]
    assert "fold(s) [1] of 2 not finished" in caplog.text
    with pytest.raises(SihnetError, match="all folds are required"):
        available_folds(paths, 2, require_all=True)
    with pytest.raises(SihnetError, match="finished folds \\[0\\], not 1"):
        available_folds(paths, 2, fold=1)
    paths.fold_summary(0).unlink()
    with pytest.raises(SihnetError, match="no finished fold"):
        available_folds(paths, 2)


def test_weights_relabelled_as_integers_are_refused(tiny_run: Path, tmp_path: Path) -> None:
    paths = copy_run(tiny_run, tmp_path)
    weights = paths.best_weights(0)
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.dtype == torch.float32)
    state[name] = state[name].view(torch.int32)  # same bytes, another dtype
    save_file(state, str(weights))
    summary = FoldSummary.read(paths.fold_summary(0)).as_json()
    summary["weights_sha256"] = file_sha256(weights)  # the attacker also fixed the hash
    paths.fold_summary(0).write_text(__import__("json").dumps(summary))
    with pytest.raises(SihnetError, match="non-float tensors"):
        FoldEnsemble.load(paths.root, fold=0)


def test_a_model_giving_non_finite_output_is_refused(tiny_run: Path) -> None:
    ensemble = FoldEnsemble.load(tiny_run, settings=InferenceConfig(device="cpu"))
    with torch.no_grad():
        next(ensemble.models[0].parameters()).fill_(float("nan"))
    with pytest.raises(SihnetError, match="non-finite output"):
        ensemble.probabilities(torch.rand(1, 32, 32, 32))
