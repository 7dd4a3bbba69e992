"""Clinical usefulness beyond the AUROC: decision curves, calibration intercept and slope, and the
incremental value of the model over the Bern score.

* **Decision curve** (Vickers & Elkin, Med Decis Making 2006): the net benefit of acting on a
  rule at a threshold probability t is TP/n - FP/n * t/(1-t); the model acts at p >= t, the
  Bern rule at score >= 3 whatever t, "treat all" on everyone, "treat none" on no one (0).
* **Calibration** (logistic recalibration, Van Calster et al., J Clin Epidemiol 2016): the slope b
  of logit P(y) = a + b logit(p), and the intercept a of logit P(y) = a + logit(p) (calibration in
  the large); 1 and 0 when calibrated.
* **Incremental value**: does the model add to the Bern score? Two logistic regressions — Bern
  alone, Bern + logit(model probability) — cross-fitted over the run's folds (each fold's
  predictions come from a regression fitted on the other folds only), compared by their pooled
  AUROC with the paired DeLong test and a paired bootstrap CI of the difference.

scikit-learn's logistic regression (unpenalised) and scipy's root finder do the fitting.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from sihnet.evaluation.statistics import auroc_ci, bootstrap_difference_ci, delong_test

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


def net_benefit(labels: np.ndarray, treat: np.ndarray, threshold: float) -> float:
    """Net benefit of treating ``treat`` (bool, n) at threshold probability ``threshold``."""
    labels, treat = np.asarray(labels).astype(bool), np.asarray(treat).astype(bool)
    n = len(labels)
    true_positive, false_positive = (treat & labels).sum(), (treat & ~labels).sum()
    return float(true_positive / n - false_positive / n * threshold / (1 - threshold))


def decision_curve(
    labels: np.ndarray,
    probabilities: np.ndarray,
    bern: np.ndarray | None = None,
    thresholds: tuple[float, ...] = THRESHOLDS,
) -> dict[str, Any]:
    """Net benefit of the model, of Bern >= 3 (when given), of treat-all and treat-none.

    Returns:
        ``{"thresholds": [...], "model": [...], "treat_all": [...], "treat_none": [...],
        "bern_ge_3": [...] (when ``bern`` is given), "n_patients": n}``.
    """
    labels = np.asarray(labels)
    curve: dict[str, Any] = {
        "thresholds": list(thresholds),
        "model": [net_benefit(labels, probabilities >= t, t) for t in thresholds],
        "treat_all": [net_benefit(labels, np.ones(len(labels), bool), t) for t in thresholds],
        "treat_none": [0.0 for _ in thresholds],
        "n_patients": len(labels),
    }
    if bern is not None:
        curve["bern_ge_3"] = [net_benefit(labels, bern >= 3, t) for t in thresholds]
    return curve


def _logit(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(probabilities, 1e-6, 1 - 1e-6)), dtype=np.float64)


def calibration_intercept_slope(
    labels: np.ndarray, probabilities: np.ndarray
) -> tuple[float, float]:
    """Calibration intercept (in the large, slope fixed at 1) and slope of the probabilities."""
    labels = np.asarray(labels, dtype=np.float64)
    if len(set(labels.tolist())) < 2:
        return math.nan, math.nan
    offset = _logit(probabilities)
    intercept = brentq(lambda a: float(np.sum(labels - expit(a + offset))), -30.0, 30.0)
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(offset[:, None], labels)
    return float(intercept), float(model.coef_[0, 0])


@dataclasses.dataclass(frozen=True)
class IncrementalValue:
    """Bern alone vs Bern + model, cross-fitted logistic regressions on the same patients."""

    n_patients: int
    auroc_bern_alone: float
    auroc_bern_plus_model: float
    auroc_difference: float
    auroc_difference_bootstrap_ci95: list[float]
    delong_p: float
    note: str = (
        "logistic regressions cross-fitted over the run's folds: each fold's predictions come "
        "from a regression fitted on the other folds only"
    )

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cross_fitted_regression(
    features: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    """Out-of-fold predictions of an unpenalised logistic regression: (n,) probabilities.

    Args:
        features: (n, k); labels: (n,) 0/1; folds: (n,) the fold each row is predicted in.
    """
    predictions = np.zeros(len(labels))
    for fold in sorted(set(folds.tolist())):
        held_out = folds == fold
        model = LogisticRegression(C=np.inf, max_iter=1000)
        model.fit(features[~held_out], labels[~held_out])
        predictions[held_out] = model.predict_proba(features[held_out])[:, 1]
    return predictions


def incremental_value(
    labels: np.ndarray,
    bern: np.ndarray,
    probabilities: np.ndarray,
    folds: np.ndarray,
    seed: int = 0,
) -> IncrementalValue | None:
    """Does the model add to the Bern score? (module docstring). None with fewer than two folds or a
    training side lacking a class."""
    labels, folds = np.asarray(labels), np.asarray(folds)
    if len(set(folds.tolist())) < 2 or any(
        len(set(labels[folds != k].tolist())) < 2 for k in set(folds.tolist())
    ):
        return None
    alone = cross_fitted_regression(np.asarray(bern, float)[:, None], labels, folds)
    both_features = np.column_stack([np.asarray(bern, float), _logit(probabilities)])
    both = cross_fitted_regression(both_features, labels, folds)
    difference, p_value = delong_test(labels, both, alone)
    low, high = bootstrap_difference_ci(labels, both, alone, 2000, seed=seed)
    return IncrementalValue(
        n_patients=len(labels),
        auroc_bern_alone=auroc_ci(labels, alone).auroc,
        auroc_bern_plus_model=auroc_ci(labels, both).auroc,
        auroc_difference=float(difference),
        auroc_difference_bootstrap_ci95=[float(low), float(high)],
        delong_p=float(p_value),
    )
