"""Check that several processes train what one process trains, on this machine or cluster:
a few training steps of one fold's machinery (the fold's model, optimiser, sampler and loss;
augmentation off) on seeded random volumes, under ``torchrun`` or alone. Rank 0 writes JSON: the
loss of every step, every rank's parameter checksum and the seconds per step.

    torchrun --nproc_per_node 1 -m sihnet.training.ddp_check one.json
    torchrun --nproc_per_node 2 -m sihnet.training.ddp_check two.json    # the same losses

Options: ``--size N`` (canvas N^3, default 32), ``--steps K`` (default 2), ``--float32`` (the
default float64 makes the comparison exact: DenseNet-121's gradients are ill-conditioned enough
that float32 rounding of two batch-norm implementations already differs visibly).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from sihnet.config import load_config
from sihnet.inference import Inference
from sihnet.training.distributed import (
    EpochPermutation,
    gather_objects,
    per_rank_batch,
    process_group,
    world_from_environment,
)
from sihnet.training.samples import class_weights
from sihnet.training.state import FoldState
from sihnet.training.step import Batch, StepSettings, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--checkpointing", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run_check(args.size, args.steps, not args.float32, args.checkpointing)
    if result is not None:
        args.out.write_text(json.dumps(result))


def run_check(
    size: int = 32, steps: int = 2, float64: bool = True, checkpointing: bool = False
) -> dict[str, Any] | None:
    """``steps`` training steps of batch 4 on this process's share (module docstring); rank 0
    returns the losses, every rank's parameter checksum and the seconds per step, the others None.
    Torch's default dtype is restored afterwards."""
    world = world_from_environment()
    dtype = torch.float64 if float64 else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return _steps(world, size, steps, dtype, checkpointing)
    finally:
        torch.set_default_dtype(previous)


def _steps(
    world: Any, size: int, steps: int, dtype: torch.dtype, checkpointing: bool
) -> dict[str, Any] | None:
    config = load_config(
        "quick",
        overrides={
            "preprocessing": {"spacing_mm": 8.0, "size": [size] * 3},
            "augmentation": {"enabled": False},
            "training": {
                "precision": "fp32",
                "batch_size": 4,
                "activation_checkpointing": checkpointing,
            },
        },
    )
    count = 4 * steps
    images = torch.rand(
        count, 1, *[size] * 3, generator=torch.Generator().manual_seed(5), dtype=dtype
    )
    labels = torch.arange(count) % 2
    with process_group(world, "cpu"):
        state = FoldState.start(config, 0, Inference(torch.device("cpu"), "fp32"), world)
        weight = class_weights(labels.tolist()).to(dtype)
        order = list(EpochPermutation(count, config.fold_seed(0), world))
        share = per_rank_batch(config.training.batch_size, world)
        losses, started = [], time.perf_counter()
        state.model.train()
        for step in range(steps):
            if step == 1:
                started = time.perf_counter()  # the first step warms up
            index = order[step * share : (step + 1) * share]
            batch = Batch(images[index], labels[index])
            value = train_step(
                state.model, state.network, state.optimizer, None, batch,
                StepSettings(weight), state.inference, world,
            )  # fmt: skip
            losses.append(value)
        seconds = (time.perf_counter() - started) / max(1, steps - 1)
        checksum = float(sum(p.detach().double().sum() for p in state.model.parameters()))
        checksums = gather_objects(checksum, world)
    if not world.main:
        return None
    return {"losses": losses, "checksums": checksums, "seconds_per_step": seconds}


if __name__ == "__main__":
    main()
