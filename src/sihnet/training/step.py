"""The training step: one function for training, the precision probe, ``--plan`` and the GPU
benchmark, so that what is timed or probed is the step a run takes.

A step is the paper's weighted cross-entropy (plus the masked Bern loss for networks with the Bern
heads), backpropagated in the inference's precision (fp16 through a loss scaler), and an AdamW step
that is skipped when the gradient is not finite.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from sihnet.inference import Inference
from sihnet.models.bern_heads import bern_loss, has_heads, split_outputs
from sihnet.models.inputs import map_views
from sihnet.training.distributed import World, batch_loss


@dataclasses.dataclass(frozen=True)
class Batch:
    """A training batch on the device.

    Attributes:
        images: (N, 1, X, Y, Z) float32, augmented; a tuple of them with views.
        labels: (N,) int64, 1 = fistula.
        bern: (N, 6) float32 reader's Bern fields (NaN = missing), or None.
    """

    images: Any
    labels: torch.Tensor
    bern: torch.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """What shapes a step besides the network and the batch.

    Attributes:
        weight: class weights (2,) of the weighted cross-entropy, or None (unweighted).
        bern_weight: weight of the auxiliary Bern loss; 0 without heads.
        channels_last: feed the batch as ``channels_last_3d`` (the network converted likewise).
    """

    weight: torch.Tensor | None = None
    bern_weight: float = 0.0
    channels_last: bool = False


def step_loss(
    model: torch.nn.Module,
    network: torch.nn.Module,
    batch: Batch,
    settings: StepSettings,
    inference: Inference,
    world: World = World(),
) -> tuple[torch.Tensor, float]:
    """Forward pass and loss of one batch in the inference's precision.

    Args:
        model: what is called (``network``, or it wrapped in DistributedDataParallel).
        network: the network itself (its Bern head and distance scale).

    Returns:
        The loss to backpropagate, and the batch's loss as a number (equal on every rank).
    """
    images = batch.images
    if settings.channels_last:
        images = map_views(images, lambda v: v.contiguous(memory_format=torch.channels_last_3d))
    with inference.autocast():
        logits, raw = split_outputs(model(images))
    loss, value = batch_loss(logits, batch.labels, settings.weight, world)
    heads = settings.bern_weight > 0 and has_heads(network)
    if heads and raw is not None and batch.bern is not None:
        extra = bern_loss(raw, batch.bern, network)
        loss = loss + settings.bern_weight * extra
        value += settings.bern_weight * float(extra.detach())
    return loss, value


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """Gradients of ``loss`` (scaled for fp16, then unscaled)."""
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()


def train_step(
    model: torch.nn.Module,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    batch: Batch,
    settings: StepSettings,
    inference: Inference,
    world: World = World(),
) -> float | None:
    """One optimiser step; finished on the device before it returns.

    A non-finite gradient (seen with bf16 kernels on some CPUs and grids) would poison the weights:
    that step is skipped, as AMP's GradScaler does; under DDP the gradients are averaged first, so
    every rank decides alike.

    Returns:
        The batch's loss, or None when the step was skipped for a non-finite gradient.
    """
    loss, value = step_loss(model, network, batch, settings, inference, world)
    optimizer.zero_grad(set_to_none=True)
    backward(loss, scaler)
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(network.parameters(), max_norm=math.inf)
    finite = bool(torch.isfinite(norm))
    if scaler is not None:
        scaler.step(optimizer)  # skips non-finite steps itself
        scaler.update()
    elif finite:
        optimizer.step()
    if inference.device.type == "cuda":
        torch.cuda.synchronize(inference.device)
    return value if finite and math.isfinite(value) else None
