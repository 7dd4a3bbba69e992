"""The one patient-level aggregation (a patient's score is the mean over their scans) and the AUROC
that training and evaluation report of it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score


def patient_means(patient_ids: Sequence[str], values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The mean of each patient's scan values, over the scans where a value is finite (a value
    not measured, NaN, is left out; NaN where no scan of the patient has one).

    Args:
        patient_ids: (N,) the patient of each scan.
        values: (N, ...) one value (or vector) per scan.

    Returns:
        ``(patients, means)``: the P patients in first-seen order and their means (P, ...).
    """
    values = np.asarray(values, dtype=np.float64)
    position = {p: i for i, p in enumerate(dict.fromkeys(patient_ids))}
    order = list(position)
    index = np.array([position[p] for p in patient_ids], dtype=int)
    finite = np.isfinite(values)
    sums = np.zeros((len(order), *values.shape[1:]))
    counts = np.zeros((len(order), *values.shape[1:]))
    np.add.at(sums, index, np.where(finite, values, 0.0))
    np.add.at(counts, index, finite.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return order, np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def auroc_or_nan(labels: np.ndarray, scores: np.ndarray) -> float:
    """scikit-learn AUROC, NaN when only one class is present."""
    if len(set(np.asarray(labels).tolist())) < 2:
        return math.nan
    return float(roc_auc_score(labels, scores))
