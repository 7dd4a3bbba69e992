"""Operating points of a screening tool: sensitivity, specificity, PPV, NPV with Wilson CIs.

The model's thresholds (Youden; sensitivity fixed at 90% or 95%) are chosen on training folds
only: for each held-out fold, on the out-of-fold predictions of the *other* folds' patients, then
applied to the held-out fold; the confusion counts are pooled over folds. The Bern rules (>= 3,
>= 5) are fixed and need no fitting.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from sihnet.evaluation.statistics import wilson_ci


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """Confusion counts of one rule and the proportions with Wilson 95% CIs."""

    name: str
    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int
    thresholds: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        tp, fp, tn, fn = (
            self.true_positive,
            self.false_positive,
            self.true_negative,
            self.false_negative,
        )
        out: dict[str, Any] = {
            "operating_point": self.name,
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
        }
        for key, hits, total in (
            ("sensitivity", tp, tp + fn),
            ("specificity", tn, tn + fp),
            ("ppv", tp, tp + fp),
            ("npv", tn, tn + fn),
        ):
            out[key] = hits / total if total else math.nan
            out[f"{key}_ci95"] = list(wilson_ci(hits, total))
        out["thresholds"] = list(self.thresholds)
        return out


def confusion(
    name: str, labels: np.ndarray, positive: np.ndarray, thresholds: tuple[float, ...] = ()
) -> OperatingPoint:
    """Counts of a binary decision ``positive`` (n,) against ``labels`` (n,)."""
    labels, positive = np.asarray(labels).astype(bool), np.asarray(positive).astype(bool)
    return OperatingPoint(
        name,
        int((positive & labels).sum()),
        int((positive & ~labels).sum()),
        int((~positive & ~labels).sum()),
        int((~positive & labels).sum()),
        thresholds,
    )


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (predict positive at >=) maximising sensitivity + specificity - 1."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return float(thresholds[int(np.argmax(tpr - fpr))])


def sensitivity_threshold(labels: np.ndarray, scores: np.ndarray, sensitivity: float) -> float:
    """The highest threshold whose sensitivity is at least ``sensitivity`` (best specificity then)."""
    _, tpr, thresholds = roc_curve(labels, scores)
    return float(thresholds[int(np.argmax(tpr >= sensitivity - 1e-12))])


ThresholdRule = Callable[[np.ndarray, np.ndarray], float]

MODEL_RULES: dict[str, ThresholdRule] = {
    "model Youden": youden_threshold,
    "model sensitivity 90%": lambda y, s: sensitivity_threshold(y, s, 0.90),
    "model sensitivity 95%": lambda y, s: sensitivity_threshold(y, s, 0.95),
}


def cross_fitted(
    name: str, rule: ThresholdRule, labels: np.ndarray, scores: np.ndarray, folds: np.ndarray
) -> OperatingPoint | None:
    """Apply ``rule`` fitted on the other folds to each fold; pool the counts.

    Returns None when fewer than two folds exist or a training side lacks a class.
    """
    labels, scores, folds = np.asarray(labels), np.asarray(scores), np.asarray(folds)
    if len(set(folds.tolist())) < 2:
        return None
    positive = np.zeros(labels.shape, dtype=bool)
    thresholds = []
    for fold in sorted(set(folds.tolist())):
        held_out = folds == fold
        if len(set(labels[~held_out].tolist())) < 2:
            return None
        threshold = rule(labels[~held_out], scores[~held_out])
        thresholds.append(threshold)
        positive[held_out] = scores[held_out] >= threshold
    return confusion(name, labels, positive, tuple(thresholds))


def fixed_thresholds(labels: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, float]]:
    """Each model rule fitted on all out-of-fold predictions: the thresholds for new patients.

    The sensitivity and specificity given beside each are measured on the same predictions the
    threshold was fitted on (optimistic); the cross-fitted table of ``metrics.json`` is the
    honest estimate.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    out: dict[str, dict[str, float]] = {}
    for name, rule in MODEL_RULES.items():
        # roc_curve's first threshold is +inf ("nobody positive"): as a probability that is 1.0
        threshold = float(np.clip(rule(labels, scores), 0.0, 1.0))
        point = confusion(name, labels, scores >= threshold, (threshold,)).as_dict()
        out[name] = {
            "threshold": float(threshold),
            "sensitivity_oof": float(point["sensitivity"]),
            "specificity_oof": float(point["specificity"]),
        }
    return out
