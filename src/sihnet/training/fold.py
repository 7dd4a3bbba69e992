"""Train one cross-validation fold: the paper's optimiser, schedule, loss and checkpoint selection."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DataLoader

from sihnet.atomic import write_json_atomic
from sihnet.config import ExperimentConfig
from sihnet.data.dataset import CachedVolumeDataset
from sihnet.errors import SihnetError, TrainingInterrupted
from sihnet.models.densenet import build_model
from sihnet.models.weights import save_weights
from sihnet.paths import RunPaths
from sihnet.training.augmentation import augment_batch, build_augmentation
from sihnet.training.checkpoint import (
    capture_rng,
    load_state,
    restore_rng,
    save_state,
    stop_requested,
)
from sihnet.training.records import epoch_bar, write_history, write_predictions

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Samples:
    """Scans of one split side; the lists are aligned (one entry per scan)."""

    patient_ids: list[str]
    entries: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.entries)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast when asked for, else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_probabilities(
    model: torch.nn.Module, samples: Samples, batch_size: int, device: torch.device, precision: str
) -> np.ndarray:
    """Fistula probability (softmax of class 1) per scan: (n_scans,) float64."""
    model.eval()
    loader = DataLoader(CachedVolumeDataset(samples.entries, samples.labels), batch_size=batch_size)
    outputs = []
    for images, _ in loader:
        with autocast(device, precision):
            logits = model(images.to(device))
        outputs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(outputs).astype(np.float64) if outputs else np.zeros(0)


def patient_level(
    samples: Samples, probabilities: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Average scan probabilities per patient.

    Returns:
        ``(patient_ids, labels (P,), probabilities (P,))`` in first-seen order.
    """
    order = list(dict.fromkeys(samples.patient_ids))
    index = {p: i for i, p in enumerate(order)}
    sums, counts, labels = (
        np.zeros(len(order)),
        np.zeros(len(order)),
        np.zeros(len(order), dtype=int),
    )
    for patient, label, probability in zip(
        samples.patient_ids, samples.labels, probabilities, strict=True
    ):
        sums[index[patient]] += probability
        counts[index[patient]] += 1
        labels[index[patient]] = label
    return order, labels, sums / np.maximum(counts, 1)


def auroc_or_nan(labels: np.ndarray, scores: np.ndarray) -> float:
    """scikit-learn AUROC, NaN when only one class is present."""
    if len(set(np.asarray(labels).tolist())) < 2:
        return math.nan
    return float(roc_auc_score(labels, scores))


def class_weights(labels: Sequence[int]) -> torch.Tensor:
    """Inverse class ratios of the training fold (scikit-learn ``balanced``): n / (2 n_c), (2,)."""
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=np.asarray(labels))
    return torch.tensor(weights, dtype=torch.float32)


@dataclasses.dataclass
class _Tracked:
    """Best-so-far state of one selection criterion."""

    score: float = -math.inf
    epoch: int = -1
    probabilities: np.ndarray | None = None


def _update(tracked: _Tracked, score: float, epoch: int, probabilities: np.ndarray) -> bool:
    if epoch == 0 or (not math.isnan(score) and score > tracked.score):
        tracked.score = -math.inf if math.isnan(score) else score
        tracked.epoch = epoch
        tracked.probabilities = probabilities
        return True
    return False


def _tracker_state(tracked: _Tracked) -> dict[str, Any]:
    probabilities = (
        None if tracked.probabilities is None else torch.from_numpy(tracked.probabilities)
    )
    return {"score": tracked.score, "epoch": tracked.epoch, "probabilities": probabilities}


def _tracker_from(state: dict[str, Any]) -> _Tracked:
    probabilities = state["probabilities"]
    return _Tracked(
        state["score"], state["epoch"], None if probabilities is None else probabilities.numpy()
    )


def _train_epoch(
    model: torch.nn.Module,
    loader: DataLoader[tuple[torch.Tensor, int]],
    augmentation: Any,
    criterion: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    precision: str,
    where: str,
) -> float:
    """One pass over the training data; returns the mean loss of the steps taken.

    Raises:
        TrainingInterrupted: after the current step, when SIGINT/SIGTERM asked to stop.
    """
    model.train()
    losses, skipped = [], 0
    for images, labels in loader:
        images = augment_batch(images.to(device), augmentation)
        with autocast(device, precision):
            logits = model(images)
        loss = criterion(logits.float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # A non-finite gradient (seen with bf16 conv3d backward on CPU for some grid sizes)
        # would poison the weights: skip that step, as AMP's GradScaler does.
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=math.inf)
        if torch.isfinite(norm):
            optimizer.step()
            losses.append(loss.item())
        else:
            skipped += 1
        signal_number = stop_requested()
        if signal_number is not None:
            raise TrainingInterrupted(signal_number)
    if skipped:
        log.warning("%s: %d step(s) skipped for non-finite gradients", where, skipped)
    if not losses:
        raise SihnetError(
            f"{where}: every step had non-finite gradients; set training.precision to fp32"
        )
    return float(np.mean(losses))


def _score(
    model: torch.nn.Module, samples: Samples, config: ExperimentConfig, device: torch.device
) -> tuple[np.ndarray, float]:
    """Patient-level probabilities (in first-seen patient order) and their AUROC."""
    scan = predict_probabilities(
        model, samples, config.training.batch_size, device, config.training.precision
    )
    _, labels, probabilities = patient_level(samples, scan)
    return probabilities, auroc_or_nan(labels, probabilities)


def train_fold(
    fold: int,
    train: Samples,
    inner_validation: Samples | None,
    validation: Samples,
    config: ExperimentConfig,
    paths: RunPaths,
    fingerprints: dict[str, str] | None = None,
    resume: bool = False,
) -> dict[str, object]:
    """Train one fold and write ``fold_K/{best.safetensors,last.pt,history.csv,predictions.csv,summary.json}``.

    Every epoch scores the outer validation fold (``val_auroc``) and, for ``inner`` selection, the
    inner validation patients (``inner_auroc``). The checkpoint kept in ``best.safetensors`` is the
    one the configured selection picks; the last epoch's and the best-validation epoch's (the paper's
    optimistic choice) predictions are kept beside it. ``last.pt`` is saved after every epoch.

    Args:
        fingerprints: hashes of the configuration, manifest and splits; a resumed fold must match.
        resume: continue from ``last.pt`` (the last complete epoch) when it exists.

    Returns:
        The fold summary (also written to ``summary.json``).
    """
    settings = config.training
    fingerprints = fingerprints or {}
    device = resolve_device(settings.device)
    seed = config.seed * 1000 + fold
    torch.manual_seed(seed)
    model = build_model().to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=settings.restart_epochs
    )
    weight = class_weights(train.labels).to(device) if settings.class_weighting else None
    criterion = torch.nn.CrossEntropyLoss(weight=weight)
    augmentation = build_augmentation(config.augmentation, config.preprocessing.spacing_mm, seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        CachedVolumeDataset(train.entries, train.labels),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=generator,
    )
    paths.fold_dir(fold).mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    selected, best_validation, last = _Tracked(), _Tracked(), _Tracked()
    weights_sha256, start_epoch = "", 0
    if resume and paths.last_state(fold).is_file():
        state = load_state(paths.last_state(fold))
        for key, what in (
            ("config", "configuration"),
            ("manifest", "manifest"),
            ("splits", "splits.json"),
        ):
            if state.get("fingerprints", {}).get(key) != fingerprints.get(key):
                raise SihnetError(
                    f"cannot resume fold {fold}: the {what} changed since it was started"
                )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"], generator, augmentation)
        history = list(state["history"])
        selected, best_validation, last = (
            _tracker_from(state[k]) for k in ("selected", "best_validation", "last")
        )
        weights_sha256, start_epoch = state["weights_sha256"], state["epoch"] + 1
        log.info("fold %d: resumed after epoch %d", fold, start_epoch)
    patients, labels_v, _ = patient_level(validation, np.zeros(len(validation)))
    started = time.perf_counter()
    with epoch_bar(settings.epochs, f"fold {fold}") as bar:
        if bar is not None:
            bar.update(start_epoch)
        for epoch in range(start_epoch, settings.epochs):
            tick = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            where = f"fold {fold} epoch {epoch + 1}"
            loss = _train_epoch(
                model, loader, augmentation, criterion, optimizer, device, settings.precision, where
            )
            scheduler.step()
            probabilities, val_auroc = _score(model, validation, config, device)
            inner_auroc = (
                _score(model, inner_validation, config, device)[1]
                if inner_validation is not None
                else math.nan
            )
            criterion_value = {"inner": inner_auroc, "paper": val_auroc, "last": float(epoch)}[
                settings.selection
            ]
            if _update(selected, criterion_value, epoch, probabilities):
                weights_sha256 = save_weights(
                    model, paths.best_weights(fold), {"fold": str(fold), "epoch": str(epoch)}
                )
            _update(best_validation, val_auroc, epoch, probabilities)
            _update(last, float(epoch), epoch, probabilities)
            seconds = time.perf_counter() - tick
            history.append(
                {
                    "epoch": epoch,
                    "loss": loss,
                    "val_auroc": val_auroc,
                    "inner_auroc": inner_auroc,
                    "lr": lr,
                    "seconds": round(seconds, 3),
                }
            )
            write_history(paths.history(fold), history)
            save_state(
                paths.last_state(fold),
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "selected": _tracker_state(selected),
                    "best_validation": _tracker_state(best_validation),
                    "last": _tracker_state(last),
                    "weights_sha256": weights_sha256,
                    "rng": capture_rng(generator, augmentation),
                    "fingerprints": fingerprints,
                },
            )
            inner_text = f" inner AUROC {inner_auroc:.3f}" if inner_validation is not None else ""
            if bar is not None:
                bar.set_postfix_str(f"loss {loss:.3f} val {val_auroc:.3f}")
                bar.update()
            else:
                log.info(
                    "%s/%d loss %.4f val AUROC %.3f%s (%.1f s)",
                    where,
                    settings.epochs,
                    loss,
                    val_auroc,
                    inner_text,
                    seconds,
                )
    assert selected.probabilities is not None and last.probabilities is not None
    assert best_validation.probabilities is not None
    write_predictions(
        paths.fold_predictions(fold),
        fold,
        patients,
        labels_v,
        {
            "probability": selected.probabilities,
            "probability_last_epoch": last.probabilities,
            "probability_best_validation": best_validation.probabilities,
        },
    )
    summary: dict[str, object] = {
        "fold": fold,
        "selection": settings.selection,
        "selected_epoch": selected.epoch,
        "auroc": auroc_or_nan(labels_v, selected.probabilities),
        "auroc_last_epoch": auroc_or_nan(labels_v, last.probabilities),
        "auroc_best_validation": auroc_or_nan(labels_v, best_validation.probabilities),
        "best_validation_epoch": best_validation.epoch,
        "weights_sha256": weights_sha256,
        "n_train_patients": len(set(train.patient_ids)),
        "n_inner_validation_patients": len(set(inner_validation.patient_ids))
        if inner_validation
        else 0,
        "n_validation_patients": len(patients),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(paths.fold_summary(fold), summary)
    return summary
