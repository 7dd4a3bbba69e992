"""The automatic Bern score of a multi-task run against the readers (``metrics.json["auto_bern"]``).

Per sign: AUROC of the predicted probability and Cohen's κ of the sign called at p ≥ 0.5 against
the reader. Per distance: MAE, Bland–Altman bias and 95% limits of agreement, ICC(2,1). For the
fistula: AUROC of the automatic and of the expected Bern score, and the expected score against the
readers' Bern score (paired DeLong) on the patients with a complete reader score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from sihnet.bern import BERN_PREDICTION_COLUMNS, HEAD_ITEMS
from sihnet.evaluation.bern_comparison import bern_scores_for
from sihnet.evaluation.statistics import auroc_ci, delong_test
from sihnet.paths import RunPaths
from sihnet.schemas import PredictionTable
from sihnet.tables import read_rows, write_table


def icc_2_1(a: np.ndarray, b: np.ndarray) -> float:
    """ICC(2,1) of two raters (Shrout & Fleiss: two-way random effects, absolute agreement,
    single measurement). Written here: scipy and scikit-learn have none, pingouin is not a
    dependency for one formula."""
    data = np.column_stack([a, b]).astype(float)
    n, k = data.shape
    if n < 2:
        return math.nan
    grand = data.mean()
    ms_rows = k * ((data.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    ms_cols = n * ((data.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    residual = data - data.mean(axis=1, keepdims=True) - data.mean(axis=0, keepdims=True) + grand
    ms_error = (residual**2).sum() / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    return float((ms_rows - ms_error) / denominator) if denominator > 0 else math.nan


def _auroc(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    if min(int(labels.sum()), int((1 - labels).sum())) < 2:  # DeLong needs two of each class
        return {"auroc": math.nan, "ci95": [math.nan, math.nan]}
    estimate = auroc_ci(labels, scores)
    return {"auroc": estimate.auroc, "ci95": [estimate.ci_low, estimate.ci_high]}


def _sign(predicted: np.ndarray, reader: np.ndarray) -> dict[str, Any]:
    known = np.isfinite(reader)
    truth, p = reader[known].astype(int), np.asarray(predicted, dtype=float)[known]
    kappa = cohen_kappa_score(truth, (p >= 0.5).astype(int)) if len(set(truth)) > 1 else math.nan
    return {"n": int(known.sum()), **_auroc(truth, p), "kappa": float(kappa)}


def _distance(predicted: np.ndarray, reader: np.ndarray) -> dict[str, Any]:
    known = np.isfinite(reader)
    difference = predicted[known] - reader[known]
    if difference.size < 2:
        return {"n": int(known.sum())}
    bias, sd = float(difference.mean()), float(difference.std(ddof=1))
    return {
        "n": int(known.sum()),
        "mae_mm": float(np.abs(difference).mean()),
        "bias_mm": bias,
        "limits_of_agreement_mm": [bias - 1.96 * sd, bias + 1.96 * sd],
        "icc_2_1": icc_2_1(predicted[known], reader[known]),
    }


def _fistula(rows: list[dict[str, str]], reader_fields: dict[str, Any]) -> dict[str, Any]:
    labels = np.array([int(r["label"]) for r in rows])
    automatic = np.array([float(r["auto_bern"]) for r in rows])
    expected = np.array([float(r["expected_bern"]) for r in rows])
    out = {"automatic": _auroc(labels, automatic), "expected": _auroc(labels, expected)}
    reader = bern_scores_for([r["patient_id"] for r in rows], reader_fields)
    known = np.isfinite(reader)
    if known.sum() >= 2 and len(set(labels[known].tolist())) == 2:
        difference, p = delong_test(labels[known], expected[known], reader[known])
        out["vs_reader"] = {
            "n": int(known.sum()),
            "reader": _auroc(labels[known], reader[known]),
            "expected_minus_reader": difference,
            "delong_p": p,
        }
    return out


def reader_section(
    paths: RunPaths, pooled: PredictionTable, reader_fields: dict[str, Any]
) -> dict[str, Any] | None:
    """A ``measured`` run's automatic Bern reader: each item's agreement with the manifest's
    readers (per sign the AUROC of the reader's continuous measure and Cohen's κ of its call; per
    distance MAE, Bland-Altman, ICC(2,1)), and the AUROC of the network alone and of the measured
    model alone beside the fused one; None for a run without the measured model. Its
    ``RUN/patient_measures.csv`` is checked against the one the folds were fitted from.

    Raises:
        SihnetError: the table missing, edited or damaged.
    """
    if not paths.read_config().measured.enabled:
        return None
    from sihnet.bern_reading import BY_NAME
    from sihnet.models.measurements import read_verified_measurements

    measures = read_verified_measurements(paths, sorted(set(pooled.folds.tolist())))
    patients = [p for p in pooled.patient_ids if p in measures]
    section: dict[str, Any] = {"n_patients": len(patients), "signs": {}, "distances": {}}

    def column(name: str, values: dict[str, dict[str, Any]]) -> np.ndarray:
        return np.array([float(values.get(p, {}).get(name, "") or "nan") for p in patients])

    reader = {p: reader_fields.get(p, {}) for p in patients}
    features = {p: {k: ("" if v is None else v) for k, v in measures[p].items()} for p in patients}
    for item in HEAD_ITEMS:
        truth = column(item.name, reader)
        if item.kind == "sign":
            measure, threshold = str(BY_NAME[item.name].measure), BY_NAME[item.name].threshold
            value = column(measure, features)
            known = np.isfinite(truth) & np.isfinite(value)
            entry = {"measure": measure, **_sign(value[known] >= threshold, truth[known])}
            entry.update({f"measure_{k}": v for k, v in _auroc(truth[known].astype(int), value[known]).items()}
                         if len(set(truth[known].tolist())) == 2 else {})  # fmt: skip
            section["signs"][item.name] = entry
        else:
            section["distances"][item.name] = _distance(column(item.name, features), truth)
    labels = pooled.labels
    for name in ("probability_network", "probability_measured"):
        if name in pooled.scores and len(set(labels.tolist())) == 2:
            section[f"auroc_{name.removeprefix('probability_')}"] = _auroc(
                labels, pooled.scores[name]
            )
    return section


def auto_bern_section(
    paths: RunPaths, folds: list[int], reader_fields: dict[str, Any]
) -> dict[str, Any] | None:
    """Pool the folds' ``bern_predictions.csv`` into ``oof_bern_predictions.csv`` and measure
    them against the readers; None for a run without Bern heads."""
    files = [paths.fold_bern_predictions(k) for k in folds]
    if not files or not all(f.is_file() for f in files):
        return None
    rows = [row for f in files for row in read_rows(f)]
    write_table(paths.oof_bern_predictions, BERN_PREDICTION_COLUMNS, rows)
    section: dict[str, Any] = {"n_patients": len(rows), "signs": {}, "distances": {}}
    for item in HEAD_ITEMS:
        name = item.name
        predicted = np.array([float(r[name]) for r in rows])
        reader = np.array(
            [float(reader_fields.get(r["patient_id"], {}).get(name, "") or "nan") for r in rows]
        )
        kind = "signs" if item.kind == "sign" else "distances"
        section[kind][name] = (_sign if item.kind == "sign" else _distance)(predicted, reader)
    section["fistula"] = _fistula(rows, reader_fields)
    return section
