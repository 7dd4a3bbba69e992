"""AUROC with DeLong confidence intervals and the paired DeLong test.

Hand-written because no maintained Python library offers DeLong's method (scikit-learn gives the
AUROC only); this is the fast algorithm of Sun & Xu (IEEE SPL 2014) on scipy's midranks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class AurocEstimate:
    """AUROC, its DeLong standard error and a two-sided confidence interval."""

    auroc: float
    standard_error: float
    ci_low: float
    ci_high: float


def delong_covariance(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of k scores on the same patients and their DeLong covariance.

    Args:
        labels: (n,) 0/1.
        scores: (k, n) or (n,); higher means more likely positive. Ties count one half.

    Returns:
        ``(aucs (k,), covariance (k, k))``.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positives, negatives = scores[:, labels], scores[:, ~labels]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two positive and two negative cases")
    rank_pos = stats.rankdata(positives, axis=1)
    rank_neg = stats.rankdata(negatives, axis=1)
    rank_all = stats.rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    aucs = rank_all[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2 * n)
    v_pos = (rank_all[:, :m] - rank_pos) / n  # structural components of the positives
    v_neg = 1 - (rank_all[:, m:] - rank_neg) / m  # and of the negatives
    covariance = np.atleast_2d(np.cov(v_pos)) / m + np.atleast_2d(np.cov(v_neg)) / n
    return aucs, covariance


def auroc_ci(labels: np.ndarray, scores: np.ndarray, level: float = 0.95) -> AurocEstimate:
    """AUROC with a DeLong (normal) confidence interval clipped to [0, 1]."""
    aucs, covariance = delong_covariance(labels, scores)
    se = float(np.sqrt(max(covariance[0, 0], 0.0)))
    z = float(stats.norm.ppf(0.5 + level / 2))
    auc = float(aucs[0])
    return AurocEstimate(auc, se, max(0.0, auc - z * se), min(1.0, auc + z * se))


def delong_test(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray
) -> tuple[float, float]:
    """Paired DeLong test of two scores on the same patients.

    Returns:
        ``(auroc_a - auroc_b, two-sided p-value)``.
    """
    aucs, covariance = delong_covariance(labels, np.vstack([scores_a, scores_b]))
    difference = float(aucs[0] - aucs[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    if variance <= 0:
        return difference, 1.0 if difference == 0 else 0.0
    z = difference / np.sqrt(variance)
    return difference, float(2 * stats.norm.sf(abs(z)))


def _auroc_of_samples(positives: np.ndarray, negatives: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney AUROC of score samples (..., m) vs (..., n), ties one half; vectorised.

    ``axis`` is scipy's resampling axis and is always the last one here.
    """
    difference = positives[..., :, None] - negatives[..., None, :]
    return ((difference > 0) + 0.5 * (difference == 0)).mean(axis=(-1, -2))


def _bca(
    samples: tuple[np.ndarray, np.ndarray],
    statistic: Any,
    resamples: int,
    level: float,
    seed: int,
) -> tuple[float, float]:
    """SciPy's BCa bootstrap of a vectorised two-sample statistic (each sample resampled apart)."""
    result = stats.bootstrap(
        samples,
        statistic,
        method="BCa",
        n_resamples=resamples,
        confidence_level=level,
        vectorized=True,
        batch=100,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_auroc_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified BCa bootstrap CI of the AUROC (scipy ``bootstrap``).

    Positives and negatives are resampled separately (two samples), so every resample keeps the
    class counts.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    return _bca((scores[labels], scores[~labels]), _auroc_of_samples, resamples, level, seed)


def bootstrap_difference_ci(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified, paired BCa bootstrap CI of AUROC(a) - AUROC(b) on the same patients."""
    labels = np.asarray(labels).astype(bool)
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)

    def difference(
        positive_index: np.ndarray, negative_index: np.ndarray, axis: int = -1
    ) -> np.ndarray:
        p, n = positive_index.astype(int), negative_index.astype(int)
        return _auroc_of_samples(a[p], a[n]) - _auroc_of_samples(b[p], b[n])

    samples = (np.flatnonzero(labels), np.flatnonzero(~labels))
    return _bca(samples, difference, resamples, level, seed)


def wilson_ci(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy ``binomtest``); NaNs when ``trials`` is 0."""
    if trials == 0:
        return math.nan, math.nan
    interval = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=level, method="wilson"
    )
    return float(interval.low), float(interval.high)
