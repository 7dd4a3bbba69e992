"""A dataset of cached, preprocessed volumes (no NIfTI is read here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sihnet.preprocessing.cache import read_cached

# Volumes are held in memory when the whole set is smaller than this (e.g. the quick profile).
IN_MEMORY_LIMIT_BYTES = 4 * 1024**3


class CachedVolumeDataset(Dataset[tuple[Any, ...]]):
    """Items ``(image (1, X, Y, Z) float32, label)`` from cache entries, and the six Bern targets
    ``(6,) float32`` (NaN = missing) as a third item when ``bern`` is given.

    Holds every volume in memory when they fit under ``IN_MEMORY_LIMIT_BYTES``, else reads the
    cache entry on each access.
    """

    def __init__(
        self, entries: Sequence[Path], labels: Sequence[int], bern: np.ndarray | None = None
    ) -> None:
        self.entries = list(entries)
        self.labels = [int(label) for label in labels]
        self.bern = None if bern is None else torch.as_tensor(bern, dtype=torch.float32)
        self._memory: list[Any] | None = None
        total = sum(Path(e).stat().st_size for e in self.entries)
        if total <= IN_MEMORY_LIMIT_BYTES:
            self._memory = [self._read(i) for i in range(len(self.entries))]

    def _read(self, index: int) -> Any:
        """The scan's network input: its canvas (1, X, Y, Z), or a tuple with its views."""
        prepared = read_cached(self.entries[index]).model_input()
        if isinstance(prepared, tuple):
            return tuple(torch.from_numpy(view) for view in prepared)
        return torch.from_numpy(prepared)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        image = self._memory[index] if self._memory is not None else self._read(index)
        if self.bern is not None:
            return image, self.labels[index], self.bern[index]
        return image, self.labels[index]
