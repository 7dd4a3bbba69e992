import numpy as np
import pytest

from sihnet.evaluation.operating_points import (
    confusion,
    cross_fitted,
    sensitivity_threshold,
    youden_threshold,
)


def test_confusion_and_proportions() -> None:
    point = confusion("rule", np.array([1, 1, 1, 0, 0]), np.array([1, 1, 0, 1, 0])).as_dict()
    assert (point["tp"], point["fp"], point["tn"], point["fn"]) == (2, 1, 1, 1)
    assert point["sensitivity"] == pytest.approx(2 / 3) and point["specificity"] == pytest.approx(
        1 / 2
    )
    assert point["ppv"] == pytest.approx(2 / 3) and point["npv"] == pytest.approx(1 / 2)
    low, high = point["sensitivity_ci95"]  # type: ignore[misc]
    assert low < 2 / 3 < high


def test_thresholds() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert youden_threshold(labels, scores) == pytest.approx(0.7)
    assert sensitivity_threshold(labels, scores, 1.0) == pytest.approx(0.4)
    assert sensitivity_threshold(labels, scores, 0.75) == pytest.approx(0.7)


def test_thresholds_are_fitted_on_the_other_folds_only() -> None:
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 40)
    folds = np.repeat([0, 1, 2, 3], 20)
    scores = rng.normal(labels, 0.5)
    scores[folds == 0] += (
        10  # fold 0 lives on another scale: its own data must not set its threshold
    )
    point = cross_fitted("Youden", youden_threshold, labels, scores, folds)
    assert point is not None
    others = folds != 0
    assert point.thresholds[0] == pytest.approx(youden_threshold(labels[others], scores[others]))
    assert point.thresholds[0] < 5  # so every fold-0 patient is called positive
    assert cross_fitted("Youden", youden_threshold, labels, scores, np.zeros(80)) is None
