"""The one patient-level aggregation."""

from __future__ import annotations

import numpy as np

from sihnet.data.patients import patient_means


def test_a_patients_score_is_the_mean_of_their_scans_in_first_seen_order() -> None:
    patients, means = patient_means(["b", "a", "b"], np.array([0.2, 0.9, 0.6]))
    assert patients == ["b", "a"]
    np.testing.assert_allclose(means, [0.4, 0.9])
    _, vectors = patient_means(["x", "x"], np.array([[1.0, 2.0], [3.0, 6.0]]))
    np.testing.assert_allclose(vectors, [[2.0, 4.0]])


def test_a_value_not_measured_is_left_out_of_the_patients_mean() -> None:
    values = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, 5.0]])
    patients, means = patient_means(["a", "a", "b"], values)
    assert patients == ["a", "b"]
    np.testing.assert_allclose(means, [[2.0, np.nan], [np.nan, 5.0]])
