"""Checkpoint selection: a fold's best-so-far trackers (the configured selection, the last epoch,
the best validation epoch) and the rule that updates them after each epoch."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch


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


@dataclasses.dataclass
class Selection:
    """The three trackers of a fold.

    Attributes:
        rule: ``inner`` (inner validation AUROC), ``paper`` (validation AUROC) or ``last``.
        selected: the configured rule's choice; best_validation: the epoch best on the
            validation fold itself (the paper's, optimistic); last: the last epoch.
    """

    rule: str
    selected: Tracked = dataclasses.field(default_factory=Tracked)
    best_validation: Tracked = dataclasses.field(default_factory=Tracked)
    last: Tracked = dataclasses.field(default_factory=Tracked)

    def update(self, record: dict[str, float], probabilities: np.ndarray) -> bool:
        """Update the trackers with an epoch's record and validation probabilities.

        Returns:
            Whether the weights of this epoch are the selected ones now and must be saved (the
            ``last`` rule saves once, when the fold ends).
        """
        epoch = int(record["epoch"])
        criterion = {"inner": record["inner_auroc"], "paper": record["val_auroc"]}
        kept = self.selected.update(criterion.get(self.rule, float(epoch)), epoch, probabilities)
        self.best_validation.update(record["val_auroc"], epoch, probabilities)
        self.last.update(float(epoch), epoch, probabilities)
        return kept and self.rule != "last"

    def state(self) -> dict[str, Any]:
        return {
            "selected": self.selected.state(),
            "best_validation": self.best_validation.state(),
            "last": self.last.state(),
        }

    @classmethod
    def from_state(cls, rule: str, state: dict[str, Any]) -> Selection:
        return cls(
            rule, *(Tracked.from_state(state[k]) for k in ("selected", "best_validation", "last"))
        )
