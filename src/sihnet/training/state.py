"""A fold's training state: network, optimiser, schedule, augmentation, precision and selection,
started fresh (seeded, with the run's precision policy), saved after every epoch and restored from
its resume checkpoint."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from sihnet.config import ExperimentConfig, TrainingConfig
from sihnet.errors import SihnetError
from sihnet.inference import Inference
from sihnet.models.densenet import build_model
from sihnet.models.sync_batchnorm import global_batchnorm
from sihnet.training.augmentation import build_view_augmentations
from sihnet.training.checkpoint import capture_rng, restore_rng
from sihnet.training.distributed import World, gather_objects
from sihnet.training.precision import PrecisionPolicy
from sihnet.training.probe import ProbeResult
from sihnet.training.records import TrainedFold
from sihnet.training.selection import Selection
from sihnet.training.step import Batch, StepSettings

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


def _distributed(
    network: torch.nn.Module, device: torch.device, world: World
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The network and what steps it: itself with one process; with several, its BatchNorm made
    to see the whole global batch (as one process would) and DistributedDataParallel around it."""
    if not world.distributed:
        return network, network
    if device.type == "cuda":
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    else:  # PyTorch's SyncBatchNorm is GPU-only
        network = global_batchnorm(network)
    devices = [device] if device.type == "cuda" else None
    return network, torch.nn.parallel.DistributedDataParallel(network, device_ids=devices)


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
        policy: PrecisionPolicy | None = None,
    ) -> FoldState:
        """A fresh fold: seeded initialisation (the same on every rank), the Bern heads' distance
        scale, the precision probe (rank 0 measures on ``probe_batch`` when something is ``auto``;
        every rank takes its choice), AdamW, the schedule, augmentation (seeded per rank);
        SyncBatchNorm and DDP with several processes.

        Args:
            inference: the device, and the precision when it is not ``auto``.
            bern_targets: the training scans' Bern fields (N, 6) for the distance scale.
            policy: the run's precision decisions (a fresh one when not given).
        """
        settings, seed = config.training, config.fold_seed(fold)
        policy = policy if policy is not None else PrecisionPolicy()
        torch.manual_seed(seed)
        views = config.preprocessing.views
        network = build_model(settings.activation_checkpointing, bern_heads, views)
        if bern_heads and bern_targets is not None:
            network.set_distance_scale(bern_targets)  # type: ignore[operator]
        network = network.to(inference.device)
        bern_weight = config.bern_heads.weight if bern_heads else 0.0
        step = StepSettings(weight, bern_weight, settings.channels_last is True)
        inference, step, probed, fallback = policy.settle(
            network, probe_batch, step, inference, config, world, fold
        )
        if step.channels_last:
            network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        network, model = _distributed(network, inference.device, world)
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
