"""One typed experiment configuration: frozen dataclasses per concern, profiles, YAML overrides.

The dataclass defaults *are* the paper's recipe (profile ``paper``); the ``quick`` profile is a set
of overrides. A run resolves profile -> ``--config`` YAML -> command-line overrides, then writes the
result to ``RUN/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from sihnet.bern import FIELDS as BERN_FIELDS
from sihnet.config_schema import build, merge
from sihnet.errors import SihnetError

Selection = Literal["inner", "paper", "last"]
Schedule = Literal["cosine_restarts", "one_cycle"]
Splitter = Literal["stratified_group", "group"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
ChannelsLast = bool | Literal["auto"]
# What an occlusion map explains: the fistula logit or probability, or (models trained with the
# Bern heads) one Bern item of sihnet.bern.ITEMS: a sign's logit or a distance in mm.
Target = str
TARGETS: tuple[str, ...] = ("logit", "probability", *BERN_FIELDS)
SPACING_RANGE_MM = (0.05, 20.0)  # voxel sizes accepted for images and for the model input


Align = Literal["field_of_view", "mni152"]


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """A second input view: a box of the head cut at its own resolution (after MNI alignment).

    Attributes:
        name: the view's name (in the cache, the weights and the occlusion outputs).
        centre_mm: the box's centre in MNI152 template mm (x, y, z), mapped into the patient by
            the registration; the box keeps the patient's millimetres (no scaling).
        spacing_mm: isotropic voxel size of the view.
        size: the view's shape (X, Y, Z) in voxels, RAS axes aligned with the template's.
        bern_items: the Bern items (manifest columns) whose head reads this view's features; the
            other items are read from the whole-head view.
    """

    name: str = "midline"
    centre_mm: tuple[float, float, float] = (0.0, -5.0, -25.0)
    spacing_mm: float = 1.5
    size: tuple[int, int, int] = (48, 40, 40)  # depth 48: bf16 is wrong at 32 (training.probe)
    bern_items: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
    """Geometry and intensity of the model input.

    Attributes:
        spacing_mm: isotropic voxel size of the model input, in mm.
        size: model-input shape (X, Y, Z) in voxels, array axes in RAS order (x: left->right,
            y: posterior->anterior, z: inferior->superior). Zero-padded, centre-cropped if larger.
        upper_percentile: intensity percentile (of voxels above the image mean, i.e. the head)
            that is mapped to 1.0; 0 stays 0.
        antialias: Gaussian prefilter before downsampling (off in ``paper``: the paper resamples
            ~1 mm data to 1 mm with trilinear interpolation only).
        align: where the canvas sits: ``field_of_view`` (centred on the scan's field of view,
            axes along the scanner's: the paper) or ``mni152`` (registered to the MNI152
            template, :mod:`sihnet.preprocessing.registration`; centred on ``centre_mm`` of the
            template, axes along the template's, the patient's millimetres kept).
        centre_mm: the whole-head canvas's centre in template mm when aligned.
        views: further views of the aligned head (need ``align: mni152``), each with its own
            DenseNet-121 trunk.
    """

    spacing_mm: float = 1.0
    size: tuple[int, int, int] = (240, 260, 260)
    upper_percentile: float = 99.5
    antialias: bool = False
    align: Align = "field_of_view"
    centre_mm: tuple[float, float, float] = (0.0, -16.0, 5.0)
    views: tuple[ViewConfig, ...] = ()


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """The paper's six MONAI augmentations; each has a probability and a range.

    Ranges are in normalised intensity units (the head's upper percentile = 1.0), degrees, mm.
    """

    enabled: bool = True
    intensity_shift_prob: float = 0.5
    intensity_shift_offset: float = 0.1
    histogram_shift_prob: float = 0.3
    histogram_shift_control_points: tuple[int, int] = (5, 10)
    bias_field_prob: float = 0.3
    bias_field_coefficients: tuple[float, float] = (0.0, 0.3)
    flip_prob: float = 0.5
    flip_axes: tuple[int, ...] = (0,)
    affine_prob: float = 0.5
    affine_rotate_deg: float = 10.0
    affine_scale: float = 0.1
    affine_translate_mm: float = 8.0
    noise_prob: float = 0.2
    noise_std: float = 0.03


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, schedule, loss and checkpoint selection.

    Attributes:
        epochs: epochs per fold.
        schedule: ``cosine_restarts`` (the paper's ``CosineAnnealingWarmRestarts``) or
            ``one_cycle`` (PyTorch's ``OneCycleLR`` over the run's epochs, peaking at
            ``learning_rate``: fewer epochs used better, for the CPU demo).
        restart_epochs: period T_0 of ``CosineAnnealingWarmRestarts`` in epochs. The paper's
            "ran for 450 epochs, followed by a restart interval of 200 epochs" is read as 450
            epochs in total with warm restarts every 200 epochs (lr back to 1e-3 at 200 and 400).
        selection: ``inner`` (an inner stratified split of the training patients picks the
            epoch; unbiased), ``paper`` (best AUROC on the validation fold itself; optimistic),
            ``last`` (last epoch).
        inner_validation_fraction: share of training patients held out for ``inner`` selection.
        precision: ``fp32``, ``bf16`` autocast, ``fp16`` autocast with gradient scaling, or
            ``auto``: measured at the start of each fold (:mod:`sihnet.training.probe`: bf16, or
            fp16 on GPUs without bf16, where its gradient agrees with fp32's and a step is
            faster; else fp32). Each fold's models are applied afterwards (predict, evaluate,
            occlusion) in the precision the fold was validated in, unless overridden.
        class_weighting: cross-entropy weighted by inverse class ratios of the training fold.
        device: ``auto`` (CUDA if present), ``cpu`` or ``cuda[:N]``; also where the run's models
            are applied afterwards, unless overridden.
        threads: CPU threads for torch; 0 = all cores.
        deterministic: deterministic GPU kernels (slower); CPU training is deterministic anyway.
        activation_checkpointing: recompute the dense layers' activations in the backward pass
            (less memory, more compute): batch 4 at the paper's size on a 24 GB GPU.
        channels_last: ``channels_last_3d`` memory format: true, false, or ``auto`` (measured by
            the same probe: 1.44x faster for fp32 on an AVX-512 CPU, 12% slower on an AVX2 one).
        loader_workers: DataLoader worker processes (0: the volumes are served from memory or
            read in the training process); pinned memory is used on GPUs.
    """

    epochs: int = 450
    batch_size: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    restart_epochs: int = 200
    schedule: Schedule = "cosine_restarts"
    selection: Selection = "inner"
    inner_validation_fraction: float = 0.2
    precision: Precision = "fp32"
    class_weighting: bool = True
    device: str = "auto"
    threads: int = 0
    deterministic: bool = False
    activation_checkpointing: bool = False
    channels_last: ChannelsLast = False
    loader_workers: int = 0


IdenticalImages = Literal["refuse", "group"]


@dataclasses.dataclass(frozen=True)
class CrossValidationConfig:
    """Patient-level K-fold; ``group`` is the paper's literal ``GroupKFold``.

    Attributes:
        identical_images: the same image content under two patient IDs would leak across the
            split: ``refuse`` (default; one line naming both rows) or ``group`` (those patients
            always share a fold).
    """

    folds: int = 5
    splitter: Splitter = "stratified_group"
    identical_images: IdenticalImages = "refuse"


@dataclasses.dataclass(frozen=True)
class BernHeadsConfig:
    """Auxiliary Bern heads (:mod:`sihnet.models.bern_heads`); off in every profile.

    Attributes:
        enabled: train the six Bern components beside the fistula (needs the manifest's Bern
            columns; without any value in a training fold the heads are left off, said in the log).
        weight: the auxiliary loss's weight beside the paper's weighted cross-entropy.
    """

    enabled: bool = False
    weight: float = 0.5


Fusion = Literal["mean_logit", "measured_only"]


@dataclasses.dataclass(frozen=True)
class MeasuredConfig:
    """The model of the measured Bern quantities (:mod:`sihnet.models.measured`); off in ``paper``.

    Attributes:
        enabled: read every scan with the automatic Bern reader (``sihnet.reader``) and fit, on
            each fold's training patients only, a logistic regression on its measures.
        penalty_c: inverse L2 strength of the logistic regression (scikit-learn's ``C``).
        fusion: the run's probability: ``mean_logit`` (the mean of the network's and the
            measured model's logits; nothing fitted) or ``measured_only`` (the network trained
            and kept for maps, its probability reported beside).
    """

    enabled: bool = False
    penalty_c: float = 0.3
    fusion: Fusion = "mean_logit"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything needed to reproduce a run; written resolved to ``RUN/config.yaml``."""

    profile: str = "paper"
    seed: int = 0
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    training: TrainingConfig = TrainingConfig()
    cross_validation: CrossValidationConfig = CrossValidationConfig()
    bern_heads: BernHeadsConfig = BernHeadsConfig()
    measured: MeasuredConfig = MeasuredConfig()

    def fold_seed(self, fold: int) -> int:
        """Seed of fold ``fold``'s initialisation, augmentation, loader and inner split."""
        return self.seed * 1000 + fold


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """How a trained run's models are applied (``predict``, ``evaluate --manifest``,
    ``occlusion``); ``None`` takes the run's ``training.device`` / ``training.precision``."""

    device: str | None = None
    precision: Precision | None = None


@dataclasses.dataclass(frozen=True)
class OcclusionConfig:
    """An occlusion sweep (the paper's Figure 3).

    Attributes:
        patch_1mm: the zero patch in voxels at 1 mm (the paper's 12x13x13), scaled to the run's
            spacing (3x3x3 at 4 mm).
        stride_1mm: window step in voxels at 1 mm; ``None`` = the patch (non-overlapping).
        target: the fistula ``logit`` or its softmax ``probability``.
        fold: one fold model, or ``None`` for the mean map of every fold model.
        batch_size: occluded copies per forward pass; ``None`` = from free memory.
        view: which input is occluded: ``main`` (the whole head) or a view's name; the map lies
            on that view's grid (and in the patient's native space).
    """

    patch_1mm: tuple[int, int, int] = (12, 13, 13)
    stride_1mm: tuple[int, int, int] | None = None
    target: Target = "logit"
    fold: int | None = None
    batch_size: int | None = None
    view: str = "main"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise SihnetError(
                f"occlusion target must be one of {', '.join(TARGETS)}, not {self.target!r}"
            )
        stride = self.stride_1mm or self.patch_1mm
        if min(self.patch_1mm) < 1 or min(stride) < 1:
            raise SihnetError("occlusion patch and stride must be positive voxel counts")
        if any(s > p for s, p in zip(stride, self.patch_1mm, strict=True)):
            raise SihnetError(
                f"occlusion stride {list(stride)} must not exceed the patch {list(self.patch_1mm)} "
                "(voxels would be left unoccluded)"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise SihnetError("occlusion batch size must be at least 1")


# Overrides of the paper recipe. ``quick``: the whole demo on a 2-core CPU (README "Demo results"), chosen
# so the synthetic cohort is still learnt (README "The recipe"): 4 mm (5 mm learnt worse), 16
# epochs, bf16, half the paper's learning rate (1e-3 does not settle in 16 epochs: pooled OOF AUROC
# 0.77 vs 0.82), and the last epoch (unbiased; an inner split would hold out 20% of few patients).
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        "preprocessing": {"spacing_mm": 4.0, "size": [48, 64, 64], "antialias": True},
        "training": {
            "epochs": 16,
            "restart_epochs": 16,
            "precision": "auto",
            "channels_last": "auto",
            "learning_rate": 5e-4,
            "selection": "last",
        },
        "augmentation": {"affine_prob": 0.3, "bias_field_prob": 0.0, "histogram_shift_prob": 0.0},
    },
}


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
