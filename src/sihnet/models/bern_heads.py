"""Auxiliary Bern heads on the DenseNet-121 backbone: the six Bern items read from the image.

The classifier is MONAI's ``DenseNet121`` unchanged; one ``Linear(1024, 6)`` on the same pooled
features predicts the items of :data:`sihnet.bern.HEAD_ITEMS`: the signs as logits, the distances
standardised by the training fold's mean and SD (kept as buffers in the weights). One forward
returns both: ``(logits (N, 2), bern (N, 6))``; :func:`split_outputs` reads any network's output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.networks.nets import DenseNet121

from sihnet.bern import DISTANCES, HEAD_FIELDS, HEAD_ITEMS, SIGNS, expected_score, score_fields

N_SIGNS = len(SIGNS)
# Spread of a predicted distance for the expected Bern score: the readers' measurement error of
# the Bern distances is about 1 mm (Dobrocky et al. 2019 report interrater agreement in mm).
DISTANCE_SD_MM = 1.0


def split_outputs(outputs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits (N, 2), raw Bern outputs (N, 6) or None)`` from what a sihnet network returns:
    the logits alone (the paper's network) or both (a network with the Bern heads)."""
    if isinstance(outputs, tuple | list):
        return outputs[0], outputs[1]
    return outputs, None


class BernScale:
    """The training fold's distance scale (buffers ``distance_mean``/``distance_sd``, mm) and the
    raw Bern outputs turned into probabilities and mm; mixed into the networks with heads."""

    distance_mean: torch.Tensor
    distance_sd: torch.Tensor

    def set_distance_scale(self, targets: np.ndarray) -> None:
        """Mean and SD (mm) of the training patients' distances (NaN = missing), (N, 6)."""
        distances = np.asarray(targets, dtype=float)[:, N_SIGNS:]
        for j in range(distances.shape[1]):
            present = distances[:, j][np.isfinite(distances[:, j])]
            if present.size:
                self.distance_mean[j] = float(present.mean())
            if present.size > 1 and present.std() > 0:
                self.distance_sd[j] = float(present.std())

    def components(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs (N, 6) → sign probabilities and distances in mm (N, 6)."""
        signs = torch.sigmoid(raw[:, :N_SIGNS].float())
        distances = raw[:, N_SIGNS:].float() * self.distance_sd + self.distance_mean
        return torch.cat([signs, distances], dim=1)


def has_heads(model: Any) -> bool:
    """Whether ``model`` (a network, or one view of a multi-view network) has the Bern heads."""
    return isinstance(model, BernDenseNet121) or bool(getattr(model, "bern_heads", False))


class BernDenseNet121(BernScale, DenseNet121):
    """MONAI ``DenseNet121`` (3D, 1 channel, 2 classes) with the Bern head: ``forward`` returns
    ``(logits (N, 2), bern (N, 6))`` in :data:`sihnet.bern.HEAD_ITEMS` order (raw: sign logits,
    standardised distances; :meth:`components` turns them into probabilities and mm)."""

    distance_mean: torch.Tensor  # (3,) mm, buffers saved with the weights
    distance_sd: torch.Tensor

    def __init__(self) -> None:
        super().__init__(spatial_dims=3, in_channels=1, out_channels=2)
        out: torch.nn.Linear = self.class_layers.out  # type: ignore[assignment]
        self.bern_head = torch.nn.Linear(out.in_features, len(HEAD_ITEMS))
        self.register_buffer("distance_mean", torch.zeros(len(DISTANCES)))
        self.register_buffer("distance_sd", torch.ones(len(DISTANCES)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.head(self.features(x))

    def head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The outputs from the last feature map (what ``forward`` returns)."""
        pooled = self.class_layers[:-1](features)
        return self.class_layers[-1](pooled), self.bern_head(pooled)


def component_scores(raw: torch.Tensor, name: str, network: Any) -> torch.Tensor:
    """One Bern item of each row of the raw Bern outputs (N, 6): a sign's logit, a distance in mm."""
    j = HEAD_FIELDS.index(name)
    value = raw[:, j].float()
    if j < N_SIGNS:
        return value
    return value * network.distance_sd[j - N_SIGNS] + network.distance_mean[j - N_SIGNS]


def has_bern_head(names: list[str] | set[str]) -> bool:
    """Whether saved weights (their tensor names) belong to a :class:`BernDenseNet121`."""
    return "bern_head.weight" in names or any(n.startswith("heads.") for n in names)


def bern_loss(raw: torch.Tensor, targets: torch.Tensor, network: Any) -> torch.Tensor:
    """Masked auxiliary loss: BCE over the present signs plus Huber (δ = 1) over the present
    standardised distances, each a mean over the batch's present values; 0 when none is present.

    Args:
        raw: the Bern head's outputs (N, 6); targets: (N, 6), NaN where the reader gave no value.
    """
    raw, targets = raw.float(), targets.to(raw.device, torch.float32)
    present = torch.isfinite(targets)
    filled = torch.where(present, targets, torch.zeros_like(targets))
    total = raw.sum() * 0.0  # keeps the graph when nothing is present
    signs = present[:, :N_SIGNS]
    if signs.any():
        losses = torch.nn.functional.binary_cross_entropy_with_logits(
            raw[:, :N_SIGNS], filled[:, :N_SIGNS], reduction="none"
        )
        total = total + losses[signs].mean()
    distances = present[:, N_SIGNS:]
    if distances.any():
        standardised = (filled[:, N_SIGNS:] - network.distance_mean) / network.distance_sd
        losses = torch.nn.functional.huber_loss(raw[:, N_SIGNS:], standardised, reduction="none")
        total = total + losses[distances].mean()
    return total


def auto_bern(components: np.ndarray) -> tuple[int, float]:
    """The Bern rules applied to one patient's predicted components (6,) in ``HEAD_ITEMS`` order:
    the automatic score (signs present at p ≥ 0.5) and the expected score
    (:func:`sihnet.bern.expected_score` with ``DISTANCE_SD_MM``)."""
    values = dict(zip(HEAD_FIELDS, (float(v) for v in components), strict=True))
    fields = {
        item.name: (float(values[item.name] >= 0.5) if item.kind == "sign" else values[item.name])
        for item in HEAD_ITEMS
    }
    score = score_fields(fields).score
    return int(score if score is not None else 0), expected_score(values, DISTANCE_SD_MM)


def bern_targets(fields: Sequence[Mapping[str, str]]) -> np.ndarray:
    """The reader's six Bern fields per row (manifest text; empty = missing) as (rows, 6) float,
    NaN where missing, in ``HEAD_ITEMS`` order."""
    out = np.full((len(fields), len(HEAD_ITEMS)), np.nan)
    for i, row in enumerate(fields):
        for j, name in enumerate(HEAD_FIELDS):
            text = str(row.get(name, "") or "").strip()
            if text:
                out[i, j] = float(text)
    return out
