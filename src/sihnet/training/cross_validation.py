"""``run_training``: manifest -> cached volumes -> patient-level CV folds -> fold checkpoints."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from sihnet.config import ExperimentConfig
from sihnet.data.manifest import Cohort, Scan
from sihnet.data.splits import (
    check_no_leakage,
    inner_split,
)
from sihnet.errors import SihnetError
from sihnet.inference import resolve_device
from sihnet.models.bern_heads import bern_targets
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.schemas import FoldSummary
from sihnet.training.distributed import World, device_for
from sihnet.training.fold import FoldData, train_fold
from sihnet.training.precision import DECISIONS_FILE, PrecisionPolicy
from sihnet.training.prepare import prepare_or_attach
from sihnet.training.samples import Samples

log = logging.getLogger(__name__)


def _samples(scans: list[Scan], entries: dict[Path, Path]) -> Samples:
    return Samples(
        patient_ids=[s.patient_id for s in scans],
        entries=[entries[s.image] for s in scans],
        labels=[int(s.label) if s.label is not None else -1 for s in scans],
        bern=bern_targets([s.fields for s in scans]),
    )


def fold_data(
    fold: int,
    assignment: dict[str, int],
    cohort: Cohort,
    entries: dict[Path, Path],
    config: ExperimentConfig,
    groups: dict[str, str] | None = None,
) -> FoldData:
    """The fold's training, inner validation (``inner`` selection) and validation scans, checked
    for leakage at every split."""
    validation_ids = {p for p, f in assignment.items() if f == fold}
    train_ids = {p for p, f in assignment.items() if f != fold}
    check_no_leakage(train_ids, validation_ids)
    inner = None
    if config.training.selection == "inner":
        labels = cohort.patient_labels()
        train_labels = {p: labels[p] for p in cohort.patient_ids if p in train_ids}
        inner_train, inner_validation = inner_split(
            train_labels, config.training.inner_validation_fraction, config.fold_seed(fold), groups
        )
        check_no_leakage(inner_train, inner_validation)
        check_no_leakage(inner_validation, validation_ids)
        train_ids, inner = (
            set(inner_train),
            _samples(cohort.scans_of(set(inner_validation)), entries),
        )
    return FoldData(
        _samples(cohort.scans_of(train_ids), entries),
        inner,
        _samples(cohort.scans_of(validation_ids), entries),
    )


def _requested(config: ExperimentConfig, folds: list[int] | None) -> list[int]:
    n_folds = config.cross_validation.folds
    requested = list(range(n_folds)) if folds is None else folds
    for fold in requested:
        if not 0 <= fold < n_folds:
            raise SihnetError(f"--fold {fold} is outside 0..{n_folds - 1}")
    return requested


def run_training(
    config: ExperimentConfig,
    cohort: Cohort,
    paths: RunPaths,
    cache: VolumeCache,
    folds: list[int] | None = None,
    resume: bool = False,
    world: World = World(),
) -> list[FoldSummary]:
    """Train the requested folds (default: all not yet complete) of a patient-level CV.

    Args:
        config: the resolved experiment configuration.
        cohort: labelled cohort (every scan has label 0/1).
        paths: the run folder.
        cache: the preprocessed-volume cache.
        folds: fold indices to train (``--fold K``); ``None`` trains every fold.
        resume: continue interrupted folds from their last complete epoch.
        world: the torchrun processes that train each fold together (rank 0 prepares the run
            folder and the cache and writes every file; the others read them).

    Returns:
        The summaries of the folds trained now.

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM arrived; every fold's last complete epoch is saved.
    """
    requested = _requested(config, folds)
    _check_memory(config, world)
    prepared = prepare_or_attach(config, cohort, paths, cache, world)
    assignment = prepared.assignment  # patient -> fold
    measures = _measures(config, cohort, cache, paths) if world.main else None
    if config.training.deterministic:
        use_deterministic_algorithms()
    summaries, policy = [], PrecisionPolicy(cache.machine_file(DECISIONS_FILE))
    device = resolve_device(device_for(world, config.training.device))  # once per run
    for fold in requested:
        if paths.fold_summary(fold).is_file():
            log.info("fold %d is already complete; skipped", fold)
            _fuse(fold, paths, config, measures, cohort, assignment)
            continue
        if paths.last_state(fold).is_file() and not resume:
            raise SihnetError(
                f"fold {fold} was interrupted; continue it with --resume "
                f"(or delete {paths.root.name}/fold_{fold} to start it over)"
            )
        data = fold_data(fold, assignment, cohort, prepared.entries, config, prepared.groups)
        inner = data.inner_validation
        log.info("fold %d/%d: %d training, %d inner-validation, %d validation patients", fold,
                 config.cross_validation.folds, len(set(data.train.patient_ids)),
                 len(set(inner.patient_ids)) if inner else 0,
                 len(set(data.validation.patient_ids)))  # fmt: skip
        trained = train_fold(
            fold, data, config, paths, prepared.fingerprints, resume, world, policy, device
        )
        summaries.append(trained)
        _fuse(fold, paths, config, measures, cohort, assignment)
    return summaries


def _measures(
    config: ExperimentConfig, cohort: Cohort, cache: VolumeCache, paths: RunPaths
) -> dict[str, dict[str, float | None]] | None:
    """A measured run's patients' measures (written to the run); None for a network-only run."""
    if not config.measured.enabled:
        return None
    from sihnet.training.measured import measure_patients

    return measure_patients(cohort, cache, paths)


def _fuse(
    fold: int,
    paths: RunPaths,
    config: ExperimentConfig,
    measures: dict[str, dict[str, float | None]] | None,
    cohort: Cohort,
    assignment: dict[str, int],
) -> None:
    """A measured run's fold: its measured model and fused predictions (rank 0)."""
    if measures is None:
        return
    from sihnet.training.measured import fuse_fold

    labels = {p: int(v or 0) for p, v in cohort.patient_labels().items()}
    fuse_fold(fold, paths, config, measures, labels, assignment)


def _check_memory(config: ExperimentConfig, world: World) -> None:
    """Refuse a canvas and batch that cannot fit on the device before anything is preprocessed
    (``auto`` is checked as fp32, which the probe may choose)."""
    from sihnet.inference import Inference
    from sihnet.training.distributed import device_for, per_rank_batch
    from sihnet.training.plan import check_training_fits

    settings = config.training
    precision = "fp32" if settings.precision == "auto" else settings.precision
    inference = Inference.resolve(device_for(world, settings.device), precision)
    check_training_fits(config, per_rank_batch(settings.batch_size, world), inference)


def use_deterministic_algorithms() -> None:
    """Deterministic kernels on the GPU (slower); CPU runs are deterministic already."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
