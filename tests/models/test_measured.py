"""The model of the measured Bern quantities: what it stores is what it predicts, and fitted on the
training folds only it learns nothing from shuffled labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sihnet.models.measured import EditedModelError, MeasuredModel, combine, fuse, sigmoid
from sihnet.reader.reading import FEATURES


def _patients(n: int, seed: int) -> tuple[list[dict[str, float | None]], np.ndarray]:
    """Measures of ``n`` patients whose fistula shows in them (a few not measured)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    rows: list[dict[str, float | None]] = []
    for label in labels:
        row: dict[str, float | None] = {
            name: float(rng.normal(0.8 * label if i < 3 else -0.8 * label, 1.0) + 5.0)
            for i, name in enumerate(FEATURES)
        }
        if rng.random() < 0.1:
            row[FEATURES[int(rng.integers(len(FEATURES)))]] = None
        rows.append(row)
    return rows, labels


def test_a_stored_model_predicts_what_scikit_learn_fitted() -> None:
    rows, labels = _patients(120, 0)
    model = MeasuredModel.fit(rows, labels)
    again = MeasuredModel.from_json(json.loads(json.dumps(model.as_json())))
    values = np.array([[np.nan if r[f] is None else r[f] for f in FEATURES] for r in rows])
    filled = np.where(np.isfinite(values), values, np.asarray(model.medians))
    scaled = (filled - np.asarray(model.means)) / np.asarray(model.scales)
    reference = LogisticRegression(C=0.3, class_weight="balanced", max_iter=1000).fit(
        scaled, labels
    )
    assert np.allclose(again.logits(rows), reference.decision_function(scaled), atol=1e-6)
    assert roc_auc_score(labels, again.logits(rows)) > 0.8


def test_the_fusion_is_the_mean_of_the_logits() -> None:
    network = np.array([0.2, 0.9])
    measured = np.array([1.0, -1.0])
    expected = sigmoid((np.log(network / (1 - network)) + measured) / 2)
    assert np.allclose(fuse(network, measured), expected)


def test_the_run_s_probability_is_decided_in_one_place() -> None:
    network, logits = np.array([0.2, 0.9]), np.array([1.0, -1.0])
    fused = combine(network, logits, "mean_logit")
    assert np.allclose(fused["probability"], fuse(network, logits))
    assert np.allclose(fused["probability_network"], network)
    alone = combine(network, logits, "measured_only")
    assert np.allclose(alone["probability"], sigmoid(logits))
    assert np.allclose(alone["probability_measured"], sigmoid(logits))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda v: v | {"surplus": 1}, ValueError),  # a key the schema does not know
        (lambda v: {k: x for k, x in v.items() if k != "intercept"}, ValueError),
        (lambda v: v | {"features": "dural"}, ValueError),  # a string is not a list of names
        (lambda v: v | {"intercept": v["intercept"] + 1.0}, EditedModelError),  # seal broken
    ],
)
def test_a_model_file_is_read_through_its_schema(change: object, error: type) -> None:
    rows, labels = _patients(60, 3)
    values = json.loads(json.dumps(MeasuredModel.fit(rows, labels).as_json()))
    assert MeasuredModel.from_json(values) == MeasuredModel.fit(rows, labels)
    with pytest.raises(error):
        MeasuredModel.from_json(change(values))  # type: ignore[operator]


def test_shuffled_labels_give_chance_out_of_fold(tmp_path: Path) -> None:
    """The run's fold fusion (fitted on each fold's training patients) on a cohort whose labels
    were shuffled: the pooled out-of-fold AUROC of the fused and the measured model stays at
    chance (0.5 +/- 0.15), as it would not if a validation fold leaked into a fit."""
    from sihnet.config import load_config
    from sihnet.data.splits import make_splits
    from sihnet.paths import RunPaths
    from sihnet.schemas import PredictionTable
    from sihnet.training.measured import fuse_fold

    rows, labels = _patients(200, 1)
    shuffled = np.random.default_rng(2).permutation(labels)
    patients = [f"p{i:03d}" for i in range(len(rows))]
    truth = {p: int(v) for p, v in zip(patients, shuffled, strict=True)}
    assignment = make_splits(truth, 5, "stratified_group", 0, {p: p for p in patients})
    paths = RunPaths(tmp_path / "run")
    config = load_config("quick", overrides={"measured": {"enabled": True}})
    network_rng = np.random.default_rng(3)
    for fold in range(5):
        held = [p for p in patients if assignment[p] == fold]
        table = PredictionTable(
            tuple(held),
            np.full(len(held), fold),
            np.array([truth[p] for p in held]),
            {"probability": network_rng.random(len(held))},
        )
        paths.fold_dir(fold).mkdir(parents=True)
        table.write(paths.fold_predictions(fold))
        measures = dict(zip(patients, rows, strict=True))
        fuse_fold(fold, paths, config, measures, truth, assignment)
    pooled = PredictionTable.concatenate(
        [PredictionTable.read(paths.fold_measured_predictions(k)) for k in range(5)]
    )
    for column in ("probability", "probability_measured"):
        assert roc_auc_score(pooled.labels, pooled.scores[column]) == pytest.approx(0.5, abs=0.15)
    # the same machinery on the true labels learns them: the test can fail
    assert roc_auc_score(labels, MeasuredModel.fit(rows, labels).logits(rows)) > 0.8
