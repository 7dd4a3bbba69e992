"""``sihnet predict``: the fold-ensemble probability of a fistula for new images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sihnet.config import InferenceConfig
from sihnet.ensemble import FoldEnsemble
from sihnet.errors import SihnetError
from sihnet.preprocessing.cache import VolumeCache, default_cache_dir, read_cached

log = logging.getLogger(__name__)


def image_label(position: int, image: Path) -> str:
    """How an image is named in outputs: its position and file name (a DICOM folder's name is
    never shown: folder names often name patients)."""
    return (
        f"#{position} {Path(image).name}"
        if not Path(image).is_dir()
        else f"#{position} (DICOM folder)"
    )


def run_predict(
    run: Path,
    images: list[Path],
    settings: InferenceConfig = InferenceConfig(),
    cache: VolumeCache | None = None,
    require_all: bool = False,
) -> list[dict[str, Any]]:
    """Probability of the fistula class per image: mean and SD over the run's fold models.

    Args:
        run: a trained run folder; images: NIfTI files or DICOM folders.
        settings: device and precision (default: the run's).
        cache: preprocessed-volume cache (default: the user cache dir).
        require_all: refuse a run whose folds are not all finished (default: a warning).

    Returns:
        One record per image, in order: ``image`` (its position and, for a file, its name),
        ``probability`` (mean over folds), ``probability_sd`` (sample SD), ``fold_probabilities``
        ({fold: probability}), or ``error`` (one line) when the image could not be scored; the
        others are still scored.
    """
    ensemble = FoldEnsemble.load(run, settings=settings, require_all=require_all)
    cache = cache or VolumeCache(default_cache_dir())
    records: list[dict[str, Any]] = []
    for position, image in enumerate(images, start=1):
        label = image_label(position, image)
        try:
            prepared = read_cached(cache.get(image, ensemble.config.preprocessing))
            probabilities = ensemble.probabilities(prepared.image)
        except SihnetError as error:
            records.append({"image": label, "error": str(error)})
            continue
        values = np.array(list(probabilities.values()))
        records.append(
            {
                "image": label,
                "probability": float(values.mean()),
                "probability_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "fold_probabilities": probabilities,
            }
        )
    return records
