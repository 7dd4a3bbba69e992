"""Checkpoint selection: the best-so-far trackers of a fold (the configured selection, the last
epoch, the best validation epoch) and the rule that updates them after each epoch."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sihnet.models.weights import save_weights

if TYPE_CHECKING:
    from sihnet.training.fold import FoldState


@dataclasses.dataclass
class Tracked:
    """Best-so-far state of one selection criterion."""

    score: float = -math.inf
    epoch: int = -1
    probabilities: np.ndarray | None = None

    def update(self, score: float, epoch: int, probabilities: np.ndarray) -> bool:
        """Keep this epoch when it scores higher (the first epoch always); True if kept."""
        if epoch == 0 or (not math.isnan(score) and score > self.score):
            self.score = -math.inf if math.isnan(score) else score
            self.epoch, self.probabilities = epoch, probabilities
            return True
        return False

    def state(self) -> dict[str, Any]:
        probabilities = None if self.probabilities is None else torch.from_numpy(self.probabilities)
        return {"score": self.score, "epoch": self.epoch, "probabilities": probabilities}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tracked:
        probabilities = state["probabilities"]
        return cls(
            state["score"], state["epoch"], None if probabilities is None else probabilities.numpy()
        )


def keep(
    state: FoldState,
    record: dict[str, float],
    probabilities: np.ndarray,
    selection: str,
    weights: Path,
) -> None:
    """Update the three trackers with an epoch; rank 0 writes ``best.safetensors`` when the
    selection keeps it (selection ``last`` writes it once, when the fold ends)."""
    epoch = int(record["epoch"])
    criterion = {"inner": record["inner_auroc"], "paper": record["val_auroc"], "last": float(epoch)}
    kept = state.selected.update(criterion[selection], epoch, probabilities)
    if kept and selection != "last" and state.world.main:
        state.weights_sha256 = save_weights(state.network, weights)
    state.best_validation.update(record["val_auroc"], epoch, probabilities)
    state.last.update(float(epoch), epoch, probabilities)
