"""The ceiling: the ideal reader is one (no fitted classifier beats it), the default generator is
calibrated to the clinical anchors, and every cohort carries its ceiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from sihnet.schemas import CeilingFile, read_json
from sihnet.synth.ceiling import generator_ceiling, ideal_log_likelihood_ratio
from sihnet.synth.cohort import CEILING
from sihnet.synth.patient import draw_severities


def test_no_classifier_of_the_latent_signs_beats_the_ideal_reader() -> None:
    rng = np.random.default_rng(77)
    labels = np.repeat([0, 1], 30_000)
    train, _ = draw_severities(rng, labels)
    test, _ = draw_severities(rng, labels)
    model = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(train, labels)
    fitted = roc_auc_score(labels, model.predict_proba(test)[:, 1])
    ideal = roc_auc_score(labels, ideal_log_likelihood_ratio(test))
    assert fitted <= ideal + 0.003, (fitted, ideal)
    assert fitted >= ideal - 0.02, (fitted, ideal)  # the ratio is not a weak reader either


def test_the_ideal_readers_ratio_is_the_posterior_odds() -> None:
    """With equal numbers of each class, P(fistula | signs) = LR / (1 + LR): checked per decile
    of the ratio over 100,000 drawn patients."""
    labels = np.repeat([0, 1], 50_000)
    severities, _ = draw_severities(np.random.default_rng(78), labels)
    log_ratio = ideal_log_likelihood_ratio(severities)
    posterior = 1 / (1 + np.exp(-log_ratio))
    edges = np.quantile(log_ratio, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, log_ratio, side="right") - 1, 0, 9)
    for decile in range(10):
        inside = bins == decile
        if inside.sum() < 1000:
            continue  # ties: a decile absorbed by its neighbour
        assert abs(labels[inside].mean() - posterior[inside].mean()) < 0.02, decile


def test_the_default_generator_is_calibrated_to_the_clinical_anchors() -> None:
    """docs/synthetic.md: the ground-truth Bern score near the paper's readers (0.80), the ideal
    reader with room above it (the paper's network: 0.867), and no free lunch."""
    ceiling = generator_ceiling()
    assert ceiling.draws_per_class * 2 >= 100_000
    assert 0.75 <= ceiling.bern_truth_auroc <= 0.85
    assert 0.86 <= ceiling.ideal_reader_auroc <= 0.93
    assert ceiling.ideal_reader_auroc - ceiling.bern_truth_auroc >= 0.05
    assert max(ceiling.sign_auroc.values()) < ceiling.bern_truth_auroc


def test_a_cohort_carries_its_ceiling(tiny_cohort: Path) -> None:
    ceiling = read_json(tiny_cohort.parent / CEILING, CeilingFile)
    assert ceiling.generator.bern_truth_auroc < ceiling.generator.ideal_reader_auroc
    assert ceiling.cohort.n_patients == 12
    assert 0.0 <= ceiling.cohort.ideal_reader_auroc <= 1.0
