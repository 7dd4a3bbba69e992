"""The reader's measures of a cohort, per patient: read from its scans (the reader's library entry,
:func:`sihnet.reader.image.read_image`, in parallel processes) and as a measured run keeps them
(``RUN/patient_measures.csv``, checked against the SHA-256 its folds' measured models were fitted from).
Below both training (which writes the table) and evaluation (which reads it back).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sihnet.data.manifest import Cohort
from sihnet.data.patients import patient_means
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256
from sihnet.models.measured import MeasuredModel
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.reader.image import read_image
from sihnet.reader.reading import FEATURES, features_of, why_not_measured
from sihnet.tables import read_rows

log = logging.getLogger(__name__)

Measures = dict[str, dict[str, float | None]]  # patient -> feature -> value (None: not measured)


def _read_one(job: tuple[Path, Path]) -> tuple[dict[str, float | None], str] | str:
    """Worker: one scan's features and why any was not measured (""), or why it could not be
    read."""
    image, cache_root = job
    try:
        reading = read_image(image, VolumeCache(cache_root))
    except SihnetError as error:
        return str(error)
    return features_of(reading), reading.problem or why_not_measured(reading)


def measure_patients_in_memory(cohort: Cohort, cache: VolumeCache) -> Measures:
    """Every patient's measures: the mean over its scans (None where no scan was measured), the
    scans read in parallel processes (cached by content).

    Raises:
        SihnetError: a scan could not be read at all (named by its manifest row).
    """
    jobs = [(scan.image, cache.root) for scan in cohort.scans]
    workers = min(os.cpu_count() or 1, 4) if len(jobs) >= 8 else 1
    if workers == 1:
        results = [_read_one(job) for job in jobs]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(_read_one, jobs))
    rows: list[list[float]] = []
    for scan, result in zip(cohort.scans, results, strict=True):
        if isinstance(result, str):
            raise SihnetError(
                f"row {scan.row}: the automatic Bern reader could not read it: {result}"
            )
        features, why = result
        if why:  # named by its manifest row: which scan, and why (the training log)
            log.info("row %d: the automatic Bern reader did not measure all: %s", scan.row, why)
        rows.append([math.nan if (v := features[f]) is None else v for f in FEATURES])
    patients, means = patient_means([s.patient_id for s in cohort.scans], np.array(rows))
    return {
        p: {f: float(v) if np.isfinite(v) else None for f, v in zip(FEATURES, row, strict=True)}
        for p, row in zip(patients, means.reshape(len(patients), len(FEATURES)), strict=True)
    }


def read_verified_measurements(paths: RunPaths, folds: list[int]) -> Measures:
    """A measured run's ``patient_measures.csv``, checked against the SHA-256 its folds' measured
    models were fitted from (an edited, shortened or deleted table is refused, not used).

    Raises:
        SihnetError: the table missing, changed since training, or damaged (one line).
    """
    name = paths.patient_measures.name
    if not paths.patient_measures.is_file():
        raise SihnetError(f"{paths.root.name}/{name} is missing (train the run again)")
    digest = file_sha256(paths.patient_measures)
    for fold in folds:
        record = paths.fold_measured_model(fold)
        if not record.is_file():
            continue
        try:
            recorded = MeasuredModel.from_json(json.loads(record.read_text())).measurements_sha256
        except (OSError, ValueError, KeyError, TypeError):
            raise SihnetError(f"fold {fold}: {record.name} is damaged or was changed") from None
        if recorded and recorded != digest:
            raise SihnetError(
                f"{paths.root.name}/{name} was changed after training (its SHA-256 differs from "
                f"the one fold {fold}'s measured model was fitted from); refused"
            )
    return read_measurements(paths)


def read_measurements(paths: RunPaths) -> Measures:
    """``RUN/patient_measures.csv`` as written by :func:`measure_patients`.

    Raises:
        SihnetError: a value that is not a finite number, or a missing column (one line naming the
            file, the row and the column).
    """
    measures: Measures = {}
    name = paths.patient_measures.name
    for number, row in enumerate(read_rows(paths.patient_measures), start=2):
        values: dict[str, float | None] = {}
        for column in ("patient_id", *FEATURES):
            if column not in row:
                raise SihnetError(f"{name} has no column {column!r}")
        for column in FEATURES:
            text = row[column].strip()
            try:
                value = None if text == "" else float(text)
            except ValueError:
                value = float("nan")
            if value is not None and not math.isfinite(value):
                raise SihnetError(
                    f"{name} line {number}: {column} {text[:20]!r} is not a finite number"
                )
            values[column] = value
        measures[row["patient_id"]] = values
    return measures
