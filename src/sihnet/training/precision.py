"""A run's precision policy: how its folds choose their precision and memory format.

``training.precision: auto`` and ``training.channels_last: auto`` are decided by
:func:`sihnet.training.probe.probe`; a configured bf16/fp16 is checked for wrong convolution kernels
(:func:`sihnet.training.probe.kernel_defect`) and replaced by fp32 when they are.

Both choices change the numbers a run computes, and a timing taken on a shared machine depends on
its load (the same 2-core machine chose ``channels_last_3d`` at 1.08x when quiet and refused it at
0.40x beside another job). So a decision is measured once per machine and job and then reused
(:func:`decide`): it is kept in ``precision_decisions.json`` of the preprocessed-volume cache
(``$SIHNET_CACHE_DIR``), keyed by the processor, core and thread counts, the torch build, the
device, the network and its input shapes, and the settings probed. Every later run with the same key
trains with the same choice whatever the load; ``summary.json`` says when the choice was measured
and whether it was reused. Deleting the file measures again. A decision is kept only when it was
measured on a quiet machine (1-minute load under 0.75 per core: channels_last measured "4.16x
faster" beside another job was 0.98x quiet), and a kept one is reused only while it agrees with
its own recorded timings and gradient cosine (an edited one is measured again).

A :class:`PrecisionPolicy` belongs to one run: its folds of the same grid, batch and network share
one decision and one kernel check (no process-wide state).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch
from pydantic import RootModel

from sihnet.atomic import write_json_atomic
from sihnet.config import ExperimentConfig
from sihnet.hashing import text_sha256
from sihnet.inference import Inference
from sihnet.models.inputs import shapes
from sihnet.preprocessing.cache import default_cache_dir
from sihnet.training.distributed import World, gather_objects
from sihnet.training.probe import ProbeResult, describe, kernel_defect, probe
from sihnet.training.step import Batch, StepSettings

log = logging.getLogger(__name__)

DECISIONS_FILE = "precision_decisions.json"
DECISIONS_VERSION = 1  # bump when the probe's rule changes: older decisions are measured again


class PrecisionDecisions(RootModel[dict[str, ProbeResult]]):
    """``precision_decisions.json``: a decision's key (network, device, job) -> the decision."""


def machine(device: torch.device) -> dict[str, Any]:
    """What a timing depends on besides the job: processor, cores, torch threads, torch build and,
    on a GPU, the device's name."""
    processor = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        processor = names[0] if names else processor
    except OSError:
        pass
    described = {
        "processor": processor or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device.type,
    }
    if device.type == "cuda":
        described["gpu"] = torch.cuda.get_device_name(device)
    return described


def decision_key(network: torch.nn.Module, device: torch.device, job: dict[str, Any]) -> str:
    """The key of a decision: :func:`machine`, the network (class and parameter count) and ``job``
    (input shapes and the settings probed), hashed."""
    described = {
        "version": DECISIONS_VERSION,
        "machine": machine(device),
        "network": [type(network).__name__, sum(p.numel() for p in network.parameters())],
        "job": job,
    }
    return text_sha256(json.dumps(described, sort_keys=True, default=str))


QUIET_LOAD = 0.75  # 1-minute load average per core under which a machine is quiet enough to time


def machine_load() -> float:
    """The 1-minute load average per core (0 where the system does not say)."""
    try:
        return os.getloadavg()[0] / max(os.cpu_count() or 1, 1)
    except OSError:
        return 0.0


def agrees_with_its_measurement(
    result: ProbeResult, precision: str, channels_last: bool | str, device: torch.device
) -> bool:
    """Whether a kept decision is what the probe's rules make of its own recorded timings and
    gradient cosine (a hand-edited one, bf16 against its own measurement, is not)."""
    from sihnet.training.probe import MIN_COSINE, SPEEDUP_MARGIN, candidate_precision

    seconds = result.seconds
    if precision == "auto":
        candidate = candidate_precision(device)
        usable = (
            candidate is not None
            and candidate in seconds
            and "fp32" in seconds
            and result.gradient_cosine is not None
            and result.gradient_cosine >= MIN_COSINE
            and seconds["fp32"] / seconds[candidate] >= SPEEDUP_MARGIN
        )
        if result.precision != (candidate if usable else "fp32"):
            return False
    elif result.precision != precision:
        return False
    if channels_last == "auto":
        key = f"{result.precision}+channels_last"
        if key not in seconds or result.precision not in seconds:
            return not result.channels_last
        faster = seconds[result.precision] / seconds[key] >= SPEEDUP_MARGIN
        return result.channels_last == faster
    return result.channels_last == bool(channels_last)


def decide(
    network: torch.nn.Module,
    batch: Batch,
    settings: StepSettings,
    device: torch.device,
    precision: str,
    channels_last: bool | str,
    job: dict[str, Any],
    store: Path,
) -> ProbeResult:
    """:func:`probe`'s choice, measured once per machine and job and then reused from ``store``
    (a JSON file; module docstring), so that the machine's load cannot flip it between runs.

    Args:
        job: what else the decision depends on (input shapes, loss and memory settings); JSON-able.
        store: ``precision_decisions.json``; unreadable or damaged, it is measured again (and a
            file that cannot be written only loses the reuse, with a warning).
    """
    key = decision_key(network, device, job)
    decisions: dict[str, Any] = {}
    try:
        loaded = PrecisionDecisions.model_validate(json.loads(store.read_text())).root
        decisions = {k: v.as_json() for k, v in loaded.items()}
        if key in loaded:
            result = dataclasses.replace(loaded[key], reused=True)
            if agrees_with_its_measurement(result, precision, channels_last, device):
                log.info(
                    "precision probe (measured on this machine at %s and reused; delete %s to "
                    "measure again): %s", result.measured_at, store.name, describe(result),
                )  # fmt: skip
                return result
            log.warning(
                "a kept precision decision disagrees with its own measurement (edited?): "
                "measured again"
            )
    except (OSError, ValueError, TypeError):
        pass  # none yet, or damaged: measured now
    load = machine_load()
    result = probe(network, batch, settings, device, precision, channels_last)
    if load > QUIET_LOAD:  # timings taken beside another job are not frozen for the machine
        log.info(
            "the machine was busy while the precision was probed (load %.2f per core): the "
            "choice serves this run and is not kept for later ones", load,
        )  # fmt: skip
        return result
    try:
        write_json_atomic(store, {**decisions, key: result.as_json()})
    except OSError as error:
        log.warning("the precision decision is not kept for later runs: %s", error.strerror)
    return result


class PrecisionPolicy:
    """The precision decisions of one run (module docstring).

    Args:
        store: where decisions are kept across runs [default: ``precision_decisions.json`` in
            ``$SIHNET_CACHE_DIR`` or ~/.cache/sihnet].
    """

    def __init__(self, store: Path | None = None) -> None:
        self.store = store if store is not None else default_cache_dir() / DECISIONS_FILE
        self._probed: dict[tuple[Any, ...], ProbeResult] = {}
        self._kernels: dict[tuple[Any, ...], str | None] = {}

    def settle(
        self,
        network: torch.nn.Module,
        batch: Batch | None,
        step: StepSettings,
        inference: Inference,
        config: ExperimentConfig,
        world: World,
        fold: int,
    ) -> tuple[Inference, StepSettings, ProbeResult | None, dict[str, Any] | None]:
        """A fold's precision and memory format before its first step: ``auto`` decided
        (:meth:`choose`), a configured bf16/fp16 checked (:meth:`check_configured`); nothing is
        decided without the first batch (a resumed fold keeps what its state says).

        Returns:
            ``(inference, step, what the probe chose or None, the fallback to fp32 or None)``.
        """
        settings, probed, fallback = config.training, None, None
        if batch is None:
            return inference, step, probed, fallback
        if "auto" in (settings.precision, settings.channels_last):
            probed = self.choose(network, batch, step, inference.device, config, world)
            inference = Inference(inference.device, probed.precision)
            step = dataclasses.replace(step, channels_last=probed.channels_last)
        if settings.precision != "auto" and inference.precision != "fp32":
            fallback = self.check_configured(network, batch, inference, step, fold)
            inference = Inference(inference.device, "fp32") if fallback else inference
        return inference, step, probed, fallback

    def choose(
        self,
        network: torch.nn.Module,
        batch: Batch,
        step: StepSettings,
        device: torch.device,
        config: ExperimentConfig,
        world: World,
    ) -> ProbeResult:
        """The ``auto`` choice for a fold: decided by rank 0 on the run's first fold that needs it
        (later folds of the same grid, batch and network reuse it), taken by all ranks."""
        settings = config.training
        key = (str(device), shapes(batch.images), settings.precision, settings.channels_last,
               step.bern_weight > 0, settings.activation_checkpointing)  # fmt: skip
        result = self._probed.get(key)
        if result is None and world.main:
            names = ("device", "shapes", "precision", "channels_last", "bern", "checkpointing")
            job = dict(zip(names, key, strict=True))
            result = decide(network, batch, step, device, settings.precision,
                            settings.channels_last, job, self.store)  # fmt: skip
            self._probed[key] = result
        elif result is not None:
            log.info("precision probe (as measured for an earlier fold): %s", describe(result))
        chosen = gather_objects(result, world)[0]
        assert chosen is not None
        return chosen

    def check_configured(
        self,
        network: torch.nn.Module,
        batch: Batch,
        inference: Inference,
        step: StepSettings,
        fold: int,
    ) -> dict[str, Any] | None:
        """A configured bf16/fp16 whose convolution kernels are wrong at this network's shapes is
        not used: the fold trains in fp32 from the start, with a warning, and the returned
        ``precision_fallback`` says why (None when the kernels are sound). Checked once per run
        and shape, on every rank alike."""
        key = (str(inference.device), shapes(batch.images), inference.precision, step.channels_last)
        if key not in self._kernels:
            self._kernels[key] = kernel_defect(network, batch.images, inference, step.channels_last)
        defect = self._kernels[key]
        if defect is None:
            return None
        log.warning(
            "fold %d: %s as configured, but %s; training in fp32", fold, inference.precision, defect
        )
        return {"from": inference.precision, "to": "fp32", "epoch": 0, "reason": defect}
