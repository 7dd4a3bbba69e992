"""Every artefact path of a run folder comes from :class:`RunPaths`; nothing else builds them."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """The run folder layout of DESIGN.md.

    ``RUN/config.yaml, splits.json, fold_K/{best.safetensors,last.pt,history.csv,predictions.csv,
    summary.json}, oof_predictions.csv, metrics.json, roc.png, roc_vs_bern.png, reliability.png, report.html``; K counts from 0.
    """

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def cohort(self) -> Path:
        """The manifest rows the run used (patient, label, image path relative to the manifest)."""
        return self.root / "cohort.json"

    def external_dir(self, name: str) -> Path:
        """Results of the run's models on another cohort: ``RUN/external/<name>/``."""
        return self.root / "external" / name

    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold_{fold}"

    def best_weights(self, fold: int) -> Path:
        return self.fold_dir(fold) / "best.safetensors"

    def last_state(self, fold: int) -> Path:
        return self.fold_dir(fold) / "last.pt"

    def history(self, fold: int) -> Path:
        return self.fold_dir(fold) / "history.csv"

    def fold_predictions(self, fold: int) -> Path:
        return self.fold_dir(fold) / "predictions.csv"

    def fold_summary(self, fold: int) -> Path:
        return self.fold_dir(fold) / "summary.json"

    @property
    def oof_predictions(self) -> Path:
        return self.root / "oof_predictions.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def roc_plot(self) -> Path:
        return self.root / "roc.png"

    @property
    def roc_vs_bern_plot(self) -> Path:
        return self.root / "roc_vs_bern.png"

    @property
    def reliability_plot(self) -> Path:
        return self.root / "reliability.png"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def log(self) -> Path:
        return self.root / "train.log"
