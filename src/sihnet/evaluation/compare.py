"""``sihnet evaluate RUN --compare-with OTHER``: two runs' pooled out-of-fold AUROCs on the same
patients and splits (e.g. multi-task vs single-task), with the paired DeLong test and the
stratified bootstrap CI of the difference. Written to ``RUN/comparison.json``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from sihnet.atomic import write_json_atomic
from sihnet.errors import SihnetError
from sihnet.evaluation.statistics import auroc_ci, bootstrap_difference_ci, delong_test
from sihnet.paths import RunPaths
from sihnet.schemas import PredictionTable


def compare_runs(run: RunPaths, other: RunPaths, seed: int = 0) -> dict[str, Any]:
    """AUROC(run) − AUROC(other) on the patients both scored out of fold.

    Raises:
        SihnetError: a run not evaluated yet, different splits, or too few shared patients.
    """
    if run.root.resolve() == other.root.resolve():
        raise SihnetError(f"--compare-with {other.root.name} is the run itself; give another run")
    for paths in (run, other):
        if not paths.oof_predictions.is_file():
            raise SihnetError(
                f"{paths.root.name} is not evaluated yet (run 'sihnet evaluate' on it)"
            )
    if not run.splits.is_file() or not other.splits.is_file():
        raise SihnetError(f"both runs need their {run.splits.name} for a paired comparison")
    if run.splits.read_bytes() != other.splits.read_bytes():
        raise SihnetError(
            f"{run.root.name} and {other.root.name} were not trained on the same splits; "
            "a paired comparison needs the same folds"
        )
    mine, theirs = _oof(run), _oof(other)
    shared = sorted(set(mine) & set(theirs))
    labels = np.array([mine[p][0] for p in shared])
    if min(int(labels.sum()), int((1 - labels).sum())) < 2:
        raise SihnetError("the two runs share too few patients of each class to compare")
    a = np.array([mine[p][1] for p in shared])
    b = np.array([theirs[p][1] for p in shared])
    if np.array_equal(a, b):
        raise SihnetError(
            f"{run.root.name} and {other.root.name} give identical out-of-fold probabilities "
            "(the same run copied?); there is no difference to test"
        )
    with warnings.catch_warnings():  # scipy's warnings would print the install's paths
        warnings.simplefilter("ignore")
        difference, p_value = delong_test(labels, a, b)
        low, high = bootstrap_difference_ci(labels, a, b, seed=seed)
    result = {
        "run": run.root.name,
        "other": other.root.name,
        "n_patients": len(shared),
        "auroc_run": auroc_ci(labels, a).auroc,
        "auroc_other": auroc_ci(labels, b).auroc,
        "difference": difference,
        "difference_bootstrap_ci95": [low, high],
        "delong_p": p_value,
    }
    write_json_atomic(run.comparison, result)
    return result


def _oof(paths: RunPaths) -> dict[str, tuple[int, float]]:
    """patient -> (label, probability) of a run's ``oof_predictions.csv``.

    Raises:
        SihnetError: the file is damaged (named).
    """
    table = PredictionTable.read(paths.oof_predictions)
    return {
        p: (int(table.labels[i]), float(table.probability[i]))
        for i, p in enumerate(table.patient_ids)
    }


def comparison_lines(result: dict[str, Any]) -> list[str]:
    """The comparison for the terminal."""
    low, high = result["difference_bootstrap_ci95"]
    return [
        f"{result['run']} vs {result['other']} on {result['n_patients']} patients (same splits): "
        f"pooled OOF AUROC {result['auroc_run']:.3f} vs {result['auroc_other']:.3f}, "
        f"difference {result['difference']:+.3f} [bootstrap 95% CI {low:+.3f} to {high:+.3f}], "
        f"DeLong p = {result['delong_p']:.3f}"
    ]
