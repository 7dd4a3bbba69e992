"""Train one cross-validation fold: the paper's optimiser, schedule, loss and checkpoint selection."""

from __future__ import annotations

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
from sihnet.inference import Inference
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
from sihnet.training.records import FoldSummary, epoch_bar, write_history, write_predictions

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Samples:
    """Scans of one split side; the lists are aligned (one entry per scan)."""

    patient_ids: list[str]
    entries: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.entries)

    def dataset(self) -> CachedVolumeDataset:
        return CachedVolumeDataset(self.entries, self.labels)


def patient_level(
    samples: Samples, probabilities: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Average scan probabilities per patient.

    Returns:
        ``(patient_ids, labels (P,), probabilities (P,))`` in first-seen order.
    """
    order = list(dict.fromkeys(samples.patient_ids))
    index = {p: i for i, p in enumerate(order)}
    sums, counts = np.zeros(len(order)), np.zeros(len(order))
    labels = np.zeros(len(order), dtype=int)
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
class FoldState:
    """What a fold carries from epoch to epoch, and to and from its resume checkpoint."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts
    generator: torch.Generator
    augmentation: Any
    next_epoch: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    selected: Tracked = dataclasses.field(default_factory=Tracked)
    best_validation: Tracked = dataclasses.field(default_factory=Tracked)
    last: Tracked = dataclasses.field(default_factory=Tracked)
    weights_sha256: str = ""

    @classmethod
    def start(cls, config: ExperimentConfig, fold: int, inference: Inference) -> FoldState:
        """A fresh fold: seeded initialisation, AdamW, cosine warm restarts, augmentation."""
        settings, seed = config.training, config.fold_seed(fold)
        torch.manual_seed(seed)
        model = build_model().to(inference.device)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=settings.restart_epochs
        )
        augmentation = build_augmentation(
            config.augmentation, config.preprocessing.spacing_mm, seed
        )
        return cls(model, optimizer, scheduler, torch.Generator().manual_seed(seed), augmentation)

    def checkpoint(self, fingerprints: dict[str, str]) -> dict[str, Any]:
        """The resume state after the epoch just finished (tensors and plain values only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.next_epoch - 1,
            "history": self.history,
            "selected": self.selected.state(),
            "best_validation": self.best_validation.state(),
            "last": self.last.state(),
            "weights_sha256": self.weights_sha256,
            "rng": capture_rng(self.generator, self.augmentation),
            "fingerprints": fingerprints,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a resume state written by :meth:`checkpoint`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"], self.generator, self.augmentation)
        self.history = list(state["history"])
        self.selected, self.best_validation, self.last = (
            Tracked.from_state(state[k]) for k in ("selected", "best_validation", "last")
        )
        self.weights_sha256, self.next_epoch = state["weights_sha256"], state["epoch"] + 1


def check_fingerprints(state: dict[str, Any], fingerprints: dict[str, str], fold: int) -> None:
    """A resumed fold must have been started with the same configuration, manifest, splits and
    image contents (an image replaced before resuming is refused)."""
    for key, what in (
        ("config", "configuration"),
        ("manifest", "manifest"),
        ("splits", "splits.json"),
        ("images", "content of an image"),
    ):
        stored = state.get("fingerprints", {})
        if key == "images" and key not in stored:
            continue  # a resume state written before image contents were recorded
        if stored.get(key) != fingerprints.get(key):
            raise SihnetError(f"cannot resume fold {fold}: the {what} changed since it was started")


def train_epoch(
    state: FoldState,
    loader: DataLoader[tuple[torch.Tensor, int]],
    criterion: torch.nn.Module,
    inference: Inference,
    where: str,
) -> float:
    """One pass over the training data; returns the mean loss of the steps taken.

    Raises:
        TrainingInterrupted: after the current step, when SIGINT/SIGTERM asked to stop.
    """
    model, optimizer = state.model, state.optimizer
    model.train()
    losses, skipped = [], 0
    for images, labels in loader:
        images = augment_batch(images.to(inference.device), state.augmentation)
        with inference.autocast():
            logits = model(images)
        loss = criterion(logits.float(), labels.to(inference.device))
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


def score(
    model: torch.nn.Module, samples: Samples, data: CachedVolumeDataset, inference: Inference
) -> tuple[np.ndarray, float]:
    """Patient-level probabilities (first-seen patient order) and their AUROC."""
    scans = inference.probabilities(model, (data[i][0] for i in range(len(data))))
    _, labels, probabilities = patient_level(samples, scans)
    return probabilities, auroc_or_nan(labels, probabilities)


@dataclasses.dataclass(frozen=True)
class FoldData:
    """A fold's three sides: training, inner validation (``inner`` selection only), validation."""

    train: Samples
    inner_validation: Samples | None
    validation: Samples


def run_epoch(
    state: FoldState,
    data: FoldData,
    loaders: tuple[DataLoader[Any], CachedVolumeDataset, CachedVolumeDataset | None],
    criterion: torch.nn.Module,
    config: ExperimentConfig,
    inference: Inference,
    where: str,
) -> tuple[dict[str, float], np.ndarray]:
    """Train one epoch, score the validation (and inner validation) patients: one history record."""
    tick, epoch = time.perf_counter(), state.next_epoch
    loader, validation, inner = loaders
    lr = state.optimizer.param_groups[0]["lr"]
    loss = train_epoch(state, loader, criterion, inference, where)
    state.scheduler.step()
    probabilities, val_auroc = score(state.model, data.validation, validation, inference)
    inner_auroc = math.nan
    if inner is not None and data.inner_validation is not None:
        inner_auroc = score(state.model, data.inner_validation, inner, inference)[1]
    state.next_epoch = epoch + 1
    record = {
        "epoch": epoch,
        "loss": loss,
        "val_auroc": val_auroc,
        "inner_auroc": inner_auroc,
        "lr": lr,
        "seconds": round(time.perf_counter() - tick, 3),
    }
    return record, probabilities


def keep(
    state: FoldState,
    record: dict[str, float],
    probabilities: np.ndarray,
    selection: str,
    weights: Path,
) -> None:
    """Update the three trackers with an epoch; write ``best.safetensors`` when the selection keeps
    it (selection ``last`` writes it once, when the fold ends)."""
    epoch = int(record["epoch"])
    criterion = {"inner": record["inner_auroc"], "paper": record["val_auroc"], "last": float(epoch)}
    if state.selected.update(criterion[selection], epoch, probabilities) and selection != "last":
        state.weights_sha256 = save_weights(state.model, weights)
    state.best_validation.update(record["val_auroc"], epoch, probabilities)
    state.last.update(float(epoch), epoch, probabilities)


def train_fold(
    fold: int,
    data: FoldData,
    config: ExperimentConfig,
    paths: RunPaths,
    fingerprints: dict[str, str] | None = None,
    resume: bool = False,
) -> FoldSummary:
    """Train one fold and write ``fold_K/{best.safetensors,last.pt,history.csv,predictions.csv,summary.json}``.

    Every epoch scores the outer validation fold (``val_auroc``) and, for ``inner`` selection, the
    inner validation patients (``inner_auroc``). ``best.safetensors`` holds the checkpoint the
    configured selection picks; the last epoch's and the best-validation epoch's (the paper's
    optimistic choice) predictions are kept beside it. ``last.pt`` is saved after every epoch.

    Args:
        fingerprints: hashes of the configuration, manifest and splits; a resumed fold must match.
        resume: continue from ``last.pt`` (the last complete epoch) when it exists.
    """
    settings, fingerprints = config.training, fingerprints or {}
    inference = Inference.resolve(settings.device, settings.precision)
    state = FoldState.start(config, fold, inference)
    weight = (
        class_weights(data.train.labels).to(inference.device) if settings.class_weighting else None
    )
    criterion = torch.nn.CrossEntropyLoss(weight=weight)
    loader = DataLoader(
        data.train.dataset(),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=state.generator,
    )
    inner = data.inner_validation.dataset() if data.inner_validation is not None else None
    loaders = (loader, data.validation.dataset(), inner)
    paths.fold_dir(fold).mkdir(parents=True, exist_ok=True)
    if resume and paths.last_state(fold).is_file():
        saved = load_state(paths.last_state(fold))
        check_fingerprints(saved, fingerprints, fold)
        state.restore(saved)
        log.info("fold %d: resumed after epoch %d", fold, state.next_epoch)
    started = time.perf_counter()
    with epoch_bar(settings.epochs, f"fold {fold}", state.next_epoch) as bar:
        while state.next_epoch < settings.epochs:
            where = f"fold {fold} epoch {state.next_epoch + 1}"
            record, probabilities = run_epoch(
                state, data, loaders, criterion, config, inference, where
            )
            keep(state, record, probabilities, settings.selection, paths.best_weights(fold))
            state.history.append(record)
            write_history(paths.history(fold), state.history)
            save_state(paths.last_state(fold), state.checkpoint(fingerprints))
            bar.epoch_done(where, settings.epochs, record)
    if settings.selection == "last":
        state.weights_sha256 = save_weights(state.model, paths.best_weights(fold))
    return finish_fold(fold, state, data, config, inference, paths, time.perf_counter() - started)


def finish_fold(
    fold: int,
    state: FoldState,
    data: FoldData,
    config: ExperimentConfig,
    inference: Inference,
    paths: RunPaths,
    seconds: float,
) -> FoldSummary:
    """Write the fold's ``predictions.csv`` and ``summary.json``."""
    selected, last, best = state.selected, state.last, state.best_validation
    assert selected.probabilities is not None and last.probabilities is not None
    assert best.probabilities is not None
    patients, labels, _ = patient_level(data.validation, np.zeros(len(data.validation)))
    columns = {
        "probability": selected.probabilities,
        "probability_last_epoch": last.probabilities,
        "probability_best_validation": best.probabilities,
    }
    write_predictions(paths.fold_predictions(fold), fold, patients, labels, columns)
    summary = FoldSummary(
        fold=fold,
        selection=config.training.selection,
        selected_epoch=selected.epoch,
        auroc=auroc_or_nan(labels, selected.probabilities),
        auroc_last_epoch=auroc_or_nan(labels, last.probabilities),
        auroc_best_validation=auroc_or_nan(labels, best.probabilities),
        best_validation_epoch=best.epoch,
        weights_sha256=state.weights_sha256,
        precision=inference.precision,
        n_train_patients=len(set(data.train.patient_ids)),
        n_inner_validation_patients=len(set(data.inner_validation.patient_ids))
        if data.inner_validation
        else 0,
        n_validation_patients=len(patients),
        seconds=round(seconds, 1),
    )
    write_json_atomic(paths.fold_summary(fold), summary.as_json())
    return summary
