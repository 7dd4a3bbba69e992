"""Train one cross-validation fold: the paper's optimiser, schedule, loss and checkpoint selection."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from sihnet.config import ExperimentConfig, TrainingConfig
from sihnet.data.dataset import CachedVolumeDataset
from sihnet.errors import SihnetError, TrainingInterrupted
from sihnet.inference import Inference
from sihnet.models.bern_heads import BernDenseNet121, bern_loss
from sihnet.models.densenet import build_model
from sihnet.models.sync_batchnorm import global_batchnorm
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
from sihnet.training.distributed import (
    EpochPermutation,
    World,
    agree_on_stop,
    barrier,
    batch_loss,
    device_for,
    gather_objects,
    gather_scores,
    per_rank_batch,
    shard,
)
from sihnet.training.records import (
    FoldSummary,
    epoch_bar,
    fold_summary,
    write_fold_outputs,
    write_history,
)
from sihnet.training.samples import (
    FoldData,
    Samples,
    auroc_or_nan,
    class_weights,
    has_bern,
    patient_level,
)
from sihnet.training.selection import Tracked, keep

log = logging.getLogger(__name__)


def build_scheduler(
    optimizer: torch.optim.Optimizer, settings: TrainingConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule, stepped once per epoch (:class:`TrainingConfig.schedule`)."""
    if settings.schedule == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings.learning_rate, total_steps=settings.epochs + 1
        )
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=settings.restart_epochs
    )


@dataclasses.dataclass
class FoldState:
    """What a fold carries from epoch to epoch, and to and from its resume checkpoint.

    Attributes:
        network: the DenseNet (what is saved and scored); model: the same, wrapped in
            DistributedDataParallel when several processes train the fold.
        scaler: fp16 loss scaling, else None.
    """

    network: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augmentation: Any
    world: World = dataclasses.field(default_factory=World)
    scaler: torch.amp.GradScaler | None = None
    next_epoch: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    selected: Tracked = dataclasses.field(default_factory=Tracked)
    best_validation: Tracked = dataclasses.field(default_factory=Tracked)
    last: Tracked = dataclasses.field(default_factory=Tracked)
    weights_sha256: str = ""
    channels_last: bool = False
    bern_weight: float = 0.0  # the auxiliary Bern loss's weight; 0: no Bern heads

    @classmethod
    def start(
        cls,
        config: ExperimentConfig,
        fold: int,
        inference: Inference,
        world: World = World(),
        bern_heads: bool = False,
    ) -> FoldState:
        """A fresh fold: seeded initialisation (the same on every rank), AdamW, cosine warm
        restarts, augmentation (seeded per rank); SyncBatchNorm and DDP with several processes."""
        settings, seed = config.training, config.fold_seed(fold)
        torch.manual_seed(seed)
        network = build_model(settings.activation_checkpointing, bern_heads)
        network = network.to(inference.device)
        if settings.channels_last:
            network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        model = network
        if world.distributed:  # BatchNorm sees the whole global batch, as one process would
            if inference.device.type == "cuda":
                network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
            else:  # PyTorch's SyncBatchNorm is GPU-only
                network = global_batchnorm(network)
            devices = [inference.device] if inference.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(network, device_ids=devices)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        scheduler = build_scheduler(optimizer, settings)
        augmentation = build_augmentation(
            config.augmentation, config.preprocessing.spacing_mm, seed + 7919 * world.rank
        )
        scaler = inference.grad_scaler()
        state = cls(network, model, optimizer, scheduler, augmentation, world, scaler)
        state.channels_last = settings.channels_last
        state.bern_weight = config.bern_heads.weight if bern_heads else 0.0
        return state

    def checkpoint(self, fingerprints: dict[str, str]) -> dict[str, Any]:
        """The resume state after the epoch just finished (tensors and plain values only); every
        rank's random states are gathered (call on every rank; rank 0 saves it)."""
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "epoch": self.next_epoch - 1,
            "history": self.history,
            "selected": self.selected.state(),
            "best_validation": self.best_validation.state(),
            "last": self.last.state(),
            "weights_sha256": self.weights_sha256,
            "rng": gather_objects(capture_rng(self.augmentation), self.world),
            "world_size": self.world.size,
            "fingerprints": fingerprints,
        }

    def restore(self, state: dict[str, Any], fold: int) -> None:
        """Continue from a resume state written by :meth:`checkpoint`.

        Raises:
            SihnetError: the fold was trained by another number of processes.
        """
        trained = int(state.get("world_size", 1))
        if trained != self.world.size:
            raise SihnetError(
                f"cannot resume fold {fold}: it was trained by {trained} process(es), this run has "
                f"{self.world.size}; resume with torchrun --nproc_per_node {trained}"
                if trained > 1
                else f"cannot resume fold {fold}: it was trained by one process; resume without torchrun"
            )
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        randoms = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        restore_rng(randoms[self.world.rank], self.augmentation)
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


def _step(state: FoldState, loss: torch.Tensor) -> bool:
    """Backward and optimiser step; False (step skipped) when the gradient is not finite."""
    optimizer, scaler = state.optimizer, state.scaler
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    # A non-finite gradient (seen with bf16 conv3d backward on CPU for some grid sizes) would
    # poison the weights: skip that step, as AMP's GradScaler does. DDP has averaged the
    # gradients, so every rank decides alike.
    norm = torch.nn.utils.clip_grad_norm_(state.network.parameters(), max_norm=math.inf)
    if scaler is not None:
        scaler.step(optimizer)  # skips non-finite steps itself
        scaler.update()
        return bool(torch.isfinite(norm))
    if torch.isfinite(norm):
        optimizer.step()
        return True
    return False


def _forward(state: FoldState, images: torch.Tensor, heads: bool) -> torch.Tensor:
    """The model's training outputs: logits (N, 2), and the raw Bern outputs after them with
    the heads (N, 8); scoring elsewhere always sees the logits only."""
    if not heads:
        return state.model(images)
    state.network.with_bern = True  # type: ignore[assignment]
    try:
        return state.model(images)
    finally:
        state.network.with_bern = False  # type: ignore[assignment]


def train_epoch(
    state: FoldState,
    loader: DataLoader[tuple[torch.Tensor, int]],
    weight: torch.Tensor | None,
    inference: Inference,
    where: str,
) -> float:
    """One pass over this rank's share of the training data; returns the mean loss of the
    global batches stepped.

    Raises:
        TrainingInterrupted: after the current step, when SIGINT/SIGTERM asked any rank to stop.
    """
    state.model.train()
    losses, skipped = [], 0
    heads = state.bern_weight > 0 and isinstance(state.network, BernDenseNet121)
    for images, labels, *targets in loader:
        images = augment_batch(images.to(inference.device, non_blocking=True), state.augmentation)
        if state.channels_last:
            images = images.contiguous(memory_format=torch.channels_last_3d)
        with inference.autocast():
            outputs = _forward(state, images, heads)
        loss, value = batch_loss(outputs[:, :2], labels.to(inference.device), weight, state.world)
        if heads:
            loss = loss + state.bern_weight * bern_loss(outputs[:, 2:], targets[0], state.network)  # type: ignore[arg-type]
        if _step(state, loss):
            losses.append(value)
        else:
            skipped += 1
        signal_number = agree_on_stop(stop_requested(), state.world, inference.device)
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
    state: FoldState, samples: Samples, data: CachedVolumeDataset, inference: Inference
) -> tuple[np.ndarray, float]:
    """Patient-level probabilities (first-seen patient order) and their AUROC. Each rank scores
    its share of the scans; the scores are gathered so that every scan counts once."""
    indices = shard(len(data), state.world)
    mine = inference.probabilities(state.network, (data[i][0] for i in indices))
    scans = gather_scores(indices, mine, len(data), state.world)
    _, labels, probabilities = patient_level(samples, scans)
    return probabilities, auroc_or_nan(labels, probabilities)


def run_epoch(
    state: FoldState,
    data: FoldData,
    loaders: tuple[DataLoader[Any], CachedVolumeDataset, CachedVolumeDataset | None],
    weight: torch.Tensor | None,
    inference: Inference,
    where: str,
) -> tuple[dict[str, float], np.ndarray]:
    """Train one epoch, score the validation (and inner validation) patients: one history record."""
    tick, epoch = time.perf_counter(), state.next_epoch
    loader, validation, inner = loaders
    sampler = loader.sampler
    if isinstance(sampler, EpochPermutation):
        sampler.set_epoch(epoch)
    lr = state.optimizer.param_groups[0]["lr"]
    loss = train_epoch(state, loader, weight, inference, where)
    state.scheduler.step()
    probabilities, val_auroc = score(state, data.validation, validation, inference)
    inner_auroc = math.nan
    if inner is not None and data.inner_validation is not None:
        inner_auroc = score(state, data.inner_validation, inner, inference)[1]
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


def _loaders(
    data: FoldData, config: ExperimentConfig, inference: Inference, world: World, seed: int
) -> tuple[DataLoader[Any], CachedVolumeDataset, CachedVolumeDataset | None]:
    """Training loader (this rank's share of one seeded permutation per epoch), validation sets."""
    settings = config.training
    train = data.train.dataset(with_bern=config.bern_heads.enabled and has_bern(data.train))
    loader = DataLoader(
        train,
        batch_size=per_rank_batch(settings.batch_size, world),
        sampler=EpochPermutation(len(train), seed, world),
        num_workers=settings.loader_workers,
        pin_memory=inference.device.type == "cuda",
    )
    inner = data.inner_validation.dataset() if data.inner_validation is not None else None
    return loader, data.validation.dataset(), inner


def train_fold(
    fold: int,
    data: FoldData,
    config: ExperimentConfig,
    paths: RunPaths,
    fingerprints: dict[str, str] | None = None,
    resume: bool = False,
    world: World = World(),
) -> FoldSummary:
    """Train one fold and write ``fold_K/{best.safetensors,last.pt,history.csv,predictions.csv,summary.json}``.

    Every epoch scores the outer validation fold (``val_auroc``) and, for ``inner`` selection, the
    inner validation patients (``inner_auroc``). ``best.safetensors`` holds the checkpoint the
    configured selection picks; the last epoch's and the best-validation epoch's (the paper's
    optimistic choice) predictions are kept beside it. ``last.pt`` is saved after every epoch.
    Under torchrun every rank trains its share of each batch; only rank 0 writes files.

    Args:
        fingerprints: hashes of the configuration, manifest and splits; a resumed fold must match.
        resume: continue from ``last.pt`` (the last complete epoch) when it exists.
        world: the processes training this fold together (one without torchrun).
    """
    settings, fingerprints = config.training, fingerprints or {}
    inference = Inference.resolve(device_for(world, settings.device), settings.precision)
    heads = config.bern_heads.enabled and has_bern(data.train)
    if config.bern_heads.enabled and not heads:
        log.warning("fold %d: no Bern values among the training patients; Bern heads off", fold)
    state = FoldState.start(config, fold, inference, world, heads)
    if heads:
        state.network.set_distance_scale(data.train.bern)  # type: ignore[operator]
    weight = (
        class_weights(data.train.labels).to(inference.device) if settings.class_weighting else None
    )
    loaders = _loaders(data, config, inference, world, config.fold_seed(fold))
    paths.fold_dir(fold).mkdir(parents=True, exist_ok=True)
    if resume and paths.last_state(fold).is_file():
        saved = load_state(paths.last_state(fold))
        check_fingerprints(saved, fingerprints, fold)
        state.restore(saved, fold)
        log.info("fold %d: resumed after epoch %d", fold, state.next_epoch)
    started = time.perf_counter()
    job_epochs = settings.epochs * config.cross_validation.folds
    with epoch_bar(
        settings.epochs, f"fold {fold}", state.next_epoch, world.main, job_epochs
    ) as bar:
        while state.next_epoch < settings.epochs:
            where = f"fold {fold} epoch {state.next_epoch + 1}"
            record, probabilities = run_epoch(state, data, loaders, weight, inference, where)
            keep(state, record, probabilities, settings.selection, paths.best_weights(fold))
            state.history.append(record)
            checkpoint = state.checkpoint(fingerprints)  # a collective: every rank takes part
            if world.main:
                write_history(paths.history(fold), state.history)
                save_state(paths.last_state(fold), checkpoint)
            bar.epoch_done(where, settings.epochs, record)
    if settings.selection == "last" and world.main:
        state.weights_sha256 = save_weights(state.network, paths.best_weights(fold))
    if state.bern_weight > 0 and world.main:
        from sihnet.training.bern import write_bern_predictions

        write_bern_predictions(
            paths.fold_bern_predictions(fold),
            paths.best_weights(fold),
            fold,
            data.validation,
            loaders[1],
            inference,
        )
    summary = fold_summary(fold, state, data, config, inference, time.perf_counter() - started)
    if world.main:
        write_fold_outputs(paths, fold, state, data, summary)
    barrier(world)
    return summary
