"""Where one epoch of a profile's training goes on this machine (issue: the demo's time).

    python benchmarks/epoch_profile.py [--profile quick] [--train 103] [--validation 26]

One epoch of the profile's network, canvas, batch, precision and augmentation on random volumes
the size of the demo's folds (103 training and 26 validation scans), with each part timed apart:
augmentation, forward + backward + optimiser step, validation scoring, writing ``last.pt`` and
the safetensors weights. Writes ``OUT/epoch_profile.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from sihnet.config import load_config
from sihnet.inference import Inference
from sihnet.models.densenet import build_model
from sihnet.models.weights import save_weights
from sihnet.training.augmentation import augment_batch, build_augmentation
from sihnet.training.checkpoint import save_state


def profile_epoch(profile: str, n_train: int, n_validation: int) -> dict[str, float]:
    """Seconds per part of one epoch (see the module docstring)."""
    config = load_config(profile)
    settings = config.training
    inference = Inference.resolve(settings.device, settings.precision)
    torch.manual_seed(0)
    model = build_model(settings.activation_checkpointing).to(inference.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    augmentation = build_augmentation(config.augmentation, config.preprocessing.spacing_mm, 0)
    size = list(config.preprocessing.size)
    parts = dict.fromkeys(
        ["augmentation", "forward_backward_step", "validation", "checkpoints"], 0.0
    )
    model.train()
    for start in range(0, n_train, settings.batch_size):
        batch = min(settings.batch_size, n_train - start)
        images, labels = torch.rand(batch, 1, *size), torch.arange(batch) % 2
        tick = time.perf_counter()
        images = augment_batch(images.to(inference.device), augmentation)
        parts["augmentation"] += time.perf_counter() - tick
        tick = time.perf_counter()
        with inference.autocast():
            loss = torch.nn.functional.cross_entropy(
                model(images).float(), labels.to(inference.device)
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        parts["forward_backward_step"] += time.perf_counter() - tick
    tick = time.perf_counter()
    inference.probabilities(model, (torch.rand(1, *size) for _ in range(n_validation)))
    parts["validation"] = time.perf_counter() - tick
    with tempfile.TemporaryDirectory() as temp:
        tick = time.perf_counter()
        save_state(
            Path(temp) / "last.pt",
            {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
        )
        save_weights(model, Path(temp) / "best.safetensors")
        parts["checkpoints"] = time.perf_counter() - tick
    return {**parts, "epoch": sum(parts.values()), "precision": inference.precision}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--train", type=int, default=103)
    parser.add_argument("--validation", type=int, default=26)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    result = profile_epoch(args.profile, args.train, args.validation)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "epoch_profile.json").write_text(json.dumps(result, indent=2))
    for name, value in result.items():
        print(f"{name:>24}: {value:.2f} s" if isinstance(value, float) else f"{name:>24}: {value}")


if __name__ == "__main__":
    main()
