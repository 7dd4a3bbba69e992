"""What the experiment configuration holds: one frozen dataclass per concern, whose defaults *are*
the paper's recipe. Profiles, validation and loading are :mod:`sihnet.config`'s (import the
sections from there)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from sihnet.bern import FIELDS as BERN_FIELDS
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
