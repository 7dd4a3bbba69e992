"""The run's preparation before its first fold: the run folder's files, the cached images, identical
scans, the splits and the fingerprints a resume must match (rank 0 writes; the other ranks read)."""

from __future__ import annotations

import contextlib
import dataclasses
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
from sihnet.data.manifest import Cohort
from sihnet.data.splits import (
    load_splits,
    make_splits,
    patient_groups,
    splits_text,
)
from sihnet.errors import SihnetError, TrainingInterrupted
from sihnet.hashing import file_sha256, text_sha256
from sihnet.ingest.resolve import convert_dicom_inputs
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache, read_cached
from sihnet.preprocessing.reference import image_properties, reference_statistics
from sihnet.schemas import CohortFile, ImageIdentities
from sihnet.synth.cohort import cohort_ceiling
from sihnet.training.checkpoint import stop_requested
from sihnet.training.distributed import World, broadcast_error

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
        recorded = CohortFile.model_validate(json.loads(paths.cohort.read_text())).manifest_sha256
    except (OSError, ValueError):
        recorded = "damaged"
    if recorded != digest:
        if paths.fold_started(n_folds):
            raise SihnetError(
                f"the manifest changed since {paths.root.name} was started; use a new --out folder"
            )
        write_text_atomic(paths.cohort, text)


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


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """What the folds need from the run's preparation: image -> cache entry, patient -> group of
    patients sharing an identical scan, patient -> fold, and what a resume must match."""

    entries: dict[Path, Path]
    groups: dict[str, str]
    assignment: dict[str, int]
    fingerprints: dict[str, str]


def prepare_run(
    config: ExperimentConfig, cohort: Cohort, paths: RunPaths, cache: VolumeCache
) -> PreparedRun:
    """Everything before the first fold: the run folder's files, the cached images, the check
    for identical scans under two IDs, the splits and the fingerprints a resume must match."""
    prepare_run_folder(paths, config)
    own = [paths.root, *(paths.fold_dir(k) for k in range(config.cross_validation.folds))]
    removed = remove_stale_temporaries(own)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write", removed)
    write_cohort_record(paths, cohort, config.cross_validation.folds)
    ceiling = cohort_ceiling(cohort.source, cohort.patient_ids)
    if ceiling is not None:  # beside the run's AUROC in metrics.json and the report
        write_json_atomic(paths.cohort_ceiling, ceiling.model_dump())
    torch.set_num_threads(config.training.threads or os.cpu_count() or 1)
    images = [(scan.row, scan.image) for scan in cohort.scans]
    convert_dicom_inputs([image for _, image in images], cache)
    entries = cache.cache_images(images, config.preprocessing)
    stop = stop_requested()
    if stop is not None:
        raise TrainingInterrupted(stop, False, "stopped while preprocessing; nothing was trained")
    write_reference(paths, cohort, cache, entries)
    groups = _identical_groups(cohort, cache, config, paths)
    assignment = prepare_splits(paths, cohort, config, groups)
    fingerprints = _fingerprints(paths, cohort, [cache.content_hash(s.image) for s in cohort.scans])
    return PreparedRun(entries, groups, assignment, fingerprints)


def attach_run(
    config: ExperimentConfig, cohort: Cohort, paths: RunPaths, cache: VolumeCache
) -> PreparedRun:
    """What :func:`prepare_run` returns, read from the files rank 0 prepared (no writes)."""
    torch.set_num_threads(config.training.threads or os.cpu_count() or 1)
    entries = {scan.image: cache.entry(scan.image, config.preprocessing) for scan in cohort.scans}
    groups = _identical_groups(cohort, cache, config)
    assignment, _ = load_splits(paths.splits)
    hashes = [cache.content_hash(scan.image) for scan in cohort.scans]
    return PreparedRun(entries, groups, assignment, _fingerprints(paths, cohort, hashes))


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


def prepare_or_attach(
    config: ExperimentConfig, cohort: Cohort, paths: RunPaths, cache: VolumeCache, world: World
) -> PreparedRun:
    """Rank 0 prepares the run; the others wait, then read it. A failure on rank 0 is raised on
    every rank (none waits for ever)."""
    if not world.distributed:
        return prepare_run(config, cohort, paths, cache)
    prepared = None
    if world.main:
        try:
            prepared = prepare_run(config, cohort, paths, cache)
        except (SihnetError, TrainingInterrupted) as error:
            with contextlib.suppress(SihnetError):
                broadcast_error(str(error) or type(error).__name__, world)
            raise
    broadcast_error(None, world)  # rank 0 prepared the run: the others read it
    return prepared if prepared is not None else attach_run(config, cohort, paths, cache)
