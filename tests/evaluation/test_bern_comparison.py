"""Model vs Bern score on the same patients: who is compared, the paired numbers, the rules."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sihnet.evaluation.bern_comparison import compare_with_bern

# Bern 7 (high), 5, 3, 2 (low), 0: pachy + sinus + suprasellar 3 mm + subdural = 7, etc.
FIELDS = {
    7: {"pachymeningeal_enhancement": "1", "venous_sinus_engorgement": "1",
        "suprasellar_cistern_mm": "3.0", "subdural_fluid_collection": "1",
        "prepontine_cistern_mm": "6", "mamillopontine_distance_mm": "8"},
    5: {"pachymeningeal_enhancement": "1", "venous_sinus_engorgement": "1",
        "suprasellar_cistern_mm": "5.0", "subdural_fluid_collection": "1",
        "prepontine_cistern_mm": "6", "mamillopontine_distance_mm": "8"},
    3: {"pachymeningeal_enhancement": "1", "venous_sinus_engorgement": "0",
        "suprasellar_cistern_mm": "5.0", "subdural_fluid_collection": "1",
        "prepontine_cistern_mm": "6", "mamillopontine_distance_mm": "8"},
    2: {"pachymeningeal_enhancement": "0", "venous_sinus_engorgement": "1",
        "suprasellar_cistern_mm": "5.0", "subdural_fluid_collection": "0",
        "prepontine_cistern_mm": "6", "mamillopontine_distance_mm": "8"},
    0: {"pachymeningeal_enhancement": "0", "venous_sinus_engorgement": "0",
        "suprasellar_cistern_mm": "5.0", "subdural_fluid_collection": "0",
        "prepontine_cistern_mm": "6", "mamillopontine_distance_mm": "8"},
}  # fmt: skip


def table() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict[str, dict[str, str]]]:
    """12 patients over 3 folds; P11 has a partial Bern score, P12 none."""
    scores = [7, 5, 3, 5, 2, 7, 0, 3, 2, 0]
    labels = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1, 0])
    probabilities = np.array([0.9, 0.7, 0.4, 0.8, 0.3, 0.6, 0.1, 0.5, 0.2, 0.35, 0.5, 0.5])
    patients = [f"P{i + 1}" for i in range(12)]
    fields = {p: dict(FIELDS[s]) for p, s in zip(patients, scores, strict=False)}
    fields["P11"] = {"pachymeningeal_enhancement": "1"}
    return patients, labels, probabilities, np.arange(12) % 3, fields


def test_model_and_bern_are_compared_on_the_same_complete_patients() -> None:
    patients, labels, probabilities, folds, fields = table()
    section = compare_with_bern(patients, labels, probabilities, folds, fields, seed=1)
    assert section is not None and section.compared
    assert (section.n_patients, section.n_bern_incomplete, section.n_without_bern) == (10, 1, 1)
    y, model = labels[:10], probabilities[:10]
    bern = np.array([7, 5, 3, 5, 2, 7, 0, 3, 2, 0])
    assert section.auroc_model == pytest.approx(roc_auc_score(y, model))
    assert section.auroc_bern == pytest.approx(roc_auc_score(y, bern))
    assert section.auroc_difference == pytest.approx(section.auroc_model - section.auroc_bern)
    assert section.auroc_bern_ci95 is not None
    assert section.auroc_bern_ci95[0] <= section.auroc_bern <= section.auroc_bern_ci95[1]
    assert 0 < (section.delong_p or 0) <= 1
    points = {p["operating_point"]: p for p in section.operating_points or []}
    bern3 = points["Bern >= 3"]  # by hand: positives 7,5,3,5,7 | 3 among the negatives
    assert (bern3["tp"], bern3["fn"], bern3["fp"], bern3["tn"]) == (5, 0, 1, 4)
    bern5 = points["Bern >= 5"]
    assert (bern5["tp"], bern5["fn"], bern5["fp"], bern5["tn"]) == (4, 1, 0, 5)
    assert {"model Youden", "model sensitivity 90%", "model sensitivity 95%"} <= set(points)
    assert "bern" not in section.as_json() and "n_patients" in section.as_json()


def test_no_bern_fields_gives_no_section_and_too_few_gives_counts_only() -> None:
    patients, labels, probabilities, folds, fields = table()
    assert compare_with_bern(patients, labels, probabilities, folds, {}) is None
    few = {p: fields[p] for p in ("P1", "P2", "P5")}  # one negative with a complete score
    section = compare_with_bern(patients, labels, probabilities, folds, few)
    assert section is not None and not section.compared
    assert set(section.as_json()) == {
        "n_patients",
        "n_positive",
        "n_bern_incomplete",
        "n_without_bern",
    }


def test_the_bootstrap_is_seeded() -> None:
    patients, labels, probabilities, folds, fields = table()
    first = compare_with_bern(patients, labels, probabilities, folds, fields, seed=3)
    second = compare_with_bern(patients, labels, probabilities, folds, fields, seed=3)
    assert first is not None and second is not None
    assert first.auroc_difference_bootstrap_ci95 == second.auroc_difference_bootstrap_ci95
