"""Several processes, one fold: ``torchrun --nproc_per_node N -m sihnet train …``.

torch.distributed does the work (DistributedDataParallel, SyncBatchNorm, the collectives); this
module only holds what a fold needs from it: who this process is, the sampler that gives each rank
its share of one seeded permutation, the exact weighted loss of the whole batch, the gathering of
validation scores (each scan once), and agreeing on a stop so every rank ends at the same step.

A run without torchrun is world size 1 and takes the same code path (no process group).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sihnet.errors import SihnetError


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The one process that writes files and logs progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_environment() -> World:
    """The world torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else one process."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """Rank 0 (or no torchrun): the process that may write files."""
    return os.environ.get("RANK", "0") in ("", "0")


@contextlib.contextmanager
def process_group(world: World, device: str) -> Iterator[None]:
    """Join the process group for the duration (NCCL when the processes train on GPUs, gloo on
    CPUs); no-op for one process. ``device``: the configured ``training.device``."""
    if not world.distributed or dist.is_initialized():
        yield
        return
    on_gpu = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if on_gpu else "gloo"
    if on_gpu:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    try:
        yield
    finally:
        dist.destroy_process_group()


def device_for(world: World, name: str) -> str:
    """Each torchrun process on its own GPU (``cuda:LOCAL_RANK``) when the device is CUDA/auto."""
    if world.distributed and torch.cuda.is_available() and name in ("auto", "cuda"):
        return f"cuda:{world.local_rank}"
    return name


def per_rank_batch(batch_size: int, world: World) -> int:
    """The configured batch is the global batch: each rank takes its share.

    Raises:
        SihnetError: the batch does not divide among the processes.
    """
    if batch_size % world.size:
        raise SihnetError(
            f"training.batch_size {batch_size} does not divide among {world.size} processes"
        )
    return batch_size // world.size


class EpochPermutation(torch.utils.data.Sampler[int]):
    """One seeded permutation of the training scans per epoch; rank r takes every world-th
    element from r (so the ranks' batches together are the single-process batch). The
    permutation is wrapped around to a multiple of the world size.

    Args:
        n: dataset size; seed: the fold's seed; world: the processes.
    """

    def __init__(self, n: int, seed: int, world: World) -> None:
        self.n, self.seed, self.world, self.epoch = n, seed, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        padded = -len(order) % self.world.size
        return order + order[:padded]

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation()[self.world.rank :: self.world.size])

    def __len__(self) -> int:
        return (self.n + self.world.size - 1) // self.world.size


def batch_loss(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, world: World
) -> tuple[torch.Tensor, float]:
    """The weighted cross-entropy of the whole (global) batch, as this rank's share.

    PyTorch's weighted mean divides by the batch's sum of weights; with the batch split over
    ranks, each rank divides its weighted sum by the global sum (all-reduced) and is scaled by
    the world size, because DDP averages gradients over ranks.

    Returns:
        The tensor to backpropagate, and the batch's loss as a number (equal on every rank).
    """
    logits = logits if logits.dtype == torch.float64 else logits.float()  # autocast: fp32 loss
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    weights = weight[labels].to(losses.dtype) if weight is not None else torch.ones_like(losses)
    local = torch.stack([(weights * losses).sum(), weights.sum()]).detach()
    total = local.clone()
    if world.distributed:
        dist.all_reduce(total)
    loss = (weights * losses).sum() / total[1] * world.size
    return loss, float(total[0] / total[1])


def shard(n: int, world: World) -> list[int]:
    """The scan indices this rank scores: every world-th from its rank (no padding, no duplicate)."""
    return list(range(world.rank, n, world.size))


def gather_scores(indices: list[int], scores: np.ndarray, n: int, world: World) -> np.ndarray:
    """Every rank's validation scores, each scan once, in scan order: (n,) on every rank."""
    if not world.distributed:
        return scores
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, (indices, scores.tolist()))
    out = np.full(n, np.nan)
    for part_indices, part_scores in parts:
        out[np.asarray(part_indices, dtype=int)] = part_scores
    return out


def agree_on_stop(signal_number: int | None, world: World, device: torch.device) -> int | None:
    """A stop any rank received, known to every rank (they stop after the same step)."""
    if not world.distributed:
        return signal_number
    flag = torch.tensor([signal_number or 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def gather_objects(value: Any, world: World) -> list[Any]:
    """``value`` of every rank, in rank order (one-element list for one process)."""
    if not world.distributed:
        return [value]
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, value)
    return parts


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast_error(message: str | None, world: World) -> None:
    """Raise the same one-line error on every rank when any rank (usually rank 0) has one."""
    messages = gather_objects(message, world)
    first = next((m for m in messages if m), None)
    if first:
        raise SihnetError(first)
