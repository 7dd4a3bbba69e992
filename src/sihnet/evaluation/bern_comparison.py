"""Model vs the radiologists' Bern score on the same patients: paired, with confidence intervals."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from sihnet.atomic import write_atomic
from sihnet.bern import score_fields
from sihnet.evaluation.clinical import incremental_value
from sihnet.evaluation.operating_points import MODEL_RULES, confusion, cross_fitted
from sihnet.evaluation.statistics import (
    auroc_ci,
    bootstrap_auroc_ci,
    bootstrap_difference_ci,
    delong_test,
)

log = logging.getLogger(__name__)
BOOTSTRAP_RESAMPLES = 2000
NOTES = {
    "patients": "patients with a complete Bern score; model and Bern on the same patients",
    "delong_p": "paired DeLong test of model vs Bern AUROC (two-sided)",
    "bootstrap": "stratified BCa bootstrap, {} resamples, seed {}",
    "operating_points": "model thresholds chosen on the other folds' out-of-fold "
    "predictions, applied to each held-out fold, counts pooled; Wilson 95% CIs",
}


@dataclasses.dataclass(frozen=True)
class BernComparison:
    """The ``bern`` section of ``metrics.json``: model vs Bern score on the same patients.

    The AUROC fields are None (and left out of the JSON) when fewer than two patients of a class
    have a complete Bern score.
    """

    n_patients: int
    n_positive: int
    n_bern_incomplete: int
    n_without_bern: int
    auroc_bern: float | None = None
    auroc_bern_ci95: list[float] | None = None
    auroc_bern_bootstrap_ci95: list[float] | None = None
    auroc_model: float | None = None
    auroc_model_ci95: list[float] | None = None
    auroc_model_bootstrap_ci95: list[float] | None = None
    auroc_difference: float | None = None
    auroc_difference_bootstrap_ci95: list[float] | None = None
    delong_p: float | None = None
    operating_points: list[dict[str, Any]] | None = None
    incremental_value: dict[str, Any] | None = None
    notes: dict[str, str] | None = None

    @property
    def compared(self) -> bool:
        return self.auroc_bern is not None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def compare_with_bern(
    patients: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    folds: np.ndarray,
    bern_fields: Mapping[str, Mapping[str, str]],
    seed: int = 0,
) -> BernComparison | None:
    """Paired comparison of out-of-fold probabilities with the Bern score.

    Args:
        patients, labels, probabilities, folds: the out-of-fold predictions, one entry per patient.
        bern_fields: patient_id -> Bern manifest fields (text).
        seed: seed of the bootstrap.

    Returns:
        None when no patient has a Bern field; else the Bern and model AUROC on the patients whose
        Bern score is complete (DeLong and stratified BCa bootstrap CIs), the paired DeLong test
        and the operating-point table.
    """
    scores = {p: score_fields(bern_fields[p]) for p in patients if p in bern_fields}
    if not scores:
        return None
    keep = np.array([p in scores and scores[p].complete for p in patients])
    y, model, fold = labels[keep], probabilities[keep], folds[keep]
    bern = np.array(
        [scores[p].score_min for p, k in zip(patients, keep, strict=True) if k], dtype=float
    )
    incomplete = sum(not s.complete for s in scores.values())
    counts = BernComparison(int(keep.sum()), int(y.sum()), incomplete, len(patients) - len(scores))
    if min(int(y.sum()), int((1 - y).sum())) < 2:
        log.warning(
            "Bern comparison skipped: fewer than two patients of a class have a complete score"
        )
        return counts
    bern_estimate, model_estimate = auroc_ci(y, bern), auroc_ci(y, model)
    difference, p_value = delong_test(y, model, bern)
    points = [cross_fitted(name, rule, y, model, fold) for name, rule in MODEL_RULES.items()]
    points += [confusion(f"Bern >= {t}", y, bern >= t, (float(t),)) for t in (3, 5)]
    return dataclasses.replace(
        counts,
        auroc_bern=bern_estimate.auroc,
        auroc_bern_ci95=[bern_estimate.ci_low, bern_estimate.ci_high],
        auroc_bern_bootstrap_ci95=list(bootstrap_auroc_ci(y, bern, BOOTSTRAP_RESAMPLES, seed=seed)),
        auroc_model=model_estimate.auroc,
        auroc_model_ci95=[model_estimate.ci_low, model_estimate.ci_high],
        auroc_model_bootstrap_ci95=list(
            bootstrap_auroc_ci(y, model, BOOTSTRAP_RESAMPLES, seed=seed)
        ),
        auroc_difference=difference,
        auroc_difference_bootstrap_ci95=list(
            bootstrap_difference_ci(y, model, bern, BOOTSTRAP_RESAMPLES, seed=seed)
        ),
        delong_p=p_value,
        operating_points=[p.as_dict() for p in points if p is not None],
        incremental_value=_incremental(y, bern, model, fold, seed),
        notes={**NOTES, "bootstrap": NOTES["bootstrap"].format(BOOTSTRAP_RESAMPLES, seed)},
    )


def _incremental(
    labels: np.ndarray, bern: np.ndarray, model: np.ndarray, folds: np.ndarray, seed: int
) -> dict[str, Any] | None:
    value = incremental_value(labels, bern, model, folds, seed)
    return None if value is None else value.as_json()


def plot_roc_vs_bern(
    path: Path, labels: np.ndarray, model: np.ndarray, bern: np.ndarray, section: BernComparison
) -> None:
    """Both ROC curves on one plot, with the Bern >= 3 and >= 5 operating points marked."""
    figure = Figure(figsize=(5.5, 5.5))
    axis = figure.subplots()
    fpr, tpr, _ = roc_curve(labels, model)
    axis.plot(fpr, tpr, lw=2, label=f"model, pooled OOF (AUROC {section.auroc_model:.3f})")
    fpr, tpr, _ = roc_curve(labels, bern)
    axis.plot(
        fpr,
        tpr,
        lw=2,
        label=f"Bern score (AUROC {section.auroc_bern:.3f})",
    )
    for point in section.operating_points or []:
        if point["operating_point"].startswith("Bern"):
            axis.plot(1 - point["specificity"], point["sensitivity"], "o", color="C1")
            axis.annotate(
                point["operating_point"],
                (1 - point["specificity"], point["sensitivity"]),
                textcoords="offset points",
                xytext=(6, -10),
                fontsize=8,
            )
    axis.plot([0, 1], [0, 1], color="0.7", lw=1)
    axis.set(
        xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), aspect="equal"
    )
    axis.set_title(
        f"Model vs Bern score (n = {section.n_patients}, DeLong p = {section.delong_p:.3f})",
        fontsize=10,
    )
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    write_atomic(path, lambda temp: figure.savefig(temp, format="png", dpi=120))


def bern_scores_for(
    patients: list[str], bern_fields: Mapping[str, Mapping[str, str]]
) -> np.ndarray:
    """Complete Bern scores aligned with ``patients`` (NaN where missing or partial)."""
    out = np.full(len(patients), np.nan)
    for i, patient in enumerate(patients):
        if patient in bern_fields:
            score = score_fields(bern_fields[patient])
            if score.complete:
                out[i] = score.score_min
    return out
