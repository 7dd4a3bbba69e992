"""Run a few training steps of one fold's machinery, under ``torchrun`` or alone (a test helper,
not a test module): random but seeded volumes, augmentation off, the fold's model, optimiser,
sampler and loss. Rank 0 writes JSON: the loss of every step and every rank's parameter checksum.

    torchrun --nproc_per_node 2 tests/training/ddp_steps.py OUT.json [--checkpointing]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from sihnet.config import load_config
from sihnet.inference import Inference
from sihnet.training.distributed import (
    EpochPermutation,
    batch_loss,
    gather_objects,
    per_rank_batch,
    process_group,
    world_from_environment,
)
from sihnet.training.fold import FoldState, class_weights


def main() -> None:
    out, checkpointing = Path(sys.argv[1]), "--checkpointing" in sys.argv
    world = world_from_environment()
    torch.set_num_threads(1)
    # float64: DenseNet-121's gradients at 32^3 are ill-conditioned enough that float32 rounding
    # of two batch-norm implementations already differs visibly; in float64 they agree.
    torch.set_default_dtype(torch.float64)
    config = load_config(
        "quick",
        overrides={
            "preprocessing": {"spacing_mm": 8.0, "size": [32, 32, 32]},
            "augmentation": {"enabled": False},
            "training": {
                "precision": "fp32",
                "batch_size": 4,
                "activation_checkpointing": checkpointing,
            },
        },
    )
    generator = torch.Generator().manual_seed(5)
    images = torch.rand(8, 1, 32, 32, 32, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    inference = Inference(torch.device("cpu"), "fp32")
    with process_group(world, "cpu"):
        state = FoldState.start(config, 0, inference, world)
        weight = class_weights(labels.tolist()).double()
        sampler = EpochPermutation(len(images), config.fold_seed(0), world)
        batch = per_rank_batch(config.training.batch_size, world)
        order = list(sampler)
        losses = []
        state.model.train()
        for step in range(2):
            index = order[step * batch : (step + 1) * batch]
            logits = state.model(images[index])
            loss, value = batch_loss(logits, labels[index], weight, world)
            state.optimizer.zero_grad()
            loss.backward()
            state.optimizer.step()
            losses.append(value)
        checksum = float(sum(p.detach().double().sum() for p in state.model.parameters()))
        checksums = gather_objects(checksum, world)
        if world.main:
            out.write_text(json.dumps({"losses": losses, "checksums": checksums}))


if __name__ == "__main__":
    main()
