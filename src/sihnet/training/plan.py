"""``sihnet train … --plan``: what a run will cost, measured on this device before it starts.

A few training steps and validation forwards of the configured network, canvas, batch and
precision on random volumes (no image is read or preprocessed): seconds per step and per scan, and
the peak memory of a step, with activation checkpointing off and on. Times per epoch and for the
whole run follow from the cohort's size. GPU memory is CUDA's peak allocation; on a CPU it is the
peak of live tensors (weights, gradients, optimiser state, activations) during one step, counted by
PyTorch's own ``MemTracker`` (the process's resident peak is not readable in every sandbox).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from sihnet.config import ExperimentConfig
from sihnet.inference import Inference

WARMUP, TIMED = 1, 3


@dataclasses.dataclass(frozen=True)
class StepCost:
    """One configuration's measurement."""

    checkpointing: bool
    step_seconds: float
    scan_seconds: float
    peak_memory_gb: float


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    inference: Inference,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> None:
    """One optimiser step of cross-entropy on ``images`` (N, 1, X, Y, Z) in the inference's
    precision (fp16 through the loss scaler), finished on the device before it returns."""
    with inference.autocast():
        loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
    optimizer.zero_grad()
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    if inference.device.type == "cuda":
        torch.cuda.synchronize(inference.device)


def measure(
    size: list[int], batch: int, device: str, precision: str, checkpointing: bool
) -> dict[str, float]:
    """Seconds per training step, per validation scan, and peak memory of a step in GB."""
    from sihnet.models.densenet import build_model

    inference = Inference.resolve(device, precision)  # type: ignore[arg-type]
    torch.manual_seed(0)
    model = build_model(checkpointing).to(inference.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = inference.grad_scaler()
    images = torch.rand(batch, 1, *size, device=inference.device)
    labels = torch.arange(batch, device=inference.device) % 2
    cuda = inference.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(inference.device)

    def step() -> None:
        train_step(model, optimizer, scaler, inference, images, labels)

    for _ in range(WARMUP):
        step()
    started = time.perf_counter()
    for _ in range(TIMED):
        step()
    step_seconds = (time.perf_counter() - started) / TIMED
    peak = (
        torch.cuda.max_memory_allocated(inference.device) / 1024**3
        if cuda
        else peak_tensor_bytes(step, model) / 1024**3
    )
    started = time.perf_counter()
    for _ in range(TIMED):
        inference.logits(model, images[:1])
    if cuda:
        torch.cuda.synchronize(inference.device)
    return {"step": step_seconds, "scan": (time.perf_counter() - started) / TIMED, "peak_gb": peak}


def peak_tensor_bytes(step: Callable[[], None], model: torch.nn.Module) -> int:
    """Peak bytes of live tensors on any device while ``step()`` runs (PyTorch's ``MemTracker``:
    parameters, gradients, optimiser state and activations; no allocator overhead)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        step()
    peaks = tracker.get_tracker_snapshot("peak")
    return int(max((snapshot["Total"] for snapshot in peaks.values()), default=0))


def plan_run(config: ExperimentConfig, n_patients: int, processes: int = 1) -> dict[str, Any]:
    """The measured costs and the run's estimated duration (see the module docstring)."""
    settings, cv = config.training, config.cross_validation
    inference = Inference.resolve(settings.device, settings.precision)
    batch = max(1, settings.batch_size // processes)
    size = list(config.preprocessing.size)
    costs = []
    for checkpointing in (False, True):
        values = measure(size, batch, settings.device, inference.precision, checkpointing)
        costs.append(StepCost(checkpointing, values["step"], values["scan"], values["peak_gb"]))
    validation = n_patients // cv.folds
    training = n_patients - validation
    if settings.selection == "inner":
        training = round(training * (1 - settings.inner_validation_fraction))
    steps = -(-training // settings.batch_size)
    chosen = costs[int(settings.activation_checkpointing)]
    epoch = steps * chosen.step_seconds + (n_patients - training) * chosen.scan_seconds / processes
    return {
        "device": str(inference.device),
        "precision": inference.precision,
        "processes": processes,
        "batch_per_process": batch,
        "canvas": size,
        "steps_per_epoch": steps,
        "costs": [dataclasses.asdict(c) for c in costs],
        "epoch_seconds": epoch,
        "run_hours": epoch * settings.epochs * cv.folds / 3600,
        "epochs": settings.epochs,
        "folds": cv.folds,
        "activation_checkpointing": settings.activation_checkpointing,
    }


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """The plan as a few lines for the terminal."""
    canvas = "×".join(str(n) for n in plan["canvas"])
    lines = [
        f"plan on {plan['device']} ({plan['precision']}), {plan['processes']} process(es), "
        f"batch {plan['batch_per_process']} per process, canvas {canvas}:"
    ]
    for cost in plan["costs"]:
        state = "on " if cost["checkpointing"] else "off"
        lines.append(
            f"  activation checkpointing {state}: {cost['step_seconds']:.2f} s per training step, "
            f"{cost['scan_seconds']:.3f} s per validation scan, peak memory {cost['peak_memory_gb']:.2f} GB per process"
        )
    lines.append(
        f"  per epoch {plan['steps_per_epoch']} steps ≈ {plan['epoch_seconds'] / 60:.1f} min; whole run "
        f"{plan['folds']} folds × {plan['epochs']} epochs ≈ {plan['run_hours']:.1f} h "
        f"(checkpointing {'on' if plan['activation_checkpointing'] else 'off'}, as configured)"
    )
    return lines
