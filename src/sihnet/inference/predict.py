"""``sihnet predict``: the fold-ensemble probability of a fistula for new images, the class at the
model's operating points, and plain-words warnings when an image is unlike the training images.

JSON keys per image (stable, documented in the README): ``image``, ``probability``,
``probability_sd``, ``fold_probabilities``, ``operating_points``, ``warnings``, ``model_sha256``,
``notice`` — or ``image`` and ``error`` when the image could not be scored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sihnet.bern import HEAD_FIELDS
from sihnet.config import InferenceConfig
from sihnet.errors import SihnetError
from sihnet.inference.ensemble import FoldEnsemble
from sihnet.ingest.resolve import convert_dicom_inputs
from sihnet.models.bern_heads import auto_bern, has_heads
from sihnet.preprocessing.cache import VolumeCache, default_cache_dir, read_cached
from sihnet.preprocessing.reference import image_properties, input_warnings

log = logging.getLogger(__name__)

NOTICE = "research use only; not a medical device; not for clinical decisions"


def image_label(position: int, image: Path) -> str:
    """How an image is named in outputs: its position and file name (a DICOM folder's name is
    never shown: folder names often name patients)."""
    return (
        f"#{position} {Path(image).name}"
        if not Path(image).is_dir()
        else f"#{position} (DICOM folder)"
    )


def classes(
    probability: float, thresholds: dict[str, dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """The class at each fixed operating point: ``{rule: {"threshold": t, "fistula": p >= t}}``."""
    return {
        name: {"threshold": point["threshold"], "fistula": bool(probability >= point["threshold"])}
        for name, point in thresholds.items()
    }


def score_image(ensemble: FoldEnsemble, image: Path, cache: VolumeCache) -> dict[str, Any]:
    """One image's record (see the module docstring).

    Raises:
        SihnetError: the image cannot be read or scored.
    """
    entry = cache.get(image, ensemble.config.preprocessing, misaligned="keep")
    prepared = read_cached(entry)
    probabilities = ensemble.probabilities(prepared.model_input())
    warnings: list[str] = []
    measured = measured_record(image, cache, warnings)
    parts: dict[str, float | None] = {}
    if ensemble.measured:
        features = measured.get("features", {})
        fused = ensemble.fused(probabilities, features)
        probabilities = fused["probability"]
        parts = {
            f"probability_{name}": float(np.mean(list(fused[name].values())))
            for name in ("network", "measured")
        }
        if not any(v is not None for v in features.values()):
            warnings.append(NOTHING_MEASURED)
            parts["probability_measured"] = None
    values = np.array(list(probabilities.values()))
    probability = float(values.mean())
    if len(probabilities) < ensemble.folds_total:
        warnings.append(
            f"only {len(probabilities)} of the run's {ensemble.folds_total} fold models are finished"
        )
    alignment = prepared.alignment or cache.alignment(image)  # where the head is, either way
    if alignment.problem:
        warnings.append(f"the probability is not reliable: {alignment.problem}")
    if ensemble.reference is not None:
        properties = image_properties(cache.nifti_of(image), prepared)
        warnings += input_warnings(properties, ensemble.reference)
    else:
        warnings.append(
            "the model has no reference statistics (trained before they were kept): no input checks"
        )
    record = {
        "probability": probability,
        **parts,
        "probability_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "fold_probabilities": probabilities,
        "operating_points": classes(probability, ensemble.thresholds),
        "warnings": warnings,
        "model_sha256": ensemble.model_sha256,
        "measured": measured,
        "notice": NOTICE,
    }
    bern = bern_of(ensemble, prepared.model_input())
    return record if bern is None else {**record, "bern": bern}


NOTHING_MEASURED = (
    "the automatic Bern reader measured nothing on it: the measured model's part of the "
    "probability is the training patients' medians, not this scan's"
)


def measured_record(image: Path, cache: VolumeCache, warnings: list[str]) -> dict[str, Any]:
    """What the automatic Bern reader measured on the image: the six items, the Bern score (a
    range when an item was not measured), the continuous features, and why not where not."""
    from sihnet.reader.image import read_image
    from sihnet.reader.reading import features_of, items_not_measured

    try:
        reading = read_image(image, cache)
    except SihnetError as error:
        warnings.append(f"the automatic Bern reader could not read the image: {error}")
        return {"problem": str(error)}
    if reading.problem:
        warnings.append(f"the automatic Bern reader: {reading.problem}")
    return {
        "problem": reading.problem,
        "items": reading.items,
        "bern_score_min": reading.bern_score_min,
        "bern_score_max": reading.bern_score_max,
        "features": features_of(reading),
        "not_measured": items_not_measured(reading),
    }


def bern_of(ensemble: FoldEnsemble, image: Any) -> dict[str, Any] | None:
    """The Bern components averaged over fold models with Bern heads (sign probabilities,
    distances in mm) with the automatic and the expected Bern score; None without heads."""
    models = {k: m for k, m in ensemble.models.items() if has_heads(m)}
    if not models:
        return None
    volume = image
    rows = [ensemble.inferences[k].bern_components(m, [volume])[0] for k, m in models.items()]
    mean = np.mean(rows, axis=0)
    score, expected = auto_bern(mean)
    components = {name: float(v) for name, v in zip(HEAD_FIELDS, mean, strict=True)}
    return {"components": components, "auto_bern_score": score, "expected_bern_score": expected}


def run_predict(
    run: Path,
    images: list[Path],
    settings: InferenceConfig = InferenceConfig(),
    cache: VolumeCache | None = None,
    require_all: bool = False,
) -> list[dict[str, Any]]:
    """Score images with a run's (or an exported model's) fold models.

    Args:
        run: a trained run folder or a folder written by ``sihnet export``.
        images: NIfTI files or DICOM folders.
        settings: device and precision (default: the run's).
        cache: preprocessed-volume cache (default: the user cache dir).
        require_all: refuse a run whose folds are not all finished (default: a warning).

    Returns:
        One record per image, in order (module docstring); a bad image gets ``error`` (one line)
        and the others are still scored.
    """
    ensemble = FoldEnsemble.load(run, settings=settings, require_all=require_all)
    cache = cache or VolumeCache(default_cache_dir())
    convert_dicom_inputs(images, cache)
    records: list[dict[str, Any]] = []
    for position, image in enumerate(images, start=1):
        label = image_label(position, image)
        try:
            records.append({"image": label, **score_image(ensemble, image, cache)})
        except SihnetError as error:
            records.append({"image": label, "error": str(error)})
    return records
