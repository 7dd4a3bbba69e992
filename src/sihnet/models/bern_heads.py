"""Auxiliary Bern heads on the DenseNet-121 backbone: the six Bern signs read from the image.

The classifier is MONAI's ``DenseNet121`` unchanged; one ``Linear(1024, 6)`` on the same pooled
features predicts three signs (logits: pachymeningeal enhancement, venous sinus engorgement,
subdural fluid collection) and three distances (standardised by the training fold's mean and SD,
kept as buffers in the weights: suprasellar cistern, prepontine cistern, mamillopontine distance).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.networks.nets import DenseNet121

from sihnet.bern import (
    MAMILLOPONTINE_THRESHOLD_MM,
    PREPONTINE_THRESHOLD_MM,
    SUPRASELLAR_THRESHOLD_MM,
    score_fields,
)
from sihnet.data.manifest import BERN_MEASUREMENT_COLUMNS, BERN_SIGN_COLUMNS

if TYPE_CHECKING:
    from sihnet.inference import Inference

BERN_OUTPUTS = (*BERN_SIGN_COLUMNS, *BERN_MEASUREMENT_COLUMNS)
SIGNS = len(BERN_SIGN_COLUMNS)
# (points, threshold) of each output in the Bern score, in BERN_OUTPUTS order
POINTS = (2, 2, 1, 2, 1, 1)
THRESHOLDS_MM = (SUPRASELLAR_THRESHOLD_MM, PREPONTINE_THRESHOLD_MM, MAMILLOPONTINE_THRESHOLD_MM)
# Spread of a predicted distance for the expected Bern score: the readers' measurement error of
# the Bern distances is about 1 mm (Dobrocky et al. 2019 report interrater agreement in mm).
DISTANCE_SD_MM = 1.0


class BernDenseNet121(DenseNet121):
    """MONAI ``DenseNet121`` (3D, 1 channel, 2 classes) with the Bern head.

    ``forward`` returns the class logits (N, 2) as the single-task network does; with
    ``with_bern`` set it returns (N, 8): the class logits, then the six raw Bern outputs.
    """

    distance_mean: torch.Tensor  # (3,) mm, buffers saved with the weights
    distance_sd: torch.Tensor

    def __init__(self) -> None:
        super().__init__(spatial_dims=3, in_channels=1, out_channels=2)
        out: torch.nn.Linear = self.class_layers.out  # type: ignore[assignment]
        self.bern_head = torch.nn.Linear(out.in_features, len(BERN_OUTPUTS))
        self.register_buffer("distance_mean", torch.zeros(len(BERN_MEASUREMENT_COLUMNS)))
        self.register_buffer("distance_sd", torch.ones(len(BERN_MEASUREMENT_COLUMNS)))
        self.with_bern = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The outputs from the last feature map (what ``forward`` returns)."""
        pooled = self.class_layers[:-1](features)
        logits = self.class_layers[-1](pooled)
        if not self.with_bern:
            return logits
        return torch.cat([logits, self.bern_head(pooled)], dim=1)

    def set_distance_scale(self, targets: np.ndarray) -> None:
        """Mean and SD (mm) of the training patients' distances (NaN = missing), (N, 6)."""
        distances = np.asarray(targets, dtype=float)[:, SIGNS:]
        for j in range(distances.shape[1]):
            present = distances[:, j][np.isfinite(distances[:, j])]
            if present.size:
                self.distance_mean[j] = float(present.mean())
            if present.size > 1 and present.std() > 0:
                self.distance_sd[j] = float(present.std())

    def components(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs (N, 6) → sign probabilities and distances in mm (N, 6)."""
        signs = torch.sigmoid(raw[:, :SIGNS].float())
        distances = raw[:, SIGNS:].float() * self.distance_sd + self.distance_mean
        return torch.cat([signs, distances], dim=1)


def component_scores(outputs: torch.Tensor, name: str, network: BernDenseNet121) -> torch.Tensor:
    """One Bern component of each row of ``outputs`` (N, 8): a sign's logit, a distance in mm."""
    j = BERN_OUTPUTS.index(name)
    raw = outputs[:, 2 + j].float()
    if j < SIGNS:
        return raw
    return raw * network.distance_sd[j - SIGNS] + network.distance_mean[j - SIGNS]


def has_bern_head(names: list[str] | set[str]) -> bool:
    """Whether saved weights (their tensor names) belong to a :class:`BernDenseNet121`."""
    return "bern_head.weight" in names


def bern_loss(raw: torch.Tensor, targets: torch.Tensor, network: BernDenseNet121) -> torch.Tensor:
    """Masked auxiliary loss: BCE over the present signs plus Huber (δ = 1) over the present
    standardised distances, each a mean over the batch's present values; 0 when none is present.

    Args:
        raw: the Bern head's outputs (N, 6); targets: (N, 6), NaN where the reader gave no value.
    """
    raw, targets = raw.float(), targets.to(raw.device, torch.float32)
    present = torch.isfinite(targets)
    filled = torch.where(present, targets, torch.zeros_like(targets))
    total = raw.sum() * 0.0  # keeps the graph when nothing is present
    signs = present[:, :SIGNS]
    if signs.any():
        losses = torch.nn.functional.binary_cross_entropy_with_logits(
            raw[:, :SIGNS], filled[:, :SIGNS], reduction="none"
        )
        total = total + losses[signs].mean()
    distances = present[:, SIGNS:]
    if distances.any():
        standardised = (filled[:, SIGNS:] - network.distance_mean) / network.distance_sd
        losses = torch.nn.functional.huber_loss(raw[:, SIGNS:], standardised, reduction="none")
        total = total + losses[distances].mean()
    return total


def auto_bern(components: np.ndarray) -> tuple[int, float]:
    """The Bern rules applied to one patient's predicted components (6,): the automatic score
    (signs present at p ≥ 0.5) and the expected score (each criterion's points × its probability;
    a distance meets its threshold with probability Φ((threshold − predicted) / 1 mm))."""
    fields = {
        name: (float(value >= 0.5) if j < SIGNS else float(value))
        for j, (name, value) in enumerate(zip(BERN_OUTPUTS, components, strict=True))
    }
    score = score_fields(fields).score
    expected = sum(p * float(components[j]) for j, p in enumerate(POINTS[:SIGNS]))
    for j, threshold in enumerate(THRESHOLDS_MM):
        z = (threshold - float(components[SIGNS + j])) / DISTANCE_SD_MM
        expected += POINTS[SIGNS + j] * 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return int(score if score is not None else 0), float(expected)


def bern_targets(fields: Sequence[Mapping[str, str]]) -> np.ndarray:
    """The reader's six Bern fields per row (manifest text; empty = missing) as (rows, 6) float,
    NaN where missing, in ``BERN_OUTPUTS`` order."""
    out = np.full((len(fields), len(BERN_OUTPUTS)), np.nan)
    for i, row in enumerate(fields):
        for j, name in enumerate(BERN_OUTPUTS):
            text = str(row.get(name, "") or "").strip()
            if text:
                out[i, j] = float(text)
    return out


def predict_components(
    network: torch.nn.Module, volumes: Iterable[torch.Tensor | np.ndarray], inference: Inference
) -> np.ndarray:
    """The six Bern components of each volume (1, X, Y, Z), one at a time: (n, 6) float64 (sign
    probabilities, distances in mm), in the inference's device and precision."""
    if not isinstance(network, BernDenseNet121):
        raise TypeError("the network has no Bern heads")
    network.with_bern = True
    try:
        rows = [
            network.components(inference.logits(network, torch.as_tensor(v)[None])[:, 2:])[0]
            for v in volumes
        ]
    finally:
        network.with_bern = False
    return np.asarray([r.cpu().double().numpy() for r in rows]).reshape(-1, len(BERN_OUTPUTS))
