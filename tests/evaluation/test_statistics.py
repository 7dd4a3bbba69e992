import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sihnet.evaluation.statistics import auroc_ci, delong_covariance, delong_test


def simulated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    return labels.astype(int), rng.normal(labels * 1.0, 1.0)


def test_auroc_of_tied_integer_scores_equals_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.clip(
        labels * 2 + rng.integers(-2, 4, 200), 0, 9
    )  # Bern-like integer scores, many ties
    aucs, _ = delong_covariance(labels, scores)
    assert aucs[0] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_delong_variance_agrees_with_a_large_bootstrap() -> None:
    labels, scores = simulated(300, 1)
    estimate = auroc_ci(labels, scores)
    rng = np.random.default_rng(2)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    boot = []
    for _ in range(3000):
        index = np.concatenate(
            [rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)]
        )
        boot.append(roc_auc_score(labels[index], scores[index]))
    assert estimate.standard_error == pytest.approx(np.std(boot), rel=0.10)
    assert estimate.ci_low < estimate.auroc < estimate.ci_high


def test_paired_test_of_a_score_with_itself_and_with_noise() -> None:
    labels, scores = simulated(200, 3)
    assert delong_test(labels, scores, scores) == (0.0, 1.0)
    noise = np.random.default_rng(4).normal(size=200)
    difference, p_value = delong_test(labels, scores, noise)
    assert difference > 0.2 and p_value < 1e-4
