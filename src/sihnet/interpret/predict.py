"""``sihnet predict``: the fold-ensemble probability of a fistula for new images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sihnet.errors import SihnetError
from sihnet.models.ensemble import finished_folds, load_fold_model, run_config
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache, default_cache_dir, read_cached

log = logging.getLogger(__name__)


def run_predict(
    run: Path, images: list[Path], device: str = "auto", cache: VolumeCache | None = None
) -> list[dict[str, Any]]:
    """Probability of the fistula class per image: mean and SD over the run's fold models.

    Args:
        run: a trained run folder; images: NIfTI files or DICOM folders.
        cache: preprocessed-volume cache (default: the user cache dir).

    Returns:
        One record per image, in order: ``image`` (its position and, for a file, its name),
        ``probability`` (mean over folds), ``probability_sd``, ``folds`` ({fold: probability}),
        or ``error`` (one line) when the image could not be read; the others are still scored.
    """
    from sihnet.training.fold import resolve_device

    paths = RunPaths(run)
    config = run_config(paths)
    folds = finished_folds(paths)
    torch_device = resolve_device(device)
    models = {k: load_fold_model(paths, k, torch_device) for k in folds}
    cache = cache or VolumeCache(default_cache_dir())
    records: list[dict[str, Any]] = []
    for position, image in enumerate(images, start=1):
        label = (
            f"#{position} {Path(image).name}"
            if Path(image).is_file()
            else f"#{position} (DICOM folder)"
        )
        try:
            prepared = read_cached(cache.get(image, config.preprocessing))
        except SihnetError as error:
            records.append({"image": label, "error": str(error)})
            continue
        x = torch.from_numpy(prepared.image)[None].to(torch_device)
        with torch.inference_mode():
            probabilities = {
                k: float(torch.softmax(m(x).float(), 1)[0, 1]) for k, m in models.items()
            }
        values = np.array(list(probabilities.values()))
        records.append(
            {
                "image": label,
                "probability": float(values.mean()),
                "probability_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "folds": probabilities,
            }
        )
    return records
