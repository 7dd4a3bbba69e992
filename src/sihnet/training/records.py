"""What a fold writes as it trains: history, predictions, its summary, and its progress."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sihnet import progress
from sihnet.atomic import write_json_atomic
from sihnet.config import ExperimentConfig
from sihnet.data.patients import auroc_or_nan
from sihnet.paths import RunPaths
from sihnet.schemas import FoldSummary
from sihnet.tables import write_table
from sihnet.training.samples import FoldData, patient_level
from sihnet.training.selection import Selection

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "loss", "val_auroc", "inner_auroc", "lr", "seconds")


class EpochProgress:
    """A tqdm bar on a terminal, else one log line per epoch."""

    def __init__(self, bar: tqdm | None, silent: bool = False, job_epochs: int = 0) -> None:
        self.bar, self.silent, self.job_epochs = bar, silent, job_epochs

    def epoch_done(self, where: str, total: int, record: dict[str, float]) -> None:
        job = progress.active()
        if job is not None and self.job_epochs:
            job.step("training", self.job_epochs)
        if self.silent:
            return
        inner = record["inner_auroc"]
        inner_text = "" if math.isnan(inner) else f" inner AUROC {inner:.3f}"
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {record['loss']:.3f} val {record['val_auroc']:.3f}")
            self.bar.update()
        else:
            log.info(
                "%s/%d loss %.4f val AUROC %.3f%s (%.1f s)",
                where,
                total,
                record["loss"],
                record["val_auroc"],
                inner_text,
                record["seconds"],
            )


@contextlib.contextmanager
def epoch_bar(
    total: int, description: str, done: int = 0, shown: bool = True, job_epochs: int = 0
) -> Iterator[EpochProgress]:
    """Progress over a fold's epochs, starting at ``done`` (a resumed fold); ``shown`` False for
    the ranks other than 0 of a torchrun job (silent). Under a job bar (:mod:`sihnet.progress`)
    the epochs advance it instead (``job_epochs``: the job's epochs over all folds)."""
    if not shown or progress.active() is not None:
        yield EpochProgress(None, silent=True, job_epochs=job_epochs if shown else 0)
    elif sys.stderr.isatty():
        with tqdm(total=total, initial=done, desc=description, unit="epoch", leave=True) as bar:
            yield EpochProgress(bar)
    else:
        yield EpochProgress(None)


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    write_table(path, HISTORY_COLUMNS, rows)


def write_predictions(
    path: Path, fold: int, patients: list[str], labels: np.ndarray, columns: dict[str, np.ndarray]
) -> None:
    """``fold_K/predictions.csv``: patient, fold, label and one column per probability (6 decimals)."""
    rows = [
        {
            "patient_id": patient,
            "fold": fold,
            "label": int(labels[i]),
            **{name: f"{values[i]:.6f}" for name, values in columns.items()},
        }
        for i, patient in enumerate(patients)
    ]
    write_table(path, ["patient_id", "fold", "label", *columns], rows)


@dataclasses.dataclass(frozen=True)
class TrainedFold:
    """How a fold was trained, beside what it selected (for its summary)."""

    weights_sha256: str
    precision: str
    channels_last: bool
    precision_probe: dict[str, Any] | None
    precision_fallback: dict[str, Any] | None
    skipped_steps: int
    seconds: float


def fold_summary(
    fold: int,
    selection: Selection,
    data: FoldData,
    config: ExperimentConfig,
    trained: TrainedFold,
) -> FoldSummary:
    """The fold's ``summary.json`` content."""
    selected, last, best = selection.selected, selection.last, selection.best_validation
    assert selected.probabilities is not None and last.probabilities is not None
    assert best.probabilities is not None
    patients, labels, _ = patient_level(data.validation, np.zeros(len(data.validation)))
    inner = data.inner_validation
    return FoldSummary(
        fold=fold,
        selection=config.training.selection,
        selected_epoch=selected.epoch,
        auroc=auroc_or_nan(labels, selected.probabilities),
        auroc_last_epoch=auroc_or_nan(labels, last.probabilities),
        auroc_best_validation=auroc_or_nan(labels, best.probabilities),
        best_validation_epoch=best.epoch,
        weights_sha256=trained.weights_sha256,
        precision=trained.precision,
        n_train_patients=len(set(data.train.patient_ids)),
        n_inner_validation_patients=len(set(inner.patient_ids)) if inner else 0,
        n_validation_patients=len(patients),
        seconds=round(trained.seconds, 1),
        channels_last=trained.channels_last,
        precision_probe=trained.precision_probe,
        precision_fallback=trained.precision_fallback,
        skipped_steps=trained.skipped_steps,
    )


def write_fold_outputs(
    paths: RunPaths, fold: int, selection: Selection, data: FoldData, summary: FoldSummary
) -> None:
    """The fold's ``predictions.csv`` (selected, last-epoch, best-validation) and ``summary.json``."""
    patients, labels, _ = patient_level(data.validation, np.zeros(len(data.validation)))
    columns = {
        "probability": selection.selected.probabilities,
        "probability_last_epoch": selection.last.probabilities,
        "probability_best_validation": selection.best_validation.probabilities,
    }
    write_predictions(paths.fold_predictions(fold), fold, patients, labels, columns)  # type: ignore[arg-type]
    write_json_atomic(paths.fold_summary(fold), summary.as_json())
