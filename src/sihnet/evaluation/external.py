"""``sihnet evaluate RUN --manifest EXTERNAL``: the run's fold models on another cohort.

External validation (the paper's stated next step). Each scan gets the mean fistula probability
of the fold models, a patient the mean of their scans. Nothing is refitted on the external cohort:
the operating point is the Youden threshold of the development cohort's out-of-fold predictions.
Writes ``RUN/external/<name>/{predictions.csv, metrics.json, roc.png, reliability.png}``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sihnet.atomic import write_json_atomic, write_text_atomic
from sihnet.data.manifest import read_manifest
from sihnet.errors import SihnetError
from sihnet.evaluation.bern_comparison import compare_with_bern
from sihnet.evaluation.operating_points import confusion, youden_threshold
from sihnet.evaluation.run import calibration, plot_reliability, plot_roc
from sihnet.evaluation.statistics import auroc_ci
from sihnet.models.ensemble import finished_folds, load_fold_model, run_config
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache, read_cached
from sihnet.training.run import cache_cohort

log = logging.getLogger(__name__)


def _development_threshold(paths: RunPaths) -> float | None:
    if not paths.oof_predictions.is_file():
        return None
    with paths.oof_predictions.open() as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([int(r["label"]) for r in rows])
    if len(set(labels.tolist())) < 2:
        return None
    return youden_threshold(labels, np.array([float(r["probability"]) for r in rows]))


def run_external(
    run: Path, manifest: Path, cache: VolumeCache, device: str = "auto"
) -> dict[str, Any]:
    """Score an external labelled cohort with the run's fold models (see module docstring).

    Returns:
        The external ``metrics.json``.
    """
    from sihnet.training.fold import resolve_device

    paths = RunPaths(run)
    config = run_config(paths)
    folds = finished_folds(paths)
    cohort = read_manifest(manifest)
    name = Path(manifest).stem if Path(manifest).is_file() else Path(manifest).name
    out = paths.external_dir(name)
    development = (
        json.loads(paths.cohort.read_text()).get("labels", {}) if paths.cohort.is_file() else {}
    )
    shared = sorted(set(development) & set(cohort.patient_labels()))
    if shared:
        log.warning("%d external patient IDs also appear in the development cohort", len(shared))
    entries = cache_cohort(cohort, config, cache)
    torch_device = resolve_device(device)
    models = {k: load_fold_model(paths, k, torch_device) for k in folds}
    per_fold: dict[int, dict[str, list[float]]] = {k: defaultdict(list) for k in folds}
    with torch.inference_mode():
        for scan in cohort.scans:  # each cached volume is read once, for every fold model
            image = torch.from_numpy(np.asarray(read_cached(entries[scan.image]).image))[None]
            for k, model in models.items():
                logits = model(image.to(torch_device)).float()
                per_fold[k][scan.patient_id].append(float(torch.softmax(logits, 1)[0, 1]))
    patients = cohort.patient_ids
    labels_of = cohort.patient_labels()
    labels = np.array([int(labels_of[p] or 0) for p in patients])
    by_fold = {k: np.array([np.mean(per_fold[k][p]) for p in patients]) for k in folds}
    probabilities = np.mean([by_fold[k] for k in folds], axis=0)
    if len(set(labels.tolist())) < 2:
        raise SihnetError(f"external cohort {name}: needs patients with and without fistula")
    estimate = auroc_ci(labels, probabilities)
    metrics: dict[str, Any] = {
        "cohort": name,
        "n_patients": len(patients),
        "n_positive": int(labels.sum()),
        "excluded_indeterminate": cohort.excluded_indeterminate,
        "excluded_slec": cohort.excluded_slec,
        "patients_also_in_development": len(shared),
        "fold_models": folds,
        "auroc": estimate.auroc,
        "auroc_ci95": [estimate.ci_low, estimate.ci_high],
        "auroc_fold_models": [float(auroc_ci(labels, by_fold[k]).auroc) for k in folds],
        "calibration": calibration(labels, probabilities),
        "notes": {
            "probability": "mean over the fold models, then over a patient's scans",
            "auroc_ci95": "DeLong 95% CI",
            "operating_point": "Youden threshold of the development cohort's out-of-fold predictions",
        },
    }
    threshold = _development_threshold(paths)
    if threshold is not None:
        point = confusion("development Youden", labels, probabilities >= threshold, (threshold,))
        metrics["operating_point"] = point.as_dict()
    bern = compare_with_bern(
        patients,
        labels,
        probabilities,
        np.zeros(len(patients), dtype=int),
        cohort.bern_fields(),
        config.seed,
    )
    if bern is not None:
        metrics["bern"] = bern
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["patient_id", "label", "probability", *[f"probability_fold_{k}" for k in folds]]
    )
    for i, patient in enumerate(patients):
        writer.writerow(
            [
                patient,
                labels[i],
                f"{probabilities[i]:.6f}",
                *[f"{by_fold[k][i]:.6f}" for k in folds],
            ]
        )
    write_text_atomic(out / "predictions.csv", buffer.getvalue())
    write_json_atomic(out / "metrics.json", metrics)

    def rows(values: np.ndarray) -> list[dict[str, str]]:
        return [
            {"label": str(y), "probability": str(p)} for y, p in zip(labels, values, strict=True)
        ]

    plot_roc(
        out / "roc.png",
        {k: rows(by_fold[k]) for k in folds},
        rows(probabilities),
        "fold ensemble",
        f"external cohort {name}",
    )
    plot_reliability(out / "reliability.png", metrics["calibration"])
    return metrics
