"""Train one cross-validation fold: the paper's optimiser, schedule, loss and checkpoint selection."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from sihnet.config import ExperimentConfig, TrainingConfig
from sihnet.errors import SihnetError, TrainingInterrupted
from sihnet.inference import Inference, resolve_device
from sihnet.models.densenet import build_model
from sihnet.models.inputs import map_views, shapes
from sihnet.models.sync_batchnorm import global_batchnorm
from sihnet.models.weights import save_weights
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import default_cache_dir
from sihnet.training.augmentation import augment_batch, build_view_augmentations
from sihnet.training.checkpoint import (
    capture_rng,
    load_state,
    restore_rng,
    save_state,
    stop_requested,
)
from sihnet.training.dataset import CachedVolumeDataset
from sihnet.training.distributed import (
    EpochPermutation,
    World,
    agree_on_stop,
    barrier,
    device_for,
    gather_objects,
    gather_scores,
    per_rank_batch,
    shard,
)
from sihnet.training.probe import DECISIONS_FILE, ProbeResult, decide, describe, kernel_defect
from sihnet.training.records import (
    FoldSummary,
    TrainedFold,
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
from sihnet.training.selection import Selection
from sihnet.training.step import Batch, StepSettings, train_step

log = logging.getLogger(__name__)

# A run never skips more than this share of an epoch's steps for non-finite gradients: beyond it
# a reduced-precision fold falls back to fp32, and an fp32 fold stops with an error. In bf16 a
# single non-finite step already falls back (bf16 has fp32's range: its kernels are failing).
MAX_SKIPPED_SHARE = 0.10


class NonFiniteStepsError(Exception):
    """Too many steps of an epoch had non-finite gradients in a reduced precision."""


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
        inference: the device and the precision the fold trains and validates in now.
        step: the loss settings (class weights, Bern weight, memory format).
        scaler: fp16 loss scaling, else None.
        probe: what ``auto`` measured, when it did; fallback: the switch to fp32, when it happened.
    """

    network: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augmentation: Any
    inference: Inference
    step: StepSettings
    selection: Selection
    world: World = dataclasses.field(default_factory=World)
    scaler: torch.amp.GradScaler | None = None
    next_epoch: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    weights_sha256: str = ""
    probe: ProbeResult | None = None
    fallback: dict[str, Any] | None = None
    skipped_steps: int = 0

    @classmethod
    def start(
        cls,
        config: ExperimentConfig,
        fold: int,
        inference: Inference,
        world: World = World(),
        bern_heads: bool = False,
        probe_batch: Batch | None = None,
        bern_targets: Any = None,
        weight: torch.Tensor | None = None,
    ) -> FoldState:
        """A fresh fold: seeded initialisation (the same on every rank), the Bern heads' distance
        scale, the precision probe (rank 0 measures on ``probe_batch`` when something is ``auto``;
        every rank takes its choice), AdamW, the schedule, augmentation (seeded per rank);
        SyncBatchNorm and DDP with several processes.

        Args:
            inference: the device, and the precision when it is not ``auto``.
            bern_targets: the training scans' Bern fields (N, 6) for the distance scale.
        """
        settings, seed = config.training, config.fold_seed(fold)
        torch.manual_seed(seed)
        views = config.preprocessing.views
        network = build_model(settings.activation_checkpointing, bern_heads, views)
        if bern_heads and bern_targets is not None:
            network.set_distance_scale(bern_targets)  # type: ignore[operator]
        network = network.to(inference.device)
        bern_weight = config.bern_heads.weight if bern_heads else 0.0
        step = StepSettings(weight, bern_weight, settings.channels_last is True)
        probed = None
        if probe_batch is not None and "auto" in (settings.precision, settings.channels_last):
            probed = probe_settings(network, probe_batch, step, inference.device, config, world)
            inference = Inference(inference.device, probed.precision)
            step = dataclasses.replace(step, channels_last=probed.channels_last)
        fallback = None
        if (
            probe_batch is not None
            and settings.precision != "auto"
            and inference.precision != "fp32"
        ):
            fallback = check_configured_precision(network, probe_batch, inference, step, fold)
            inference = Inference(inference.device, "fp32") if fallback else inference
        if step.channels_last:
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
        spacings = [config.preprocessing.spacing_mm, *(v.spacing_mm for v in views)]
        augmentation = build_view_augmentations(
            config.augmentation, spacings, seed + 7919 * world.rank
        )
        selection = Selection(settings.selection)
        state = cls(
            network, model, optimizer, scheduler, augmentation, inference, step, selection, world
        )
        state.scaler, state.probe, state.fallback = inference.grad_scaler(), probed, fallback
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
            **self.selection.state(),
            "weights_sha256": self.weights_sha256,
            "rng": gather_objects(capture_rng(self.augmentation), self.world),
            "world_size": self.world.size,
            "fingerprints": fingerprints,
            "precision": self.inference.precision,
            "precision_fallback": self.fallback or {},
            "skipped_steps": self.skipped_steps,
        }

    def restore(self, state: dict[str, Any], fold: int) -> None:
        """Continue from a resume state written by :meth:`checkpoint`, in the precision it was
        written in.

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
        precision = state.get("precision", self.inference.precision)
        if precision != self.inference.precision:
            self.inference = Inference(self.inference.device, precision)
            self.scaler = self.inference.grad_scaler()
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        randoms = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        restore_rng(randoms[self.world.rank], self.augmentation)
        self.history = list(state["history"])
        self.selection = Selection.from_state(self.selection.rule, state)
        self.weights_sha256, self.next_epoch = state["weights_sha256"], state["epoch"] + 1
        self.fallback = state.get("precision_fallback") or None
        self.skipped_steps = int(state.get("skipped_steps", 0))

    def fall_back(self, good: dict[str, Any], fold: int, reason: str) -> None:
        """Continue in fp32 from ``good`` (the state before the failed epoch), saying so."""
        was, epoch = self.inference.precision, good["epoch"] + 1
        log.warning(
            "fold %d epoch %d: %s in %s; continuing in fp32 from the last good epoch",
            fold, epoch + 1, reason, was,
        )  # fmt: skip
        self.inference = Inference(self.inference.device, "fp32")
        self.scaler = None
        self.restore({**good, "precision": "fp32", "scaler": {}}, fold)
        self.fallback = {"from": was, "to": "fp32", "epoch": epoch, "reason": reason}

    def trained(self, seconds: float) -> TrainedFold:
        """How the fold was trained, for its summary."""
        return TrainedFold(
            self.weights_sha256,
            self.inference.precision,
            self.step.channels_last,
            self.probe.as_json() if self.probe is not None else None,
            self.fallback,
            self.skipped_steps,
            seconds,
        )


_PROBED: dict[tuple[Any, ...], ProbeResult] = {}
_KERNELS: dict[tuple[Any, ...], str | None] = {}


def check_configured_precision(
    network: torch.nn.Module, batch: Batch, inference: Inference, step: StepSettings, fold: int
) -> dict[str, Any] | None:
    """A configured bf16/fp16 whose convolution kernels are wrong at this network's shapes
    (:func:`sihnet.training.probe.kernel_defect`; checked once per process and shape, on every
    rank alike) is not used: the fold trains in fp32 from the start, with a warning, and the
    returned ``precision_fallback`` says why (None when the kernels are sound)."""
    key = (str(inference.device), shapes(batch.images), inference.precision, step.channels_last)
    if key not in _KERNELS:
        _KERNELS[key] = kernel_defect(network, batch.images, inference, step.channels_last)
    defect = _KERNELS[key]
    if defect is None:
        return None
    log.warning(
        "fold %d: %s as configured, but %s; training in fp32", fold, inference.precision, defect
    )
    return {"from": inference.precision, "to": "fp32", "epoch": 0, "reason": defect}


def probe_settings(
    network: torch.nn.Module,
    batch: Batch,
    step: StepSettings,
    device: torch.device,
    config: ExperimentConfig,
    world: World,
) -> ProbeResult:
    """The probe's choice for this fold: decided by rank 0 on the first fold of this process
    that needs it (later folds of the same grid, batch and network reuse it), taken by all ranks;
    measured once per machine and job, then reused (:func:`sihnet.training.probe.decide`)."""
    settings = config.training
    key = (str(device), shapes(batch.images), settings.precision, settings.channels_last,
           step.bern_weight > 0, settings.activation_checkpointing)  # fmt: skip
    result = _PROBED.get(key)
    if result is None and world.main:
        job = dict(zip(("device", "shapes", "precision", "channels_last", "bern", "checkpointing"),
                       key, strict=True))  # fmt: skip
        store = default_cache_dir() / DECISIONS_FILE
        result = decide(network, batch, step, device, settings.precision, settings.channels_last,
                        job, store)  # fmt: skip
        _PROBED[key] = result
    elif result is not None:
        log.info("precision probe (as measured for an earlier fold): %s", describe(result))
    chosen = gather_objects(result, world)[0]
    assert chosen is not None
    return chosen


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
        accepted = {fingerprints.get(key)}
        if key == "config":  # a state of an older version holds the file's bytes' hash
            accepted.add(fingerprints.get("config_file"))
        if stored.get(key) not in accepted:
            raise SihnetError(f"cannot resume fold {fold}: the {what} changed since it was started")


def _batch(items: list[Any], device: torch.device) -> Batch:
    images, labels, *targets = items
    bern = targets[0].to(device) if targets else None
    moved = map_views(images, lambda view: view.to(device, non_blocking=True))
    return Batch(moved, labels.to(device), bern)


def train_epoch(
    state: FoldState, loader: DataLoader[tuple[torch.Tensor, int]], where: str
) -> float:
    """One pass over this rank's share of the training data; returns the mean loss of the
    global batches stepped.

    Raises:
        NonFiniteStepsError: a bf16 step, or more than ``MAX_SKIPPED_SHARE`` of fp16 steps, had a
            non-finite gradient (the caller falls back to fp32).
        SihnetError: more than ``MAX_SKIPPED_SHARE`` of fp32 steps had one.
        TrainingInterrupted: after the current step, when SIGINT/SIGTERM asked any rank to stop.
    """
    state.model.train()
    losses, skipped, device = [], 0, state.inference.device
    precision = state.inference.precision
    for items in loader:
        batch = _batch(items, device)
        batch = dataclasses.replace(batch, images=augment_batch(batch.images, state.augmentation))
        value = train_step(
            state.model, state.network, state.optimizer, state.scaler, batch, state.step,
            state.inference, state.world,
        )  # fmt: skip
        if value is None:
            skipped += 1
            if precision == "bf16":
                raise NonFiniteStepsError("a step had non-finite gradients")
        else:
            losses.append(value)
        signal_number = agree_on_stop(stop_requested(), state.world, device)
        if signal_number is not None:
            raise TrainingInterrupted(signal_number)
    steps = skipped + len(losses)
    if skipped > MAX_SKIPPED_SHARE * steps:
        message = f"{skipped} of {steps} steps had non-finite gradients"
        if precision != "fp32":
            raise NonFiniteStepsError(message)
        raise SihnetError(
            f"{where}: {message} (more than {MAX_SKIPPED_SHARE:.0%}) even in fp32; "
            "check the images and the learning rate"
        )
    if skipped:
        log.warning("%s: %d of %d step(s) skipped for non-finite gradients", where, skipped, steps)
        state.skipped_steps += skipped
    return float(np.mean(losses))


def score(
    state: FoldState, samples: Samples, data: CachedVolumeDataset
) -> tuple[np.ndarray, float]:
    """Patient-level probabilities (first-seen patient order) and their AUROC. Each rank scores
    its share of the scans; the scores are gathered so that every scan counts once."""
    indices = shard(len(data), state.world)
    mine = state.inference.probabilities(state.network, (data[i][0] for i in indices))
    scans = gather_scores(indices, mine, len(data), state.world)
    _, labels, probabilities = patient_level(samples, scans)
    return probabilities, auroc_or_nan(labels, probabilities)


def run_epoch(
    state: FoldState,
    data: FoldData,
    loaders: tuple[DataLoader[Any], CachedVolumeDataset, CachedVolumeDataset | None],
    where: str,
) -> tuple[dict[str, float], np.ndarray]:
    """Train one epoch, score the validation (and inner validation) patients: one history record."""
    tick, epoch = time.perf_counter(), state.next_epoch
    loader, validation, inner = loaders
    sampler = loader.sampler
    if isinstance(sampler, EpochPermutation):
        sampler.set_epoch(epoch)
    lr = state.optimizer.param_groups[0]["lr"]
    loss = train_epoch(state, loader, where)
    state.scheduler.step()
    probabilities, val_auroc = score(state, data.validation, validation)
    inner_auroc = float("nan")
    if inner is not None and data.inner_validation is not None:
        inner_auroc = score(state, data.inner_validation, inner)[1]
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
    data: FoldData, config: ExperimentConfig, device: torch.device, world: World, seed: int
) -> tuple[DataLoader[Any], CachedVolumeDataset, CachedVolumeDataset | None]:
    """Training loader (this rank's share of one seeded permutation per epoch), validation sets."""
    settings = config.training
    train = data.train.dataset(with_bern=config.bern_heads.enabled and has_bern(data.train))
    loader = DataLoader(
        train,
        batch_size=per_rank_batch(settings.batch_size, world),
        sampler=EpochPermutation(len(train), seed, world),
        num_workers=settings.loader_workers,
        pin_memory=device.type == "cuda",
    )
    inner = data.inner_validation.dataset() if data.inner_validation is not None else None
    return loader, data.validation.dataset(), inner


def _first_batch(loader: DataLoader[Any], device: torch.device) -> Batch:
    """The fold's first training batch, not augmented (the probe consumes no random state)."""
    sampler = loader.sampler
    if isinstance(sampler, EpochPermutation):
        sampler.set_epoch(0)
    return _batch(next(iter(loader)), device)


def _start(
    fold: int,
    data: FoldData,
    config: ExperimentConfig,
    world: World,
    loaders: tuple[DataLoader[Any], CachedVolumeDataset, CachedVolumeDataset | None],
    resuming: bool,
) -> FoldState:
    """The fold's state: probed (when ``auto`` and not resuming), heads on when the training
    patients have Bern values."""
    settings = config.training
    device = resolve_device(device_for(world, settings.device))
    heads = config.bern_heads.enabled and has_bern(data.train)
    if config.bern_heads.enabled and not heads:
        log.warning("fold %d: no Bern values among the training patients; Bern heads off", fold)
    weight = class_weights(data.train.labels).to(device) if settings.class_weighting else None
    fixed = "fp32" if settings.precision == "auto" else settings.precision
    inference = Inference.resolve(str(device), fixed)
    batch = None if resuming else _first_batch(loaders[0], device)
    return FoldState.start(config, fold, inference, world, heads, batch, data.train.bern, weight)


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
    An epoch whose reduced-precision steps go non-finite is trained again in fp32 from the last
    good epoch (said in the log and the summary). Under torchrun every rank trains its share of
    each batch; only rank 0 writes files.

    Args:
        fingerprints: hashes of the configuration, manifest and splits; a resumed fold must match.
        resume: continue from ``last.pt`` (the last complete epoch) when it exists.
        world: the processes training this fold together (one without torchrun).
    """
    settings, fingerprints = config.training, fingerprints or {}
    device = resolve_device(device_for(world, settings.device))
    loaders = _loaders(data, config, device, world, config.fold_seed(fold))
    resuming = resume and paths.last_state(fold).is_file()
    state = _start(fold, data, config, world, loaders, resuming)
    paths.fold_dir(fold).mkdir(parents=True, exist_ok=True)
    if resuming:
        saved = load_state(paths.last_state(fold))
        check_fingerprints(saved, fingerprints, fold)
        state.restore(saved, fold)
        log.info(
            "fold %d: resumed after epoch %d (%s)",
            fold,
            state.next_epoch,
            state.inference.precision,
        )
    started = time.perf_counter()
    job_epochs = settings.epochs * config.cross_validation.folds
    with epoch_bar(
        settings.epochs, f"fold {fold}", state.next_epoch, world.main, job_epochs
    ) as bar:
        while state.next_epoch < settings.epochs:
            where = f"fold {fold} epoch {state.next_epoch + 1}"
            good = None
            if state.inference.precision != "fp32":
                good = copy.deepcopy(state.checkpoint(fingerprints))
            try:
                record, probabilities = run_epoch(state, data, loaders, where)
            except NonFiniteStepsError as error:
                assert good is not None
                state.fall_back(good, fold, str(error))
                continue
            if state.selection.update(record, probabilities) and world.main:
                state.weights_sha256 = save_weights(state.network, paths.best_weights(fold))
            state.history.append(record)
            checkpoint = state.checkpoint(fingerprints)  # a collective: every rank takes part
            if world.main:
                write_history(paths.history(fold), state.history)
                save_state(paths.last_state(fold), checkpoint)
            bar.epoch_done(where, settings.epochs, record)
    if settings.selection == "last" and world.main:
        state.weights_sha256 = save_weights(state.network, paths.best_weights(fold))
    if state.step.bern_weight > 0 and world.main:
        from sihnet.training.bern import write_bern_predictions

        write_bern_predictions(
            paths.fold_bern_predictions(fold),
            paths.best_weights(fold),
            fold,
            data.validation,
            loaders[1],
            state.inference,
            config.preprocessing.views,
        )
    summary = fold_summary(
        fold, state.selection, data, config, state.trained(time.perf_counter() - started)
    )
    if world.main:
        write_fold_outputs(paths, fold, state.selection, data, summary)
    barrier(world)
    return summary
