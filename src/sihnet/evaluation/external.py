"""``sihnet evaluate RUN --manifest EXTERNAL``: the run's fold models on another cohort.

External validation (the paper's stated next step). Each scan gets the mean fistula probability
of the fold models, a patient the mean of their scans. Nothing is refitted on the external cohort:
the operating point is the Youden threshold of the development cohort's out-of-fold predictions.
Writes ``RUN/external/<name>-<id>/{predictions.csv, metrics.json, roc.png, reliability.png}``
(:func:`external_name`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sihnet.atomic import write_json_atomic
from sihnet.config import InferenceConfig
from sihnet.data.manifest import Cohort, read_manifest
from sihnet.data.patients import patient_means
from sihnet.errors import SihnetError
from sihnet.evaluation.bern_comparison import compare_with_bern
from sihnet.evaluation.operating_points import confusion, youden_threshold
from sihnet.evaluation.run_metrics import calibration, plot_reliability, plot_roc
from sihnet.evaluation.statistics import auroc_ci
from sihnet.hashing import text_sha256, tree_sha256
from sihnet.inference.ensemble import FoldEnsemble
from sihnet.ingest.resolve import convert_dicom_inputs
from sihnet.paths import ExternalPaths, RunPaths
from sihnet.preprocessing.cache import VolumeCache, read_cached
from sihnet.schemas import ImageIdentities, PredictionTable, read_json
from sihnet.tables import write_table

log = logging.getLogger(__name__)


def development_threshold(paths: RunPaths) -> float | None:
    """Youden threshold of the development cohort's out-of-fold predictions (None if absent)."""
    if not paths.oof_predictions.is_file():
        return None
    table = PredictionTable.read(paths.oof_predictions)
    if len(set(table.labels.tolist())) < 2:
        return None
    return youden_threshold(table.labels, table.probability)


def score_cohort(
    ensemble: FoldEnsemble, cohort: Cohort, cache: VolumeCache
) -> dict[int, np.ndarray]:
    """Per fold model, the mean probability of each patient's scans (patients in cohort order).

    Each cached volume is read once for every fold model.
    """
    images = [(scan.row, scan.image) for scan in cohort.scans]
    convert_dicom_inputs([image for _, image in images], cache)
    entries = cache.cache_images(images, ensemble.config.preprocessing)
    folds = list(ensemble.models)
    per_scan = [
        ensemble.probabilities(read_cached(entries[scan.image]).model_input())
        for scan in cohort.scans
    ]
    scans = np.array([[probabilities[k] for k in folds] for probabilities in per_scan])
    _, means = patient_means([scan.patient_id for scan in cohort.scans], scans)  # cohort order
    network = {k: means[:, j] for j, k in enumerate(folds)}
    if not ensemble.measured:
        return network
    from sihnet.models.measurements import measure_patients_in_memory

    measures = measure_patients_in_memory(cohort, cache)
    fused: dict[int, np.ndarray] = {k: np.zeros(len(cohort.patient_ids)) for k in network}
    empty = {p for p in cohort.patient_ids if not any(v is not None for v in measures[p].values())}
    if empty:
        rows = ", ".join(str(scan.row) for scan in cohort.scans if scan.patient_id in empty)
        log.warning(
            "%d patient(s) counted with nothing measured by the automatic Bern reader (not a "
            "head, masked, or unreadable; manifest rows %s): their measured part is the training "
            "patients' medians",
            len(empty),
            rows,
        )
    for i, patient in enumerate(cohort.patient_ids):
        per_patient = ensemble.fused(
            {k: float(v[i]) for k, v in network.items()}, measures[patient]
        )
        for k, value in per_patient["probability"].items():
            fused[k][i] = value
    return fused


def _write_outputs(
    out: ExternalPaths,
    patients: list[str],
    labels: np.ndarray,
    by_fold: dict[int, np.ndarray],
    metrics: dict[str, Any],
) -> None:
    probabilities = np.mean(list(by_fold.values()), axis=0)
    columns = ["patient_id", "label", "probability", *[f"probability_fold_{k}" for k in by_fold]]
    rows = [
        {
            "patient_id": patient,
            "label": int(labels[i]),
            "probability": f"{probabilities[i]:.6f}",
            **{f"probability_fold_{k}": f"{values[i]:.6f}" for k, values in by_fold.items()},
        }
        for i, patient in enumerate(patients)
    ]
    write_table(out.predictions, columns, rows)
    write_json_atomic(out.metrics, metrics)

    plot_roc(
        out.roc_plot,
        {k: (labels, values) for k, values in by_fold.items()},
        (labels, probabilities),
        "fold ensemble",
        f"external cohort {metrics['cohort']}",
    )


def _metrics(
    name: str,
    cohort: Cohort,
    labels: np.ndarray,
    by_fold: dict[int, np.ndarray],
    shared: int,
    precision: str,
) -> dict[str, Any]:
    """AUROC with its DeLong CI, each fold model's AUROC, calibration and counts."""
    probabilities = np.mean(list(by_fold.values()), axis=0)
    estimate = auroc_ci(labels, probabilities)
    return {
        "cohort": name,
        "n_patients": len(labels),
        "n_positive": int(labels.sum()),
        "excluded_indeterminate": cohort.excluded_indeterminate,
        "excluded_slec": cohort.excluded_slec,
        "patients_also_in_development": shared,
        "fold_models": list(by_fold),
        "precision": precision,
        "auroc": estimate.auroc,
        "auroc_ci95": [estimate.ci_low, estimate.ci_high],
        "auroc_fold_models": [float(auroc_ci(labels, values).auroc) for values in by_fold.values()],
        "calibration": calibration(labels, probabilities).as_json(),
        "notes": {
            "probability": "mean over the fold models, then over a patient's scans",
            "auroc_ci95": "DeLong 95% CI",
            "operating_point": "Youden threshold of the development cohort's out-of-fold predictions",
        },
    }


def reused_images(paths: RunPaths, cohort: Cohort, cache: VolumeCache) -> int:
    """How many of a cohort's scans are images the run was developed on (by content; 0 for a run
    trained before identities were kept)."""
    if not paths.image_identities.is_file():
        return 0
    development = set(read_json(paths.image_identities, ImageIdentities).identities)
    return sum(cache.image_identity(scan.image) in development for scan in cohort.scans)


def external_name(manifest: Path, cohort: Cohort, cache: VolumeCache) -> str:
    """The folder name of an external cohort's results: the manifest's name and its identity (the
    manifest's bytes and every image's content), so that two sites whose manifests share a file
    name never share a folder, and the same cohort evaluated again replaces its own results."""
    stem = Path(manifest).stem if Path(manifest).is_file() else Path(manifest).name
    images = "|".join(sorted(cache.content_hash(scan.image) for scan in cohort.scans))
    identity = text_sha256(f"{tree_sha256(Path(manifest))}|{images}")
    return f"{stem}-{identity[:10]}"


def run_external(
    run: Path,
    manifest: Path,
    cache: VolumeCache,
    settings: InferenceConfig = InferenceConfig(),
    require_all: bool = False,
) -> dict[str, Any]:
    """Score an external labelled cohort with the run's fold models (see module docstring).

    Returns:
        The external ``metrics.json``.
    """
    paths = RunPaths(run)
    ensemble = FoldEnsemble.load(run, settings=settings, require_all=require_all)
    cohort = read_manifest(manifest)
    name = external_name(manifest, cohort, cache)
    development = paths.read_cohort().get("labels", {})
    shared = sorted(set(development) & set(cohort.patient_labels()))
    if shared:
        log.warning("%d external patient IDs also appear in the development cohort", len(shared))
    reused = reused_images(paths, cohort, cache)
    if reused:
        log.warning(
            "%d external image(s) are development images (the same voxels and geometry): this is "
            "not an external validation",
            reused,
        )
    patients = cohort.patient_ids
    labels = np.array([int(cohort.patient_labels()[p] or 0) for p in patients])
    if min(int(labels.sum()), int((1 - labels).sum())) < 2:
        raise SihnetError(
            f"external cohort {name}: needs at least two patients with and two without fistula "
            f"(it has {int(labels.sum())} and {int((1 - labels).sum())})"
        )
    by_fold = score_cohort(ensemble, cohort, cache)
    metrics = _metrics(name, cohort, labels, by_fold, len(shared), ensemble.precision)
    probabilities = np.mean(list(by_fold.values()), axis=0)
    threshold = development_threshold(paths)
    if threshold is not None:
        point = confusion("development Youden", labels, probabilities >= threshold, (threshold,))
        metrics["operating_point"] = point.as_dict()
    no_folds = np.zeros(len(patients), dtype=int)
    bern = compare_with_bern(
        patients, labels, probabilities, no_folds, cohort.bern_fields(), ensemble.config.seed
    )
    if bern is not None:
        metrics["bern"] = bern.as_json()
    out = paths.external(name)
    _write_outputs(out, patients, labels, by_fold, metrics)
    plot_reliability(out.reliability_plot, calibration(labels, probabilities))
    return metrics
