"""The report's figures as PNG data URIs (matplotlib, no file written): the decision curve and the
training curves; the ROC and reliability figures are the run's own PNGs, embedded as they are."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def file_uri(path: Path) -> str | None:
    """A PNG file as a data URI, or None when it does not exist."""
    return data_uri(Path(path).read_bytes()) if Path(path).is_file() else None


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return data_uri(buffer.getvalue())


def decision_curve_figure(curve: dict[str, Any]) -> str:
    """Net benefit against the threshold probability: model, Bern >= 3, treat all, treat none."""
    figure = Figure(figsize=(5.5, 4))
    axis = figure.subplots()
    thresholds = curve["thresholds"]
    axis.plot(thresholds, curve["model"], lw=2, label="model")
    if "bern_ge_3" in curve:
        axis.plot(thresholds, curve["bern_ge_3"], lw=2, label="Bern >= 3")
    axis.plot(thresholds, curve["treat_all"], color="0.5", lw=1, ls="--", label="treat all")
    axis.plot(thresholds, curve["treat_none"], color="0.2", lw=1, label="treat none")
    low = min(min(curve["model"]), 0.0) - 0.05
    axis.set(xlabel="threshold probability", ylabel="net benefit", ylim=(low, None))
    axis.set_title(f"Decision curve (n = {curve['n_patients']})", fontsize=10)
    axis.legend(fontsize=8)
    return _png(figure)


def training_figure(histories: dict[int, list[dict[str, str]]]) -> str:
    """Loss, validation AUROC and learning rate per epoch, one line per fold."""
    figure = Figure(figsize=(11, 3.2))
    axes = figure.subplots(1, 3)
    for fold, rows in sorted(histories.items()):
        epochs = [int(r["epoch"]) + 1 for r in rows]
        for axis, column in zip(axes, ("loss", "val_auroc", "lr"), strict=True):
            values = [
                float(r[column]) if r[column] not in ("", "nan") else float("nan") for r in rows
            ]
            axis.plot(epochs, values, lw=1.5, label=f"fold {fold}")
    for axis, title in zip(
        axes, ("training loss", "validation AUROC", "learning rate"), strict=True
    ):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    return _png(figure)
