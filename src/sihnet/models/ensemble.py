"""The fold models of a finished run, loaded without pickle and checked against their SHA-256."""

from __future__ import annotations

import json

import torch
import yaml

from sihnet.config import ExperimentConfig, config_from_dict
from sihnet.errors import SihnetError
from sihnet.models.densenet import build_model
from sihnet.models.weights import load_weights
from sihnet.paths import RunPaths


def run_config(paths: RunPaths) -> ExperimentConfig:
    """The configuration a run was trained with (``RUN/config.yaml``)."""
    if not paths.config.is_file():
        raise SihnetError(f"{paths.root.name}: not a sihnet run folder (no config.yaml)")
    try:
        return config_from_dict(yaml.safe_load(paths.config.read_text()))
    except yaml.YAMLError:
        raise SihnetError(f"{paths.root.name}: config.yaml is not valid YAML") from None


def finished_folds(paths: RunPaths) -> list[int]:
    """Folds with a summary (training finished), in order."""
    folds = sorted(
        int(path.parent.name.removeprefix("fold_"))
        for path in paths.root.glob("fold_*/summary.json")
        if path.parent.name.removeprefix("fold_").isdigit()
    )
    if not folds:
        raise SihnetError(f"{paths.root.name}: no finished fold (train first)")
    return folds


def select_folds(paths: RunPaths, fold: str) -> list[int]:
    """``all`` (every finished fold) or one fold number given as text."""
    folds = finished_folds(paths)
    if fold == "all":
        return folds
    if not fold.isdigit() or int(fold) not in folds:
        raise SihnetError(f"--fold must be 'all' or one of {folds}, not {fold!r}")
    return [int(fold)]


def load_fold_model(paths: RunPaths, fold: int, device: torch.device) -> torch.nn.Module:
    """The selected model of ``fold`` in eval mode on ``device``.

    Raises:
        SihnetError: missing or tampered weights (SHA-256 differs from the fold summary).
    """
    try:
        summary = json.loads(paths.fold_summary(fold).read_text())
        expected = str(summary["weights_sha256"])
    except (OSError, ValueError, KeyError):
        raise SihnetError(f"fold {fold}: summary.json is missing or damaged") from None
    state = load_weights(paths.best_weights(fold), expected_sha256=expected)
    model = build_model()
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise SihnetError(
            f"fold {fold}: weights do not fit the DenseNet-121 of this version"
        ) from None
    return model.to(device).eval()
