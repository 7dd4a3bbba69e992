from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sihnet.evaluation.statistics import (
    auroc_ci,
    bootstrap_auroc_ci,
    bootstrap_difference_ci,
    delong_covariance,
    delong_test,
    wilson_ci,
)


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


REFERENCE = Path(__file__).parent / "data" / "delong_reference.csv"


def test_delong_matches_r_proc() -> None:
    """Values printed by ``Rscript tests/evaluation/data/delong_reference.R`` (pROC 1.18.0, R 4.2.2):
    auc_model 0.8039215686 var 0.002792017835 CI 0.7003579575-0.9074851797; auc_bern 0.8373901285
    var 0.001868513417; roc.test(paired, delong) Z -0.4635552595, p 0.6429664152; cov -0.0002761341416.
    """
    data = np.loadtxt(REFERENCE, delimiter=",", skiprows=1)
    labels, model, bern = data[:, 0], data[:, 1], data[:, 2]
    aucs, covariance = delong_covariance(labels, np.vstack([model, bern]))
    np.testing.assert_allclose(aucs, [0.8039215686, 0.8373901285], atol=1e-9)
    np.testing.assert_allclose(covariance[0, 0], 0.002792017835, rtol=1e-8)
    np.testing.assert_allclose(covariance[1, 1], 0.001868513417, rtol=1e-8)
    np.testing.assert_allclose(covariance[0, 1], -0.0002761341416, rtol=1e-8)
    estimate = auroc_ci(labels, model)
    np.testing.assert_allclose(
        [estimate.ci_low, estimate.ci_high], [0.7003579575, 0.9074851797], atol=1e-9
    )
    difference, p_value = delong_test(labels, model, bern)
    assert difference == pytest.approx(0.8039215686 - 0.8373901285, abs=1e-9)
    assert p_value == pytest.approx(0.6429664152, abs=1e-9)


def test_bootstrap_intervals_are_seeded_and_sensible() -> None:
    labels, scores = simulated(120, 5)
    first = bootstrap_auroc_ci(labels, scores, resamples=2000, seed=3)
    assert first == bootstrap_auroc_ci(labels, scores, resamples=2000, seed=3)
    estimate = auroc_ci(labels, scores)
    assert first[0] < estimate.auroc < first[1]
    assert abs((first[1] - first[0]) - (estimate.ci_high - estimate.ci_low)) < 0.05
    other = np.random.default_rng(6).normal(size=120)
    low, high = bootstrap_difference_ci(labels, scores, other, resamples=2000, seed=3)
    difference, _ = delong_test(labels, scores, other)
    assert low < difference < high and low > 0


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(8, 10, (0.4902, 0.9433)), (0, 20, (0.0, 0.1611)), (50, 100, (0.4038, 0.5962))],
)
def test_wilson_intervals(k: int, n: int, expected: tuple[float, float]) -> None:
    assert wilson_ci(k, n) == pytest.approx(expected, abs=1e-4)
