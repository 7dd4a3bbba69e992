"""Train one cross-validation fold: the paper's optimiser, schedule, loss and checkpoint selection."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DataLoader
from tqdm import tqdm

from sihnet.atomic import write_atomic, write_json_atomic, write_text_atomic
from sihnet.config import ExperimentConfig
from sihnet.data.dataset import CachedVolumeDataset
from sihnet.errors import SihnetError
from sihnet.models.densenet import build_model
from sihnet.models.weights import save_weights
from sihnet.paths import RunPaths
from sihnet.training.augmentation import augment_batch, build_augmentation

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "loss", "val_auroc", "inner_auroc", "lr", "seconds")


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


@contextlib.contextmanager
def _epoch_bar(total: int, description: str) -> Iterator[tqdm | None]:
    """A tqdm bar on a terminal; ``None`` (plain log lines) otherwise."""
    if sys.stderr.isatty():
        with tqdm(total=total, desc=description, unit="epoch", leave=True) as bar:
            yield bar
    else:
        yield None


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def _write_predictions(
    path: Path, fold: int, patients: list[str], labels: np.ndarray, columns: dict[str, np.ndarray]
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patient_id", "fold", "label", *columns])
    for i, patient in enumerate(patients):
        writer.writerow([patient, fold, int(labels[i]), *(f"{c[i]:.6f}" for c in columns.values())])
    write_text_atomic(path, buffer.getvalue())


def train_fold(
    fold: int,
    train: Samples,
    inner_validation: Samples | None,
    validation: Samples,
    config: ExperimentConfig,
    paths: RunPaths,
) -> dict[str, object]:
    """Train one fold and write ``fold_K/{best.safetensors,last.pt,history.csv,predictions.csv,summary.json}``.

    Every epoch scores the outer validation fold (``val_auroc``) and, for ``inner`` selection, the
    inner validation patients (``inner_auroc``). The checkpoint kept in ``best.safetensors`` is the
    one the configured selection picks; the last epoch's and the best-validation epoch's (the paper's
    optimistic choice) predictions are kept beside it.

    Returns:
        The fold summary (also written to ``summary.json``).
    """
    settings = config.training
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
    fold_dir = paths.fold_dir(fold)
    fold_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    selected, best_validation, last = _Tracked(), _Tracked(), _Tracked()
    weights_sha256 = ""
    started = time.perf_counter()
    with _epoch_bar(settings.epochs, f"fold {fold}") as bar:
        for epoch in range(settings.epochs):
            tick = time.perf_counter()
            model.train()
            lr = optimizer.param_groups[0]["lr"]
            losses, skipped = [], 0
            for images, labels in loader:
                images = augment_batch(images.to(device), augmentation)
                with autocast(device, settings.precision):
                    logits = model(images)
                loss = criterion(logits.float(), labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # A non-finite gradient (seen with bf16 conv3d backward on CPU for some grid sizes)
                # would poison the weights: skip that step, as AMP's GradScaler does.
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=math.inf)
                if not torch.isfinite(norm):
                    skipped += 1
                    continue
                optimizer.step()
                losses.append(loss.item())
            if skipped:
                log.warning(
                    "fold %d epoch %d: %d step(s) skipped for non-finite gradients",
                    fold,
                    epoch + 1,
                    skipped,
                )
            if not losses:
                raise SihnetError(
                    f"fold {fold} epoch {epoch + 1}: every step had non-finite gradients; "
                    "set training.precision to fp32"
                )
            scheduler.step()
            scan_probabilities = predict_probabilities(
                model, validation, settings.batch_size, device, settings.precision
            )
            patients, labels_v, probabilities = patient_level(validation, scan_probabilities)
            val_auroc = auroc_or_nan(labels_v, probabilities)
            inner_auroc = math.nan
            if inner_validation is not None:
                inner_scan = predict_probabilities(
                    model, inner_validation, settings.batch_size, device, settings.precision
                )
                _, labels_i, probabilities_i = patient_level(inner_validation, inner_scan)
                inner_auroc = auroc_or_nan(labels_i, probabilities_i)
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
            row = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "val_auroc": val_auroc,
                "inner_auroc": inner_auroc,
                "lr": lr,
                "seconds": round(seconds, 3),
            }
            history.append(row)
            _write_history(paths.history(fold), history)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
            }
            write_atomic(paths.last_state(fold), lambda temp, state=state: torch.save(state, temp))  # type: ignore[misc]
            message = (
                f"fold {fold} epoch {epoch + 1}/{settings.epochs} loss {row['loss']:.4f} "
                f"val AUROC {val_auroc:.3f}"
                + (f" inner AUROC {inner_auroc:.3f}" if inner_validation is not None else "")
                + f" ({seconds:.1f} s)"
            )
            if bar is not None:
                bar.set_postfix_str(f"loss {row['loss']:.3f} val {val_auroc:.3f}")
                bar.update()
            else:
                log.info(message)
    assert selected.probabilities is not None and last.probabilities is not None
    assert best_validation.probabilities is not None
    _write_predictions(
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
