"""One typed experiment configuration: profiles, validation, YAML overrides, loading.

The sections (frozen dataclasses per concern, :mod:`sihnet.config_sections`, all importable from
here) have the paper's recipe as defaults (profile ``paper``); the ``quick`` profile is a set of
overrides. A run resolves profile -> ``--config`` YAML -> command-line overrides, then writes the
result to ``RUN/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sihnet.bern import FIELDS as BERN_FIELDS
from sihnet.config_schema import build, merge
from sihnet.config_sections import (
    SPACING_RANGE_MM,
    TARGETS,
    Align,
    AugmentationConfig,
    BernHeadsConfig,
    ChannelsLast,
    CrossValidationConfig,
    ExperimentConfig,
    InferenceConfig,
    MeasuredConfig,
    OcclusionConfig,
    Precision,
    PreprocessingConfig,
    Schedule,
    Selection,
    Splitter,
    Target,
    TrainingConfig,
    ViewConfig,
)
from sihnet.errors import SihnetError

__all__ = [
    "DEMO_PATIENTS",
    "MAX_SIZE_VOXELS",
    "PROFILES",
    "RESERVED_VIEW_NAMES",
    "SPACING_RANGE_MM",
    "TARGETS",
    "Align",
    "AugmentationConfig",
    "BernHeadsConfig",
    "ChannelsLast",
    "CrossValidationConfig",
    "ExperimentConfig",
    "InferenceConfig",
    "MeasuredConfig",
    "OcclusionConfig",
    "Precision",
    "PreprocessingConfig",
    "Schedule",
    "Selection",
    "Splitter",
    "Target",
    "TrainingConfig",
    "ViewConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "read_run_config",
    "read_yaml_mapping",
]

# Overrides of the paper recipe. ``quick``: the whole demo on a 2-core CPU (README "Demo results"), chosen
# so the synthetic cohort is still learnt (README "The recipe"): 4 mm (5 mm learnt worse), 8
# epochs (benchmarks/PROTOCOL.md's lever on d1-d3: 16 read no better; docs/benchmarks.md), bf16
# where it is faster and agrees, half the paper's learning rate (1e-3 did not settle in 16 epochs:
# pooled OOF AUROC 0.77 vs 0.82), and the last epoch (unbiased; an inner split would hold out 20% of
# few patients).
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        "preprocessing": {"spacing_mm": 4.0, "size": [48, 64, 64], "antialias": True},
        "training": {
            "epochs": 8,
            "restart_epochs": 8,
            "precision": "auto",
            "channels_last": "auto",
            "learning_rate": 5e-4,
            "selection": "last",
        },
        "augmentation": {"affine_prob": 0.3, "bias_field_prob": 0.0, "histogram_shift_prob": 0.0},
    },
}


# The demo's synthetic cohort: 60 patients (about half with a fistula) fit `make demo` in ten
# minutes on a 2-core CPU (docs/benchmarks.md "Demo results"); `--n 129` is the paper's cohort.
DEMO_PATIENTS = 60


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML/JSON."""

    def listify(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: listify(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [listify(v) for v in value]
        return value

    return listify(dataclasses.asdict(config))


MAX_SIZE_VOXELS = 1024  # per axis of the model input


def _validate(config: ExperimentConfig) -> None:
    prep, train, cv = config.preprocessing, config.training, config.cross_validation
    if not 0 < prep.upper_percentile <= 100:
        raise SihnetError(
            f"config: preprocessing.upper_percentile must be in (0, 100], got {prep.upper_percentile}"
        )
    if any(s > MAX_SIZE_VOXELS for s in prep.size):
        raise SihnetError(
            f"config: preprocessing.size {list(prep.size)} exceeds {MAX_SIZE_VOXELS} voxels per axis"
        )
    if not (math.isfinite(train.learning_rate) and train.learning_rate > 0):
        raise SihnetError(
            f"config: training.learning_rate must be a positive number, got {train.learning_rate}"
        )
    if not (math.isfinite(train.weight_decay) and train.weight_decay >= 0):
        raise SihnetError(
            f"config: training.weight_decay must be a non-negative number, got {train.weight_decay}"
        )
    if train.threads < 0 or train.loader_workers < 0 or not 0 <= config.seed < 2**31:
        raise SihnetError(
            "config: training.threads, loader_workers and seed must be non-negative (seed < 2^31)"
        )
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", train.device):
        raise SihnetError(
            f"config: training.device must be auto, cpu, cuda or cuda:N, got {train.device!r}"
        )
    augmentation = dataclasses.asdict(config.augmentation)
    for name, value in augmentation.items():
        if name.endswith("_prob") and not 0 <= value <= 1:
            raise SihnetError(f"config: augmentation.{name} must be in [0, 1], got {value}")
    low, high = SPACING_RANGE_MM
    if not low <= prep.spacing_mm <= high:
        raise SihnetError(
            f"config: preprocessing.spacing_mm {prep.spacing_mm} is outside {low}–{high} mm"
        )
    if any(s < 32 for s in prep.size):
        # DenseNet-121 halves the grid five times; below 32 voxels an axis vanishes.
        raise SihnetError(
            f"config: preprocessing.size {prep.size} must be at least 32 voxels per axis"
        )
    if train.epochs < 1 or train.batch_size < 1 or train.restart_epochs < 1:
        raise SihnetError("config: training.epochs, batch_size and restart_epochs must be >= 1")
    if not 0 < train.inner_validation_fraction < 0.5:
        raise SihnetError("config: training.inner_validation_fraction must be in (0, 0.5)")
    _validate_views(prep)
    if cv.folds < 2:
        raise SihnetError(f"config: cross_validation.folds must be >= 2, got {cv.folds}")
    if any(axis not in (0, 1, 2) for axis in config.augmentation.flip_axes):
        raise SihnetError("config: augmentation.flip_axes must name axes 0, 1 or 2")
    weight = config.bern_heads.weight
    if not (math.isfinite(weight) and weight >= 0):
        raise SihnetError(f"config: bern_heads.weight must be a non-negative number, got {weight}")
    penalty = config.measured.penalty_c
    if not (isinstance(penalty, (int, float)) and math.isfinite(penalty) and penalty > 0):
        raise SihnetError(f"config: measured.penalty_c must be a positive number, got {penalty}")


# The whole-head input is 'main' in the weights and 'image' in the ONNX graph and the bundle.
RESERVED_VIEW_NAMES = frozenset({"main", "image"})


def _validate_views(prep: PreprocessingConfig) -> None:
    if prep.views and prep.align != "mni152":
        raise SihnetError("config: preprocessing.views need preprocessing.align: mni152")
    names = [view.name for view in prep.views]
    if (
        len(set(names)) != len(names)
        or set(names) & RESERVED_VIEW_NAMES
        or not all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    ):
        raise SihnetError(
            "config: preprocessing.views need distinct lower-case names, none of "
            f"{sorted(RESERVED_VIEW_NAMES)} (the whole head's input names), got {names}"
        )
    low, high = SPACING_RANGE_MM
    for view in prep.views:
        if not low <= view.spacing_mm <= high or any(
            s < 32 or s > MAX_SIZE_VOXELS for s in view.size
        ):
            raise SihnetError(
                f"config: view {view.name}: spacing_mm must be in {low}–{high} and size 32–{MAX_SIZE_VOXELS} voxels per axis"
            )
        unknown = [item for item in view.bern_items if item not in BERN_FIELDS]
        if unknown:
            raise SihnetError(f"config: view {view.name}: unknown Bern item {unknown[0]!r}")
    claimed = [item for view in prep.views for item in view.bern_items]
    if len(set(claimed)) != len(claimed):
        raise SihnetError("config: a Bern item is read by two views")


def load_config(
    profile: str = "paper",
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Resolve a configuration: profile, then a YAML file, then explicit overrides.

    Args:
        profile: a name in ``PROFILES``.
        config_file: YAML with any subset of the nested keys; unknown keys are an error.
        overrides: nested dict applied last (the command line's ``--epochs`` etc.).

    Returns:
        The frozen, validated configuration.
    """
    if profile not in PROFILES:
        raise SihnetError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    values: dict[str, Any] = merge({"profile": profile}, PROFILES[profile])
    if config_file is not None:
        loaded = read_yaml_mapping(Path(config_file), "config file")
        if "profile" in loaded and loaded["profile"] != profile:
            if loaded["profile"] not in PROFILES:
                raise SihnetError(
                    f"config file {config_file}: unknown profile {loaded['profile']!r}"
                )
            values = merge({"profile": loaded["profile"]}, PROFILES[loaded["profile"]])
        values = merge(values, loaded)
    values = merge(values, overrides or {})
    config: ExperimentConfig = build(ExperimentConfig, values, "")
    _validate(config)
    return config


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping, or one line saying why it cannot be read."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise SihnetError(f"cannot read {what} {Path(path).name}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SihnetError(f"{what} {Path(path).name} is not a text file") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise SihnetError(f"{what} {Path(path).name} is not valid YAML{line}") from None
    if not isinstance(loaded, Mapping):
        raise SihnetError(f"{what} {Path(path).name} must hold a mapping of keys")
    return dict(loaded)


def read_run_config(path: Path) -> ExperimentConfig:
    """The resolved configuration a run folder holds (``RUN/config.yaml``)."""
    return config_from_dict(read_yaml_mapping(Path(path), "run configuration"))


def config_from_dict(values: Mapping[str, Any]) -> ExperimentConfig:
    """Rebuild a configuration written by :func:`config_to_dict` (e.g. ``RUN/config.yaml``)."""
    config: ExperimentConfig = build(ExperimentConfig, values, "")
    _validate(config)
    return config
