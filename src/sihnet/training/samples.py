"""The scans of one side of a fold: their cache entries, labels and Bern fields, the patient-level
aggregation of scan scores, the AUROC and the training fold's class weights; a fold's loaders."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DataLoader

from sihnet.config import ExperimentConfig
from sihnet.data.patients import patient_means
from sihnet.models.inputs import map_views
from sihnet.training.dataset import CachedVolumeDataset
from sihnet.training.distributed import EpochPermutation, World, per_rank_batch
from sihnet.training.step import Batch


@dataclasses.dataclass(frozen=True)
class Samples:
    """Scans of one split side; the lists are aligned (one entry per scan)."""

    patient_ids: list[str]
    entries: list[Path]
    labels: list[int]
    bern: np.ndarray | None = None  # (scans, 6) reader's Bern fields, NaN = missing

    def __len__(self) -> int:
        return len(self.entries)

    def dataset(self, with_bern: bool = False) -> CachedVolumeDataset:
        return CachedVolumeDataset(self.entries, self.labels, self.bern if with_bern else None)


def patient_level(
    samples: Samples, probabilities: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Average scan probabilities per patient.

    Returns:
        ``(patient_ids, labels (P,), probabilities (P,))`` in first-seen order.
    """
    order, means = patient_means(samples.patient_ids, probabilities)
    labels = dict(zip(samples.patient_ids, samples.labels, strict=True))
    return order, np.array([labels[p] for p in order], dtype=int), means


def class_weights(labels: Sequence[int]) -> torch.Tensor:
    """Inverse class ratios of the training fold (scikit-learn ``balanced``): n / (2 n_c), (2,)."""
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=np.asarray(labels))
    return torch.tensor(weights, dtype=torch.float32)


def has_bern(samples: Samples) -> bool:
    """Whether any scan of ``samples`` has a reader's Bern value."""
    return samples.bern is not None and bool(np.isfinite(samples.bern).any())


@dataclasses.dataclass(frozen=True)
class FoldData:
    """A fold's three sides: training, inner validation (``inner`` selection only), validation."""

    train: Samples
    inner_validation: Samples | None
    validation: Samples


# A fold's training loader, its validation scans and its inner-validation scans (or None).
Loaders = tuple[DataLoader[Any], CachedVolumeDataset, CachedVolumeDataset | None]


def to_batch(items: list[Any], device: torch.device) -> Batch:
    """A loader's items (images, labels[, Bern targets]) as a :class:`Batch` on ``device``."""
    images, labels, *targets = items
    bern = targets[0].to(device) if targets else None
    moved = map_views(images, lambda view: view.to(device, non_blocking=True))
    return Batch(moved, labels.to(device), bern)


def fold_loaders(
    data: FoldData, config: ExperimentConfig, device: torch.device, world: World, seed: int
) -> Loaders:
    """Training loader (this rank's share of one seeded permutation per epoch), validation sets."""
    settings = config.training
    train = data.train.dataset(with_bern=config.bern_heads.enabled and has_bern(data.train))
    loader = DataLoader(
        train,
        batch_size=per_rank_batch(settings.batch_size, world),
        sampler=EpochPermutation(len(train), seed, world),
        num_workers=settings.loader_workers,
        pin_memory=device.type == "cuda",
    )
    inner = data.inner_validation.dataset() if data.inner_validation is not None else None
    return loader, data.validation.dataset(), inner


def first_batch(loader: DataLoader[Any], device: torch.device) -> Batch:
    """The fold's first training batch, not augmented (the probe consumes no random state)."""
    sampler = loader.sampler
    if isinstance(sampler, EpochPermutation):
        sampler.set_epoch(0)
    return to_batch(next(iter(loader)), device)
