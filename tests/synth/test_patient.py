"""The generator hides no label below the visible threshold, and its anatomy varies as heads do."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from sihnet.synth import anatomy as atlas
from sihnet.synth.cohort import cohort_patients
from sihnet.synth.geometry import SagMap, deformation_of, template_to_head
from sihnet.synth.measure import measure_distances
from sihnet.synth.patient import SIGN_MODELS, VISIBLE_SEVERITY, draw_severities

PER_CLASS = 20_000
# docs/synthetic.md, "Normal anatomy": the controls' ground-truth distances (mean, SD) in mm.
CONTROL_DISTANCES_MM = {
    "suprasellar_cistern_mm": (5.0, 2.1),
    "prepontine_cistern_mm": (5.6, 1.5),
    "mamillopontine_distance_mm": (7.2, 2.0),
}


@pytest.fixture(scope="module")
def drawn() -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat([0, 1], PER_CLASS)
    severities, _ = draw_severities(np.random.default_rng(2027), labels)
    return labels, severities


@pytest.mark.parametrize("sign", range(len(SIGN_MODELS)), ids=[m.field for m in SIGN_MODELS])
def test_an_absent_signs_severity_says_nothing_of_the_label(
    drawn: tuple[np.ndarray, np.ndarray], sign: int
) -> None:
    labels, severities = drawn
    absent = severities[:, sign] < VISIBLE_SEVERITY
    assert abs(roc_auc_score(labels[absent], severities[absent, sign]) - 0.5) <= 0.03


def test_a_classifier_on_absent_signs_alone_is_at_chance(
    drawn: tuple[np.ndarray, np.ndarray],
) -> None:
    """Patients with no visible sign (controls and normal-appearing fistula patients): every
    severity below the threshold together, in a flexible classifier, out of fold."""
    labels, severities = drawn
    quiet = (severities < VISIBLE_SEVERITY).all(axis=1)
    assert labels[quiet].sum() > 1000  # enough fistula patients look normal to test it
    scores = cross_val_predict(
        HistGradientBoostingClassifier(max_iter=100, random_state=0),
        severities[quiet],
        labels[quiet],
        cv=3,
        method="predict_proba",
    )[:, 1]
    assert abs(roc_auc_score(labels[quiet], scores) - 0.5) <= 0.03


def test_the_controls_distances_spread_as_the_docs_say() -> None:
    controls = [p for p in cohort_patients(120, seed=4242) if p.label == 0][:50]
    assert len(controls) == 50
    measured = [measure_distances(p) for p in controls]
    for name, (mean, sd) in CONTROL_DISTANCES_MM.items():
        values = np.array([m[name] for m in measured])
        assert abs(values.mean() - mean) < 0.8, (name, values.mean())
        assert 0.6 * sd < values.std() < 1.5 * sd, (name, values.std())


def test_the_mamillary_bodies_move_in_template_space_between_heads() -> None:
    """Where a similarity registration (pose and mean size removed) would put the mamillary bodies
    of 50 heads: several mm apart, so reading them needs a registration that works."""
    positions = []
    for patient in cohort_patients(50, seed=4243):
        sag = SagMap.of_patient(patient)
        brain = sag.forward(atlas.MAMILLARY_INFERIOR[None])
        head = template_to_head(deformation_of(patient), brain[None])[0, 0]
        scale = np.asarray(patient.baseline.head_scale)
        positions.append(head * scale / np.prod(scale) ** (1 / 3))
    spread = np.asarray(positions) - np.mean(positions, axis=0)
    rms = float(np.sqrt((spread**2).sum(axis=1).mean()))
    assert rms >= 2.0, rms
