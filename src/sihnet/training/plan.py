"""``sihnet train … --plan``: what a run will cost, measured on this device before it starts.

A few training steps and validation forwards of the configured network, canvas, batch and
precision on random volumes (no image is read or preprocessed): seconds per step and per scan, and
the peak memory of a step, with activation checkpointing off and on. Times per epoch and for the
whole run follow from the cohort's size. GPU memory is CUDA's peak allocation; on a CPU it is the
estimate of :mod:`sihnet.models.memory` (weights, gradients, optimiser state and the activations
autograd saves, computed on the meta device). Before anything is allocated, a canvas and batch
that cannot fit in the device's free memory are refused in one line.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from sihnet.bern import HEAD_ITEMS
from sihnet.config import ExperimentConfig
from sihnet.inference import Inference
from sihnet.models.inputs import map_views
from sihnet.models.memory import available_bytes, check_fits, training_bytes
from sihnet.training.step import Batch, StepSettings, train_step

WARMUP, TIMED = 1, 3


@dataclasses.dataclass(frozen=True)
class StepCost:
    """One configuration's measurement (times NaN where it does not fit and was not run).

    Attributes:
        peak_memory_gb: CUDA's measured peak on a GPU; on a CPU the estimate of
            :mod:`sihnet.models.memory` (weights, gradients, AdamW state, saved activations).
    """

    checkpointing: bool
    step_seconds: float
    scan_seconds: float
    peak_memory_gb: float
    fits: bool = True


def step_memory_bytes(
    config: ExperimentConfig, batch: int, precision: str, checkpointing: bool
) -> int:
    """Estimated peak bytes of one training step of the configured network, canvas and batch,
    computed without allocating (:func:`sihnet.models.memory.training_bytes`)."""
    from sihnet.models.densenet import build_model

    prep = config.preprocessing
    shapes: list[tuple[int, ...]] = [
        (batch, 1, *prep.size),
        *((batch, 1, *v.size) for v in prep.views),
    ]
    heads = config.bern_heads.enabled
    build = lambda: build_model(checkpointing, heads, prep.views)  # noqa: E731
    return training_bytes(build, shapes if prep.views else shapes[0], precision)


def check_training_fits(config: ExperimentConfig, batch: int, inference: Inference) -> None:
    """Refuse, before allocating, a canvas and batch whose training step cannot fit on the device.

    Raises:
        SihnetError: one line with the memory needed and free.
    """
    settings = config.training
    needed = step_memory_bytes(
        config, batch, inference.precision, settings.activation_checkpointing
    )
    canvas = "×".join(str(n) for n in config.preprocessing.size)
    check_fits(
        needed,
        inference.device,
        f"a training step at {canvas}, batch {batch}, {inference.precision}",
    )


def measure(
    config: ExperimentConfig, batch: int, precision: str, checkpointing: bool
) -> dict[str, float]:
    """Seconds per training step (the run's own step: :func:`sihnet.training.step.train_step`,
    with class weights, the Bern loss when the heads are on, the configured memory format), per
    validation scan, and peak memory of a step in GB."""
    from sihnet.models.densenet import build_model

    settings = config.training
    inference = Inference.resolve(settings.device, precision)  # type: ignore[arg-type]
    device = inference.device
    torch.manual_seed(0)
    heads = config.bern_heads.enabled
    prep = config.preprocessing
    network = build_model(checkpointing, heads, prep.views).to(device)
    step_settings = StepSettings(
        torch.ones(2, device=device) if settings.class_weighting else None,
        config.bern_heads.weight if heads else 0.0,
        settings.channels_last is True,
    )
    if step_settings.channels_last:
        network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate)
    scaler = inference.grad_scaler()
    bern = torch.rand(batch, len(HEAD_ITEMS), device=device) if heads else None
    views = [
        torch.rand(batch, 1, *size, device=device)
        for size in (prep.size, *(v.size for v in prep.views))
    ]
    images = tuple(views) if prep.views else views[0]
    data = Batch(images, torch.arange(batch, device=device) % 2, bern)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        train_step(network, network, optimizer, scaler, data, step_settings, inference)

    for _ in range(WARMUP):
        step()
    started = time.perf_counter()
    for _ in range(TIMED):
        step()
    step_seconds = (time.perf_counter() - started) / TIMED
    peak = (
        torch.cuda.max_memory_allocated(device) / 1024**3
        if cuda
        else step_memory_bytes(config, batch, precision, checkpointing) / 1024**3
    )
    started = time.perf_counter()
    one_scan = map_views(data.images, lambda view: view[:1])  # every view's first scan
    for _ in range(TIMED):
        inference.logits(network, one_scan)
    if cuda:
        torch.cuda.synchronize(device)
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
    check_training_fits(config, batch, inference)  # the configured setting, before allocating
    free = available_bytes(inference.device)
    costs = []
    for checkpointing in (False, True):
        needed = step_memory_bytes(config, batch, inference.precision, checkpointing)
        if needed > free:
            costs.append(StepCost(checkpointing, math.nan, math.nan, needed / 1024**3, False))
            continue
        values = measure(config, batch, inference.precision, checkpointing)
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
        if not cost.get("fits", True):
            lines.append(
                f"  activation checkpointing {state}: does not fit (needs about "
                f"{cost['peak_memory_gb']:.1f} GB per process)"
            )
            continue
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
