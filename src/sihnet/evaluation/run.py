"""``run_evaluation``: merge whatever folds a run holds into OOF predictions, metrics and plots.

Writes ``oof_predictions.csv``, ``metrics.json`` (per-fold and pooled AUROC, calibration, and
the comparison with the Bern score when the manifest had Bern columns), ``roc.png``,
``reliability.png`` and ``roc_vs_bern.png``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from sihnet.atomic import write_atomic, write_json_atomic, write_text_atomic
from sihnet.errors import SihnetError
from sihnet.evaluation.bern_comparison import bern_scores_for, compare_with_bern, plot_roc_vs_bern
from sihnet.evaluation.statistics import auroc_ci
from sihnet.paths import RunPaths

log = logging.getLogger(__name__)

OOF_COLUMNS = ("patient_id", "fold", "label", "probability")


def read_fold_predictions(path: Path) -> list[dict[str, str]]:
    """Rows of ``fold_K/predictions.csv``."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _auroc(rows: list[dict[str, str]], column: str) -> float:
    labels = [int(r["label"]) for r in rows]
    if len(set(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, [float(r[column]) for r in rows]))


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the finite values."""
    finite = _finite(values)
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan


def _pooled(rows: list[dict[str, str]], column: str) -> tuple[float, list[float]]:
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r[column]) for r in rows])
    if min((labels == 0).sum(), (labels == 1).sum()) < 2:
        return _auroc(rows, column), [math.nan, math.nan]
    estimate = auroc_ci(labels, scores)
    return estimate.auroc, [estimate.ci_low, estimate.ci_high]


def plot_roc(
    path: Path,
    folds: dict[int, list[dict[str, str]]],
    pooled: list[dict[str, str]],
    pooled_label: str = "pooled OOF",
    title: str = "ROC per validation fold",
) -> None:
    """One ROC curve per validation fold plus the pooled OOF curve (the paper's Figure 2)."""
    figure = Figure(figsize=(5.5, 5.5))
    axis = figure.subplots()
    for fold, rows in folds.items():
        labels = [int(r["label"]) for r in rows]
        if len(set(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, [float(r["probability"]) for r in rows])
        axis.plot(fpr, tpr, lw=1.5, label=f"fold {fold} (AUROC {_auroc(rows, 'probability'):.3f})")
    labels = [int(r["label"]) for r in pooled]
    if len(set(labels)) == 2:
        fpr, tpr, _ = roc_curve(labels, [float(r["probability"]) for r in pooled])
        axis.plot(
            fpr,
            tpr,
            "k--",
            lw=2,
            label=f"{pooled_label} (AUROC {_auroc(pooled, 'probability'):.3f})",
        )
    axis.plot([0, 1], [0, 1], color="0.7", lw=1)
    axis.set(
        xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), aspect="equal"
    )
    axis.set_title(title)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    write_atomic(path, lambda temp: figure.savefig(temp, format="png", dpi=120))


def run_evaluation(paths: RunPaths) -> dict[str, Any]:
    """Merge the run's completed folds and write ``oof_predictions.csv``, ``metrics.json``, ``roc.png``.

    Returns:
        The metrics (also written to ``metrics.json``).
    """
    if not paths.config.is_file():
        raise SihnetError(f"{paths.root} is not a sihnet run folder (no config.yaml)")
    config = yaml.safe_load(paths.config.read_text())
    n_folds = int(config["cross_validation"]["folds"])
    present = [k for k in range(n_folds) if paths.fold_summary(k).is_file()]
    if not present:
        raise SihnetError(f"{paths.root.name} holds no completed fold yet")
    folds = {k: read_fold_predictions(paths.fold_predictions(k)) for k in present}
    summaries = {k: json.loads(paths.fold_summary(k).read_text()) for k in present}
    pooled = [row for k in present for row in folds[k]]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OOF_COLUMNS)
    for row in pooled:
        writer.writerow([row[c] for c in OOF_COLUMNS])
    write_text_atomic(paths.oof_predictions, buffer.getvalue())

    auroc_folds = [_auroc(folds[k], "probability") for k in present]
    last_folds = [_auroc(folds[k], "probability_last_epoch") for k in present]
    best_validation_folds = [_auroc(folds[k], "probability_best_validation") for k in present]
    mean, std = _mean_std(auroc_folds)
    pooled_auroc, pooled_ci = _pooled(pooled, "probability")
    last_pooled, last_ci = _pooled(pooled, "probability_last_epoch")
    cohort = json.loads(paths.cohort.read_text()) if paths.cohort.is_file() else {}
    metrics: dict[str, Any] = {
        "selection": config["training"]["selection"],
        "folds_evaluated": present,
        "folds_total": n_folds,
        "n_patients": len(pooled),
        "n_positive": sum(int(r["label"]) for r in pooled),
        "excluded_indeterminate": cohort.get("excluded_indeterminate", 0),
        "excluded_slec": cohort.get("excluded_slec", 0),
        "auroc_folds": auroc_folds,
        "auroc_mean": mean,
        "auroc_std": std,
        "auroc_pooled": pooled_auroc,
        "auroc_pooled_ci95": pooled_ci,
        "selected_epochs": [summaries[k]["selected_epoch"] for k in present],
        "auroc_last_epoch_folds": last_folds,
        "auroc_last_epoch_mean": _mean_std(last_folds)[0],
        "auroc_last_epoch_pooled": last_pooled,
        "auroc_last_epoch_pooled_ci95": last_ci,
        "auroc_best_validation_folds": best_validation_folds,
        "auroc_best_validation_mean": _mean_std(best_validation_folds)[0],
        "notes": {
            "auroc_std": "sample standard deviation (ddof=1) over folds",
            "auroc_pooled_ci95": "DeLong 95% CI of the pooled out-of-fold AUROC",
            "auroc_best_validation": "checkpoint picked on the very fold it is scored on "
            "(the paper's protocol): optimistic, shown for comparison only",
        },
    }
    patients = [r["patient_id"] for r in pooled]
    labels = np.array([int(r["label"]) for r in pooled])
    probabilities = np.array([float(r["probability"]) for r in pooled])
    fold_of = np.array([int(r["fold"]) for r in pooled])
    metrics["calibration"] = calibration(labels, probabilities)
    plot_reliability(paths.reliability_plot, metrics["calibration"])
    bern_fields = cohort.get("bern", {})
    section = compare_with_bern(
        patients, labels, probabilities, fold_of, bern_fields, int(config.get("seed", 0))
    )
    if section is not None:
        metrics["bern"] = section
        if "auroc_bern" in section:
            bern = bern_scores_for(patients, bern_fields)
            known = ~np.isnan(bern)
            plot_roc_vs_bern(
                paths.roc_vs_bern_plot, labels[known], probabilities[known], bern[known], section
            )
    write_json_atomic(paths.metrics, metrics)
    plot_roc(paths.roc_plot, folds, pooled)
    return metrics


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = 5) -> dict[str, Any]:
    """Brier score and a quantile-binned reliability curve of the out-of-fold probabilities."""
    mean_predicted: list[float] = []
    fraction_positive: list[float] = []
    if len(set(labels.tolist())) == 2:
        fraction, predicted = calibration_curve(
            labels, probabilities, n_bins=bins, strategy="quantile"
        )
        mean_predicted, fraction_positive = predicted.tolist(), fraction.tolist()
    return {
        "brier": float(brier_score_loss(labels, probabilities)),
        "reliability_mean_predicted": mean_predicted,
        "reliability_fraction_positive": fraction_positive,
    }


def plot_reliability(path: Path, section: dict[str, Any]) -> None:
    """Reliability diagram of the pooled out-of-fold probabilities."""
    figure = Figure(figsize=(4.5, 4.5))
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], color="0.7", lw=1)
    axis.plot(section["reliability_mean_predicted"], section["reliability_fraction_positive"], "o-")
    axis.set(
        xlabel="mean predicted probability",
        ylabel="fraction with fistula",
        xlim=(0, 1),
        ylim=(0, 1),
        aspect="equal",
    )
    axis.set_title(f"Reliability (Brier {section['brier']:.3f})", fontsize=10)
    figure.tight_layout()
    write_atomic(path, lambda temp: figure.savefig(temp, format="png", dpi=110))
