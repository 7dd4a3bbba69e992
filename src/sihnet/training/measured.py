"""The measured model of a run (``measured.enabled``): every scan read by the automatic Bern reader,
a logistic regression per fold fitted on that fold's training patients only, and the fold's
validation predictions fused with the network's (:mod:`sihnet.models.measured`).

``RUN/measurements.csv`` holds the patients' measures (a patient's scans averaged); each fold
keeps ``measured_model.json`` and its ``predictions.csv`` gains ``probability_network`` and
``probability_measured`` beside the fused ``probability``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sihnet.atomic import write_json_atomic
from sihnet.config import ExperimentConfig
from sihnet.data.manifest import Cohort
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256
from sihnet.models.measured import MeasuredModel, fuse, sigmoid
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.reader.reading import FEATURES, features_of
from sihnet.reader.run import reading_of
from sihnet.schemas import PredictionTable
from sihnet.tables import read_rows, write_table

log = logging.getLogger(__name__)

Measures = dict[str, dict[str, float | None]]  # patient -> feature -> value (None: not measured)


def _read_one(job: tuple[Path, Path]) -> tuple[dict[str, float | None], str] | str:
    """Worker: one scan's features and why any was not measured (""), or why it could not be
    read."""
    image, cache_root = job
    try:
        reading, _ = reading_of(image, VolumeCache(cache_root))
    except SihnetError as error:
        return str(error)
    reasons = [f"{k}: {v.reason}" for k, v in reading.distances.items() if v.reason]
    reasons += [f"{k}: {v.reason}" for k, v in reading.measures.items() if v.reason]
    return features_of(reading), reading.problem or "; ".join(reasons)


def measure_patients(cohort: Cohort, cache: VolumeCache, paths: RunPaths) -> Measures:
    """Every patient's measures (:func:`measure_patients_in_memory`), written to
    ``RUN/measurements.csv``."""
    measures = measure_patients_in_memory(cohort, cache)
    rows_out = [
        {"patient_id": p, **{k: "" if v is None else f"{v:.4f}" for k, v in m.items()}}
        for p, m in measures.items()
    ]
    write_table(paths.measurements, ["patient_id", *FEATURES], rows_out)
    not_measured = sum(any(v is None for v in m.values()) for m in measures.values())
    log.info(
        "automatic Bern reader: %d patients measured (%d with an item not measured)",
        len(measures),
        not_measured,
    )
    return measures


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
    by_patient: dict[str, list[dict[str, float | None]]] = {}
    for scan, result in zip(cohort.scans, results, strict=True):
        if isinstance(result, str):
            raise SihnetError(
                f"row {scan.row}: the automatic Bern reader could not read it: {result}"
            )
        features, why = result
        if why:  # named by its manifest row: which scan, and why (the training log)
            log.info("row %d: the automatic Bern reader did not measure all: %s", scan.row, why)
        by_patient.setdefault(scan.patient_id, []).append(features)
    measures: Measures = {}
    for patient, rows in by_patient.items():
        measures[patient] = {}
        for name in FEATURES:
            values = [v for v in (r[name] for r in rows) if v is not None and np.isfinite(v)]
            measures[patient][name] = float(np.mean(values)) if values else None
    return measures


def read_verified_measurements(paths: RunPaths, folds: list[int]) -> Measures:
    """A measured run's ``measurements.csv``, checked against the SHA-256 its folds' measured
    models were fitted from (an edited, shortened or deleted table is refused, not used).

    Raises:
        SihnetError: the table missing, changed since training, or damaged (one line).
    """
    name = paths.measurements.name
    if not paths.measurements.is_file():
        raise SihnetError(f"{paths.root.name}/{name} is missing (train the run again)")
    digest = file_sha256(paths.measurements)
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
    """``RUN/measurements.csv`` as written by :func:`measure_patients`.

    Raises:
        SihnetError: a value that is not a finite number, or a missing column (one line naming the
            file, the row and the column).
    """
    measures: Measures = {}
    name = paths.measurements.name
    for number, row in enumerate(read_rows(paths.measurements), start=2):
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


def fuse_fold(
    fold: int,
    paths: RunPaths,
    config: ExperimentConfig,
    measures: Measures,
    labels: Mapping[str, int],
    assignment: Mapping[str, int],
) -> None:
    """Fit the fold's measured model on its training patients and rewrite its predictions with the
    fused probability (done once: a fold whose model is written is left as it is)."""
    if paths.fold_measured_model(fold).is_file():
        return
    train = sorted(p for p, f in assignment.items() if f != fold)
    model = dataclasses.replace(
        MeasuredModel.fit(
            [measures[p] for p in train],
            np.array([labels[p] for p in train]),
            penalty_c=config.measured.penalty_c,
        ),
        measurements_sha256=(
            file_sha256(paths.measurements) if paths.measurements.is_file() else ""
        ),
    )
    table = PredictionTable.read(paths.fold_predictions(fold))
    network = table.scores["probability"]
    logits = model.logits([measures[p] for p in table.patient_ids])
    fused = sigmoid(logits) if config.measured.fusion == "measured_only" else fuse(network, logits)
    scores = {
        "probability": fused,
        "probability_network": network,
        "probability_measured": sigmoid(logits),
        **{k: v for k, v in table.scores.items() if k != "probability"},
    }
    updated = PredictionTable(table.patient_ids, table.folds, table.labels, scores)
    write_json_atomic(paths.fold_measured_model(fold), model.as_json())
    updated.write(paths.fold_predictions(fold), tuple(scores))
