"""The one patient-level aggregation: a patient's score is the mean over their scans."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def patient_means(patient_ids: Sequence[str], values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The mean of each patient's scan values.

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
    sums = np.zeros((len(order), *values.shape[1:]))
    np.add.at(sums, index, values)
    counts = np.bincount(index, minlength=len(order)).reshape(-1, *([1] * (values.ndim - 1)))
    return order, sums / np.maximum(counts, 1)
