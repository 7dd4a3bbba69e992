"""A multi-task fold's Bern outputs: the selected model's six components for each validation
patient (scans averaged), with the automatic and the expected Bern score."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sihnet.bern import BERN_PREDICTION_COLUMNS, HEAD_FIELDS
from sihnet.config import ViewConfig
from sihnet.data.patients import patient_means
from sihnet.inference import Inference
from sihnet.models.bern_heads import auto_bern
from sihnet.models.densenet import build_model
from sihnet.models.weights import load_weights
from sihnet.tables import write_table
from sihnet.training.dataset import CachedVolumeDataset
from sihnet.training.samples import Samples


def bern_rows(fold: int, samples: Samples, components: np.ndarray) -> list[dict[str, object]]:
    """One row per patient (first-seen order): components (n_scans, 6) averaged over scans."""
    labels = dict(zip(samples.patient_ids, samples.labels, strict=True))
    rows = []
    for patient, mean in zip(*patient_means(samples.patient_ids, components), strict=True):
        score, expected = auto_bern(mean)
        rows.append({
            "patient_id": patient, "fold": fold, "label": labels[patient],
            **{name: f"{v:.6f}" for name, v in zip(HEAD_FIELDS, mean, strict=True)},
            "auto_bern": score, "expected_bern": f"{expected:.6f}",
        })  # fmt: skip
    return rows


def write_bern_predictions(
    path: Path,
    weights: Path,
    fold: int,
    validation: Samples,
    dataset: CachedVolumeDataset,
    inference: Inference,
    views: Sequence[ViewConfig] = (),
) -> None:
    """Score the fold's selected weights' Bern heads on its validation scans (``dataset``: the
    volumes the fold already holds) into ``path``."""
    network = build_model(bern_heads=True, views=views)
    network.load_state_dict(load_weights(weights))
    network = network.to(inference.device).eval()
    components = inference.bern_components(network, (dataset[i][0] for i in range(len(dataset))))
    write_table(path, BERN_PREDICTION_COLUMNS, bern_rows(fold, validation, components))
