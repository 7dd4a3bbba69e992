"""The measured model of a run (``measured.enabled``): every scan read by the automatic Bern reader,
a logistic regression per fold fitted on that fold's training patients only, and the fold's
validation predictions fused with the network's (:mod:`sihnet.models.measured`).

``RUN/patient_measures.csv`` holds the patients' measures (a patient's scans averaged); each fold
keeps ``measured_model.json`` and ``measured_predictions.csv``: the run's ``probability`` (fused) with
``probability_network`` and ``probability_measured`` beside it. The fold's ``predictions.csv`` stays
the network's, as the fold wrote it (its ``summary.json`` is the network's too).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import numpy as np

from sihnet.atomic import write_json_atomic
from sihnet.config import ExperimentConfig
from sihnet.data.manifest import Cohort
from sihnet.hashing import file_sha256
from sihnet.models.measured import MeasuredModel, combine
from sihnet.models.measurements import Measures, measure_patients_in_memory
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.reader.reading import FEATURES
from sihnet.schemas import PredictionTable
from sihnet.tables import write_table

log = logging.getLogger(__name__)


def measure_patients(cohort: Cohort, cache: VolumeCache, paths: RunPaths) -> Measures:
    """Every patient's measures (:func:`measure_patients_in_memory`), written to
    ``RUN/patient_measures.csv``."""
    measures = measure_patients_in_memory(cohort, cache)
    rows_out = [
        {"patient_id": p, **{k: "" if v is None else f"{v:.4f}" for k, v in m.items()}}
        for p, m in measures.items()
    ]
    write_table(paths.patient_measures, ["patient_id", *FEATURES], rows_out)
    not_measured = sum(any(v is None for v in m.values()) for m in measures.values())
    log.info(
        "automatic Bern reader: %d patients measured (%d with an item not measured)",
        len(measures),
        not_measured,
    )
    return measures


def fuse_fold(
    fold: int,
    paths: RunPaths,
    config: ExperimentConfig,
    measures: Measures,
    labels: Mapping[str, int],
    assignment: Mapping[str, int],
) -> None:
    """Fit the fold's measured model on its training patients and write the fold's
    ``measured_predictions.csv`` beside the network's ``predictions.csv``, which is left as it is
    (done once: a fold whose model is written is left as it is; the model is written last)."""
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
            file_sha256(paths.patient_measures) if paths.patient_measures.is_file() else ""
        ),
    )
    table = PredictionTable.read(paths.fold_predictions(fold))
    logits = model.logits([measures[p] for p in table.patient_ids])
    scores = combine(table.probability, logits, config.measured.fusion)
    fused = PredictionTable(table.patient_ids, table.folds, table.labels, scores)
    fused.write(paths.fold_measured_predictions(fold), tuple(scores))
    write_json_atomic(paths.fold_measured_model(fold), model.as_json())
