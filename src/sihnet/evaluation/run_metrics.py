"""``run_evaluation``: merge whatever folds a run holds into OOF predictions, metrics and plots.

Writes ``oof_predictions.csv``, ``metrics.json`` (per-fold and pooled AUROC, calibration, and
the comparison with the Bern score when the manifest had Bern columns), ``roc.png``,
``reliability.png`` and ``roc_vs_bern.png``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_curve

from sihnet.atomic import write_atomic, write_json_atomic
from sihnet.data.patients import auroc_or_nan
from sihnet.errors import SihnetError
from sihnet.evaluation.auto_bern import auto_bern_section, reader_section
from sihnet.evaluation.bern_comparison import (
    BernComparison,
    bern_scores_for,
    compare_with_bern,
    plot_roc_vs_bern,
)
from sihnet.evaluation.clinical import calibration_intercept_slope, decision_curve
from sihnet.evaluation.operating_points import fixed_thresholds
from sihnet.evaluation.statistics import auroc_ci, bootstrap_auroc_ci
from sihnet.paths import RunPaths
from sihnet.schemas import CohortReaders, FoldSummary, PredictionTable, read_json_as

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Brier score, calibration intercept and slope (logistic recalibration; 0 and 1 when
    calibrated) and a quantile-binned reliability curve of probabilities."""

    brier: float
    intercept: float
    slope: float
    reliability_mean_predicted: list[float]
    reliability_fraction_positive: list[float]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RunMetrics:
    """``metrics.json`` of a run (README "Run folder"): per-fold and pooled AUROCs of the selected
    checkpoints, the unbiased last-epoch and the optimistic best-validation figures beside them,
    calibration, and the comparison with the Bern score when the manifest had Bern columns."""

    selection: str
    folds_evaluated: list[int]
    folds_total: int
    n_patients: int
    n_positive: int
    excluded_indeterminate: int
    excluded_slec: int
    auroc_folds: list[float]
    auroc_mean: float
    auroc_std: float
    auroc_pooled: float
    auroc_pooled_ci95: list[float]
    auroc_pooled_bootstrap_ci95: list[float]
    selected_epochs: list[int]
    auroc_last_epoch_folds: list[float]
    auroc_last_epoch_mean: float
    auroc_last_epoch_pooled: float
    auroc_last_epoch_pooled_ci95: list[float]
    auroc_best_validation_folds: list[float]
    auroc_best_validation_mean: float
    calibration: Calibration
    decision_curve: dict[str, Any]
    bern: BernComparison | None
    notes: dict[str, str]
    auto_bern: dict[str, Any] | None = None  # multi-task runs (sihnet.evaluation.auto_bern)
    reader: dict[str, Any] | None = (
        None  # measured runs (sihnet.evaluation.auto_bern.reader_section)
    )
    ceiling: dict[str, Any] | None = None  # a whole synthetic cohort's (RUN/cohort_ceiling.json)

    @property
    def folds_missing(self) -> list[int]:
        return sorted(set(range(self.folds_total)) - set(self.folds_evaluated))

    def as_json(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["calibration"] = self.calibration.as_json()
        values["folds_missing"] = self.folds_missing
        if self.auto_bern is None:
            del values["auto_bern"]
        if self.ceiling is None:
            del values["ceiling"]
        if self.bern is None:
            del values["bern"]
        else:
            values["bern"] = self.bern.as_json()
        return values


NOTES = {
    "auroc_std": "sample standard deviation (ddof=1) over folds",
    "auroc_pooled_ci95": "DeLong 95% CI of the pooled out-of-fold AUROC",
    "auroc_pooled_bootstrap_ci95": "stratified BCa bootstrap 95% CI (2,000 resamples)",
    "decision_curve": "net benefit at threshold probabilities; on the patients with a complete "
    "Bern score when the manifest has Bern columns, else on all",
    "auroc_best_validation": "checkpoint picked on the very fold it is scored on "
    "(the paper's protocol): optimistic, shown for comparison only",
}


def _auroc(table: PredictionTable, column: str) -> float:
    return auroc_or_nan(table.labels, table.scores[column])


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the finite values."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan


def _pooled(table: PredictionTable, column: str) -> tuple[float, list[float]]:
    labels, scores = table.labels, table.scores[column]
    if min((labels == 0).sum(), (labels == 1).sum()) < 2:
        return _auroc(table, column), [math.nan, math.nan]
    estimate = auroc_ci(labels, scores)
    return estimate.auroc, [estimate.ci_low, estimate.ci_high]


def read_fold_tables(
    paths: RunPaths, folds: list[int], measured: bool = False
) -> dict[int, PredictionTable]:
    """Every ``fold_K/predictions.csv``; for a measured run, its ``probability`` is the run's
    (``measured_predictions.csv``: fused) with ``probability_network`` and ``probability_measured``
    beside the network's other columns. A missing or damaged file is one line naming it."""
    tables = {k: PredictionTable.read(paths.fold_predictions(k)) for k in folds}
    if not measured:
        return tables
    for k, table in tables.items():
        fused = PredictionTable.read(paths.fold_measured_predictions(k))
        if fused.patient_ids != table.patient_ids:
            raise SihnetError(
                f"fold {k}: {paths.fold_measured_predictions(k).name} holds other patients"
            )
        tables[k] = dataclasses.replace(table, scores={**table.scores, **fused.scores})
    return tables


def _fold_metrics(
    folds: dict[int, PredictionTable], pooled: PredictionTable, seed: int
) -> dict[str, Any]:
    present = list(folds)
    auroc_folds = [_auroc(folds[k], "probability") for k in present]
    last_folds = [_auroc(folds[k], "probability_last_epoch") for k in present]
    best_folds = [_auroc(folds[k], "probability_best_validation") for k in present]
    mean, std = _mean_std(auroc_folds)
    pooled_auroc, pooled_ci = _pooled(pooled, "probability")
    last_pooled, last_ci = _pooled(pooled, "probability_last_epoch")
    labels, scores = pooled.labels, pooled.probability
    bootstrap = [math.nan, math.nan]
    if min((labels == 0).sum(), (labels == 1).sum()) >= 2:
        bootstrap = list(bootstrap_auroc_ci(labels, scores, 2000, seed=seed))
    return {
        "auroc_folds": auroc_folds,
        "auroc_mean": mean,
        "auroc_std": std,
        "auroc_pooled": pooled_auroc,
        "auroc_pooled_ci95": pooled_ci,
        "auroc_pooled_bootstrap_ci95": bootstrap,
        "auroc_last_epoch_folds": last_folds,
        "auroc_last_epoch_mean": _mean_std(last_folds)[0],
        "auroc_last_epoch_pooled": last_pooled,
        "auroc_last_epoch_pooled_ci95": last_ci,
        "auroc_best_validation_folds": best_folds,
        "auroc_best_validation_mean": _mean_std(best_folds)[0],
    }


def _decision_curve(pooled: PredictionTable, bern_fields: dict[str, Any]) -> dict[str, Any]:
    labels, probabilities = pooled.labels, pooled.probability
    bern = bern_scores_for(list(pooled.patient_ids), bern_fields)
    known = ~np.isnan(bern)
    if known.any() and len(set(labels[known].tolist())) == 2:
        return decision_curve(labels[known], probabilities[known], bern[known])
    return decision_curve(labels, probabilities)


def _bern_section(
    paths: RunPaths, pooled: PredictionTable, bern_fields: dict[str, Any], seed: int
) -> BernComparison | None:
    patients, labels, probabilities = list(pooled.patient_ids), pooled.labels, pooled.probability
    section = compare_with_bern(patients, labels, probabilities, pooled.folds, bern_fields, seed)
    if section is not None and section.compared:
        bern = bern_scores_for(patients, bern_fields)
        known = ~np.isnan(bern)
        plot_roc_vs_bern(
            paths.roc_vs_bern_plot, labels[known], probabilities[known], bern[known], section
        )
    return section


def run_evaluation(paths: RunPaths) -> RunMetrics:
    """Merge the run's completed folds and write ``oof_predictions.csv``, ``metrics.json``, the plots.

    Folds not finished yet are left out and named (``folds_missing``; a warning).
    """
    paths.require_run("evaluate")
    config = paths.read_config()
    n_folds = config.cross_validation.folds
    present = paths.finished_folds(n_folds)
    if not present:
        raise SihnetError(f"{paths.root.name} holds no completed fold yet")
    if len(present) < n_folds:
        log.warning(
            "folds %s of %d are not finished; evaluated without them",
            sorted(set(range(n_folds)) - set(present)),
            n_folds,
        )
    folds = read_fold_tables(paths, present, config.measured.enabled)
    summaries = {k: FoldSummary.read(paths.fold_summary(k)) for k in present}
    pooled = PredictionTable.concatenate([folds[k] for k in present])
    pooled.write(paths.oof_predictions)
    cohort = paths.read_cohort()
    labels, probabilities = pooled.labels, pooled.probability
    metrics = RunMetrics(
        selection=config.training.selection,
        folds_evaluated=present,
        folds_total=n_folds,
        n_patients=len(pooled),
        n_positive=int(labels.sum()),
        excluded_indeterminate=cohort.get("excluded_indeterminate", 0),
        excluded_slec=cohort.get("excluded_slec", 0),
        selected_epochs=[summaries[k].selected_epoch for k in present],
        calibration=calibration(labels, probabilities),
        decision_curve=_decision_curve(pooled, cohort.get("bern", {})),
        bern=_bern_section(paths, pooled, cohort.get("bern", {}), config.seed),
        notes=NOTES,
        auto_bern=auto_bern_section(paths, present, cohort.get("bern", {})),
        reader=reader_section(paths, pooled, cohort.get("bern", {})),
        ceiling=read_json_as(paths.cohort_ceiling, CohortReaders)
        if paths.cohort_ceiling.is_file()
        else None,
        **_fold_metrics(folds, pooled, config.seed),
    )
    plot_reliability(paths.reliability_plot, metrics.calibration)
    write_json_atomic(paths.metrics, metrics.as_json())
    if len(set(labels.tolist())) == 2:  # the thresholds predict applies to new patients
        write_json_atomic(paths.operating_points, fixed_thresholds(labels, probabilities))
    else:
        paths.operating_points.unlink(missing_ok=True)
    curves = {k: (t.labels, t.probability) for k, t in folds.items()}
    plot_roc(paths.roc_plot, curves, (labels, probabilities))
    return metrics


def plot_roc(
    path: Path,
    folds: dict[int, tuple[np.ndarray, np.ndarray]],
    pooled: tuple[np.ndarray, np.ndarray],
    pooled_label: str = "pooled OOF",
    title: str = "ROC per validation fold",
) -> None:
    """One ROC curve per validation fold plus the pooled OOF curve (the paper's Figure 2); each
    curve given as ``(labels, scores)``."""
    figure = Figure(figsize=(5.5, 5.5))
    axis = figure.subplots()
    for fold, (labels, scores) in folds.items():
        if len(set(labels.tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        auroc = auroc_or_nan(labels, scores)
        axis.plot(fpr, tpr, lw=1.5, label=f"fold {fold} (AUROC {auroc:.3f})")
    labels, scores = pooled
    if len(set(labels.tolist())) == 2:
        fpr, tpr, _ = roc_curve(labels, scores)
        auroc = auroc_or_nan(labels, scores)
        axis.plot(fpr, tpr, "k--", lw=2, label=f"{pooled_label} (AUROC {auroc:.3f})")
    axis.plot([0, 1], [0, 1], color="0.7", lw=1)
    axis.set(
        xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), aspect="equal"
    )
    axis.set_title(title)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    write_atomic(path, lambda temp: figure.savefig(temp, format="png", dpi=120))


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = 5) -> Calibration:
    """Brier score and a quantile-binned reliability curve of the out-of-fold probabilities."""
    mean_predicted: list[float] = []
    fraction_positive: list[float] = []
    if len(set(labels.tolist())) == 2:
        fraction, predicted = calibration_curve(
            labels, probabilities, n_bins=bins, strategy="quantile"
        )
        mean_predicted, fraction_positive = predicted.tolist(), fraction.tolist()
    intercept, slope = calibration_intercept_slope(labels, probabilities)
    return Calibration(
        brier=float(brier_score_loss(labels, probabilities)),
        intercept=intercept,
        slope=slope,
        reliability_mean_predicted=mean_predicted,
        reliability_fraction_positive=fraction_positive,
    )


def plot_reliability(path: Path, section: Calibration) -> None:
    """Reliability diagram of the pooled out-of-fold probabilities."""
    figure = Figure(figsize=(4.5, 4.5))
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], color="0.7", lw=1)
    axis.plot(section.reliability_mean_predicted, section.reliability_fraction_positive, "o-")
    axis.set(
        xlabel="mean predicted probability",
        ylabel="fraction with fistula",
        xlim=(0, 1),
        ylim=(0, 1),
        aspect="equal",
    )
    axis.set_title(f"Reliability (Brier {section.brier:.3f})", fontsize=10)
    figure.tight_layout()
    write_atomic(path, lambda temp: figure.savefig(temp, format="png", dpi=110))
