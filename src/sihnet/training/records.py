"""What a fold writes as it trains: history, predictions, and a progress bar on terminals."""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sihnet.atomic import write_text_atomic

HISTORY_COLUMNS = ("epoch", "loss", "val_auroc", "inner_auroc", "lr", "seconds")


@contextlib.contextmanager
def epoch_bar(total: int, description: str) -> Iterator[tqdm | None]:
    """A tqdm bar on a terminal; ``None`` (plain log lines) otherwise."""
    if sys.stderr.isatty():
        with tqdm(total=total, desc=description, unit="epoch", leave=True) as bar:
            yield bar
    else:
        yield None


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def write_predictions(
    path: Path, fold: int, patients: list[str], labels: np.ndarray, columns: dict[str, np.ndarray]
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patient_id", "fold", "label", *columns])
    for i, patient in enumerate(patients):
        writer.writerow([patient, fold, int(labels[i]), *(f"{c[i]:.6f}" for c in columns.values())])
    write_text_atomic(path, buffer.getvalue())
