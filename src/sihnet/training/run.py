"""``run_training``: manifest -> cached volumes -> patient-level CV folds -> fold checkpoints."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from sihnet.atomic import (
    remove_stale_temporaries,
    write_json_atomic,
    write_text_atomic,
    write_text_once,
)
from sihnet.config import ExperimentConfig, config_from_dict, config_to_dict, read_yaml_mapping
from sihnet.data.manifest import Cohort, Scan
from sihnet.data.splits import (
    check_no_leakage,
    inner_split,
    load_splits,
    make_splits,
    patient_groups,
    splits_text,
)
from sihnet.errors import SihnetError, TrainingInterrupted
from sihnet.hashing import file_sha256, text_sha256
from sihnet.inference import resolve_device
from sihnet.models.bern_heads import bern_targets
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache, read_cached
from sihnet.preprocessing.reference import image_properties, reference_statistics
from sihnet.schemas import CohortFile, FoldSummary, ImageIdentities
from sihnet.training.checkpoint import stop_requested
from sihnet.training.distributed import World, broadcast_error, device_for
from sihnet.training.fold import FoldData, train_fold
from sihnet.training.precision import DECISIONS_FILE, PrecisionPolicy
from sihnet.training.samples import Samples

log = logging.getLogger(__name__)


def prepare_run_folder(paths: RunPaths, config: ExperimentConfig) -> None:
    """Write ``config.yaml`` once, or check that the run folder holds the same configuration.

    Several ``--fold`` jobs may start at once: the first creates the file, the others check it. A
    run that never started a fold (e.g. it stopped at a bad image) takes the new configuration.
    """
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    paths.root.mkdir(parents=True, exist_ok=True)
    if write_text_once(paths.config, text):
        return
    stored = read_yaml_mapping(paths.config, "run configuration")
    # a key added since the run was written takes its default (what the run trained with);
    # a file that does not parse is compared as written: the differences name the keys
    with contextlib.suppress(SihnetError):
        stored = config_to_dict(config_from_dict(stored))
    changed = _differences(stored, yaml.safe_load(text))
    if not changed:
        return
    if not paths.fold_started(config.cross_validation.folds):
        log.info("%s had not trained yet: its %s is replaced", paths.root.name, paths.config.name)
        write_text_atomic(paths.config, text)
        return
    raise SihnetError(
        f"{paths.root.name}/{paths.config.name} differs from this configuration in {changed[0]}"
        + (f" (+{len(changed) - 1} more)" if len(changed) > 1 else "")
        + "; use the run's settings or a new --out folder"
    )


def _differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as ``key (stored -> wanted)``."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        keys = list(dict.fromkeys([*stored, *wanted]))
        return [
            d for k in keys for d in _differences(stored.get(k), wanted.get(k), f"{prefix}{k}.")
        ]
    return [] if stored == wanted else [f"{prefix.rstrip('.')} ({stored} -> {wanted})"]


def prepare_splits(
    paths: RunPaths, cohort: Cohort, config: ExperimentConfig, groups: dict[str, str]
) -> dict[str, int]:
    """Make and save ``splits.json`` once (jobs racing write the same seeded splits), then load it
    and check that it covers exactly this cohort's patients."""
    labels = cohort.patient_labels()
    cv = config.cross_validation
    if not paths.splits.is_file() or not paths.fold_started(cv.folds):
        assignment = make_splits(labels, cv.folds, cv.splitter, config.seed, groups)
        text = splits_text(assignment, cv.folds, cv.splitter, config.seed)
        if not write_text_once(paths.splits, text) and not paths.fold_started(cv.folds):
            write_text_atomic(paths.splits, text)  # a run that never trained: new splits
    assignment, folds = load_splits(paths.splits)
    if set(assignment) != set(labels):
        raise SihnetError(
            f"the manifest's patients differ from those in {paths.splits.name}; use a new --out "
            "folder"
        )
    if folds != cv.folds:
        raise SihnetError(f"{paths.splits.name} has {folds} folds, the configuration {cv.folds}")
    return assignment


def write_cohort_record(paths: RunPaths, cohort: Cohort, n_folds: int) -> None:
    """``cohort.json``: labels, Bern fields per patient, exclusion counts (no image paths).

    A run folder stays tied to its manifest: once a fold started, a different manifest is refused.
    """
    digest = file_sha256(cohort.source)
    record = CohortFile(
        manifest_sha256=digest, labels=cohort.patient_labels(),
        excluded_indeterminate=cohort.excluded_indeterminate, excluded_slec=cohort.excluded_slec,
        n_scans=len(cohort.scans), bern=cohort.bern_fields(), demographics=cohort.demographics(),
    )  # fmt: skip
    text = json.dumps(record.model_dump(), indent=2) + "\n"
    if write_text_once(paths.cohort, text):
        return
    try:
        recorded = json.loads(paths.cohort.read_text()).get("manifest_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = "damaged"
    if recorded != digest:
        if paths.fold_started(n_folds):
            raise SihnetError(
                f"the manifest changed since {paths.root.name} was started; use a new --out folder"
            )
        write_text_atomic(paths.cohort, text)


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


def _fingerprints(paths: RunPaths, cohort: Cohort, image_hashes: list[str]) -> dict[str, str]:
    """What a resumed fold must find unchanged: configuration (its values: a comment added to
    ``config.yaml`` changes nothing), manifest, splits and every image. ``config_file`` (the file's
    bytes) lets a fold interrupted by an older version resume."""
    values = read_yaml_mapping(paths.config, "run configuration")
    return {
        "config": text_sha256(json.dumps(values, sort_keys=True)),
        "config_file": file_sha256(paths.config),
        "manifest": file_sha256(cohort.source),
        "splits": file_sha256(paths.splits),
        "images": text_sha256("|".join(image_hashes)),
    }


def write_reference(
    paths: RunPaths, cohort: Cohort, cache: VolumeCache, entries: dict[Path, Path]
) -> None:
    """``reference.json``: the range of each image property over the training images (once)."""
    if paths.reference.is_file():
        return
    properties = [
        image_properties(cache.nifti_of(scan.image), read_cached(entries[scan.image]))
        for scan in cohort.scans
    ]
    note = (
        "ranges over the run's images; predict warns outside them (sihnet.preprocessing.reference)"
    )
    write_json_atomic(
        paths.reference, {"note": note, "quantities": reference_statistics(properties)}
    )


def prepare_run(
    config: ExperimentConfig, cohort: Cohort, paths: RunPaths, cache: VolumeCache
) -> tuple[dict[Path, Path], dict[str, str], dict[str, int], dict[str, str]]:
    """Everything before the first fold: the run folder's files, the cached images, the check
    for identical scans under two IDs, the splits and the fingerprints a resume must match.

    Returns:
        ``(image -> cache entry, patient groups, patient -> fold, fingerprints)``.
    """
    prepare_run_folder(paths, config)
    own = [paths.root, *(paths.fold_dir(k) for k in range(config.cross_validation.folds))]
    removed = remove_stale_temporaries(own)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write", removed)
    write_cohort_record(paths, cohort, config.cross_validation.folds)
    torch.set_num_threads(config.training.threads or os.cpu_count() or 1)
    images = [(scan.row, scan.image) for scan in cohort.scans]
    entries = cache.cache_images(images, config.preprocessing)
    stop = stop_requested()
    if stop is not None:
        raise TrainingInterrupted(stop, False, "stopped while preprocessing; nothing was trained")
    write_reference(paths, cohort, cache, entries)
    groups = _identical_groups(cohort, cache, config, paths)
    assignment = prepare_splits(paths, cohort, config, groups)
    fingerprints = _fingerprints(paths, cohort, [cache.content_hash(s.image) for s in cohort.scans])
    return entries, groups, assignment, fingerprints


def attach_run(
    config: ExperimentConfig, cohort: Cohort, paths: RunPaths, cache: VolumeCache
) -> tuple[dict[Path, Path], dict[str, str], dict[str, int], dict[str, str]]:
    """What :func:`prepare_run` returns, read from the files rank 0 prepared (no writes)."""
    torch.set_num_threads(config.training.threads or os.cpu_count() or 1)
    entries = {scan.image: cache.entry(scan.image, config.preprocessing) for scan in cohort.scans}
    groups = _identical_groups(cohort, cache, config)
    assignment, _ = load_splits(paths.splits)
    hashes = [cache.content_hash(scan.image) for scan in cohort.scans]
    return entries, groups, assignment, _fingerprints(paths, cohort, hashes)


def _identical_groups(
    cohort: Cohort, cache: VolumeCache, config: ExperimentConfig, paths: RunPaths | None = None
) -> dict[str, str]:
    """Patients sharing an image by content (voxels and geometry, not file bytes: a copy saved as
    .nii or with another header is the same scan), refused or grouped by the configuration; the
    identities kept in ``image_identities.json`` (when ``paths`` is given)."""
    identities = [(s.row, s.patient_id, cache.image_identity(s.image)) for s in cohort.scans]
    groups = patient_groups(identities, config.cross_validation.identical_images == "group")
    if paths is not None:
        kept = sorted({identity for _, _, identity in identities})
        record = ImageIdentities(identities=kept)
        write_json_atomic(paths.image_identities, record.model_dump())
    return groups


def _prepared(
    config: ExperimentConfig, cohort: Cohort, paths: RunPaths, cache: VolumeCache, world: World
) -> tuple[dict[Path, Path], dict[str, str], dict[str, int], dict[str, str]]:
    """Rank 0 prepares the run; the others wait, then read it. A failure on rank 0 is raised on
    every rank (none waits for ever)."""
    if not world.distributed:
        return prepare_run(config, cohort, paths, cache)
    prepared, message = None, None
    if world.main:
        try:
            prepared = prepare_run(config, cohort, paths, cache)
        except (SihnetError, TrainingInterrupted) as error:
            with contextlib.suppress(SihnetError):
                broadcast_error(str(error) or type(error).__name__, world)
            raise
    broadcast_error(message, world)
    return prepared if prepared is not None else attach_run(config, cohort, paths, cache)


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
    entries, groups, assignment, fingerprints = _prepared(config, cohort, paths, cache, world)
    measures = None
    if config.measured.enabled and world.main:
        from sihnet.training.measured import measure_patients

        measures = measure_patients(cohort, cache, paths)
    if config.training.deterministic:
        use_deterministic_algorithms()
    summaries, policy = [], PrecisionPolicy(cache.root / DECISIONS_FILE)
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
        data = fold_data(fold, assignment, cohort, entries, config, groups)
        inner = data.inner_validation
        log.info("fold %d/%d: %d training, %d inner-validation, %d validation patients", fold,
                 config.cross_validation.folds, len(set(data.train.patient_ids)),
                 len(set(inner.patient_ids)) if inner else 0,
                 len(set(data.validation.patient_ids)))  # fmt: skip
        trained = train_fold(fold, data, config, paths, fingerprints, resume, world, policy, device)
        summaries.append(trained)
        _fuse(fold, paths, config, measures, cohort, assignment)
    return summaries


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
