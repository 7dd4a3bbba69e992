"""Decision curves, calibration intercept/slope and incremental value, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sihnet.evaluation.clinical import (
    calibration_intercept_slope,
    cross_fitted_regression,
    decision_curve,
    incremental_value,
    net_benefit,
)


def test_net_benefit_by_hand() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    treat = np.array([1, 1, 0, 1, 1, 0, 0, 0, 0, 0], bool)  # TP 2, FP 2 of n 10
    assert net_benefit(labels, treat, 0.2) == pytest.approx(2 / 10 - 2 / 10 * 0.2 / 0.8)
    assert net_benefit(labels, treat, 0.5) == pytest.approx(0.0)


def test_decision_curve_rows() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    probabilities = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1])
    bern = np.array([6, 5, 2, 3, 0, 0, 1, 2, 0, 0])
    curve = decision_curve(labels, probabilities, bern, thresholds=(0.25, 0.5))
    # t=0.25: model treats p>=0.25 -> TP 3 (0.9,0.8,0.3), FP 1 (0.6): 3/10 - 1/10*(1/3)
    assert curve["model"][0] == pytest.approx(0.3 - 0.1 / 3)
    # t=0.5: treat all -> TP 3, FP 7: 0.3 - 0.7 * 1
    assert curve["treat_all"][1] == pytest.approx(0.3 - 0.7)
    # Bern >= 3: TP 2 (6, 5), FP 1 (3) whatever t
    assert curve["bern_ge_3"][0] == pytest.approx(0.2 - 0.1 / 3)
    assert curve["treat_none"] == [0.0, 0.0] and curve["n_patients"] == 10


def test_calibration_intercept_and_slope() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0.02, 0.98, 20000)
    labels = (rng.random(20000) < probabilities).astype(int)
    intercept, slope = calibration_intercept_slope(labels, probabilities)
    assert abs(intercept) < 0.05 and abs(slope - 1) < 0.05
    overconfident = expit(3 * np.log(probabilities / (1 - probabilities)))
    assert calibration_intercept_slope(labels, overconfident)[1] == pytest.approx(1 / 3, abs=0.03)


def test_the_cross_fitted_regression_never_sees_its_own_fold() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 2))
    labels = (features[:, 0] + rng.normal(size=60) > 0).astype(int)
    folds = np.arange(60) % 3
    predicted = cross_fitted_regression(features, labels, folds)
    for fold in range(3):  # an independent fit on the other folds gives the same predictions
        model = LogisticRegression(penalty=None, max_iter=1000)
        model.fit(features[folds != fold], labels[folds != fold])
        np.testing.assert_allclose(
            predicted[folds == fold], model.predict_proba(features[folds == fold])[:, 1]
        )
    flipped = labels.copy()
    flipped[folds == 0] = 1 - flipped[folds == 0]  # fold 0's own labels do not reach fold 0
    np.testing.assert_allclose(
        cross_fitted_regression(features, flipped, folds)[folds == 0], predicted[folds == 0]
    )


def test_incremental_value_of_an_informative_model_over_a_weak_score() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 60)
    bern = rng.integers(0, 10, 120) + 2 * labels  # weak
    probabilities = expit(3 * (labels - 0.5) + rng.normal(size=120))  # strong
    folds = np.arange(120) % 5
    value = incremental_value(labels, bern, probabilities, folds, seed=0)
    assert value is not None and value.n_patients == 120
    assert value.auroc_bern_alone == pytest.approx(roc_auc_score(labels, bern), abs=0.02)
    assert value.auroc_bern_plus_model > value.auroc_bern_alone and value.delong_p < 0.05
    low, high = value.auroc_difference_bootstrap_ci95
    assert low <= value.auroc_difference <= high and low > 0
    assert incremental_value(labels, bern, probabilities, np.zeros(120, int)) is None
