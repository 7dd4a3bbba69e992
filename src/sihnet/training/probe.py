"""``training.precision: auto`` and ``training.channels_last: auto``, decided by measurement.

Whether bf16 (or fp16 on a GPU without bf16) helps depends on the device, the kernels it runs and
the grid: on a CPU with native bf16 it halves a step at the quick grid, on one without it is
emulated and many times slower, and at some grids its gradients are not finite at all. So before a
fold trains, the probe takes the fold's real first batch (not augmented, so the run's random
streams are untouched) and the fold's initial weights, and computes the gradient of the training
loss in fp32 and in the candidate precision. The candidate is chosen when its gradient is finite,
agrees with fp32's (cosine >= ``MIN_COSINE``) and a step is faster by ``SPEEDUP_MARGIN``. Then, in
the chosen precision, the same for the ``channels_last_3d`` memory format. Weights and batch-norm
statistics are restored afterwards: a probed fold starts where an unprobed one would.

Both choices change the numbers a run computes; :mod:`sihnet.training.precision` makes them once
per machine and job.

Whatever chose the reduced precision (the probe or the configuration), :func:`kernel_defect`
first checks the convolution kernels themselves on the network's real feature-map shapes: a
whole-network cosine can miss one layer that is wrong. On a CPU with native bf16 (PyTorch 2.13,
oneDNN) the weight gradient of a 3x3x3 convolution whose input has depth 2 was measured wrong by
78% to overflow (``benchmarks/precision_probe.py --kernels``): DenseNet-121 meets it at 32^3 (dense
block 3) or at any grid whose depth is 64 (block 4).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import math
import time
from typing import Any

import torch
from pydantic import ConfigDict

from sihnet.inference import Inference, Resolved, bf16_native
from sihnet.models.inputs import map_views
from sihnet.training.step import Batch, StepSettings, backward, step_loss

log = logging.getLogger(__name__)

MAX_KERNEL_ERROR = 0.05  # relative error of a weight gradient (sound kernels: ~0.003)
MIN_COSINE = 0.99  # gradients of the candidate precision must point where fp32's do
SPEEDUP_MARGIN = 1.10  # a choice must make a step at least 10% faster
TIMED_STEPS = 2  # after one warm-up step


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the probe chose and why (written to ``fold_K/summary.json`` and ``train.log``).

    Attributes:
        precision: the precision the fold trains in.
        channels_last: whether it trains in ``channels_last_3d``.
        seconds: measured seconds per forward + backward, by variant (``fp32``, ``bf16``,
            ``bf16+channels_last``, ...).
        gradient_cosine: cosine between the candidate precision's gradient and fp32's.
        reason: one sentence.
        measured_at: when the timings were taken (ISO 8601, UTC).
        reused: whether the choice was taken from this machine's earlier decision
            (:func:`decide`) rather than measured for this run.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # a kept decision's schema (precision.py)

    precision: Resolved
    channels_last: bool
    seconds: dict[str, float]
    gradient_cosine: float | None
    reason: str
    measured_at: str = ""
    reused: bool = False

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def candidate_precision(device: torch.device) -> Resolved | None:
    """The reduced precision worth probing on ``device``: bf16 where native, fp16 on a GPU
    without bf16, none on a CPU without native bf16 (emulated bf16 was measured 40x slower)."""
    if bf16_native(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else None


def conv_shapes(
    network: torch.nn.Module, images: Any
) -> list[tuple[torch.nn.Conv3d, tuple[int, ...]]]:
    """Each distinct spatial convolution (kernel > 1) of ``network`` with the input shape
    (1, C, X, Y, Z) it sees on one sample of ``images`` (an eval-mode fp32 forward, no gradient)."""
    seen: dict[tuple[Any, ...], tuple[torch.nn.Conv3d, tuple[int, ...]]] = {}

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if isinstance(module, torch.nn.Conv3d) and max(module.kernel_size) > 1:
            shape = (1, *inputs[0].shape[1:])
            key = (shape, module.out_channels, module.kernel_size, module.stride, module.padding)
            seen.setdefault(key, (module, shape))

    was_training = network.training
    handles = [m.register_forward_pre_hook(record) for m in network.modules()]
    try:
        network.eval()
        with torch.no_grad():
            network(map_views(images, lambda view: view[:1].float()))
    finally:
        for handle in handles:
            handle.remove()
        network.train(was_training)
    return list(seen.values())


def kernel_defect(
    network: torch.nn.Module, images: Any, inference: Inference, channels_last: bool = False
) -> str | None:
    """None when every spatial convolution of ``network``, at the shapes it sees on ``images``,
    computes its weight gradient in the inference's precision within ``MAX_KERNEL_ERROR``
    (relative, Frobenius) of fp32's; otherwise one sentence naming the first that does not.

    Each shape is checked with a copy of the convolution on seeded random input of batch 1 (the
    network itself is not touched); fp32 has nothing to check.
    """
    if inference.precision == "fp32":
        return None
    device, generator = inference.device, torch.Generator().manual_seed(0)
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    for module, shape in conv_shapes(network, images):
        conv = copy.deepcopy(module).float().requires_grad_(True)  # a copy: the network untouched
        conv = conv.to(device, memory_format=layout)  # type: ignore[call-overload]
        x = torch.randn(shape, generator=generator).to(device, memory_format=layout)
        gradients = []
        for precision in ("fp32", inference.precision):
            conv.zero_grad(set_to_none=True)
            with Inference(device, precision).autocast():
                out = conv(x)
            out.float().square().mean().backward()
            assert conv.weight.grad is not None
            gradients.append(conv.weight.grad.detach().float())
        reference, candidate = gradients
        error = float((candidate - reference).norm() / reference.norm().clamp_min(1e-30))
        if not math.isfinite(error) or error > MAX_KERNEL_ERROR:
            spatial = "x".join(map(str, shape[2:]))
            return (
                f"{inference.precision} {'x'.join(map(str, module.kernel_size))} convolution "
                f"weight gradients are wrong on this {device.type} at a {spatial} feature map "
                f"(relative error {error:.3g} > {MAX_KERNEL_ERROR})"
            )
    return None


def _gradient(
    network: torch.nn.Module, batch: Batch, settings: StepSettings, inference: Inference
) -> tuple[torch.Tensor, float]:
    """The flattened fp32 gradient of one batch's loss, and the seconds of the best of
    ``TIMED_STEPS`` forward + backward passes after a warm-up."""
    scaler = inference.grad_scaler()
    best, gradient = math.inf, torch.zeros(0)
    for attempt in range(1 + TIMED_STEPS):
        network.zero_grad(set_to_none=True)
        started = time.perf_counter()
        loss, _ = step_loss(network, network, batch, settings, inference)
        backward(loss, scaler)
        if inference.device.type == "cuda":
            torch.cuda.synchronize(inference.device)
        if attempt:
            best = min(best, time.perf_counter() - started)
    scale = float(scaler.get_scale()) if scaler is not None else 1.0
    parts = [
        p.grad.detach().float().flatten() / scale
        for p in network.parameters()
        if p.grad is not None
    ]
    gradient = torch.cat(parts).cpu() if parts else gradient
    network.zero_grad(set_to_none=True)
    return gradient, best


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.nan
    denominator = float(a.norm() * b.norm())
    return float(a @ b) / denominator if denominator > 0 else math.nan


def probe(
    network: torch.nn.Module,
    batch: Batch,
    settings: StepSettings,
    device: torch.device,
    precision: str,
    channels_last: bool | str,
) -> ProbeResult:
    """Decide ``auto`` precision and memory format on the fold's first batch (module docstring).

    Args:
        network: the fold's network with its initial weights, on ``device``, in train mode;
            its weights and buffers are the same afterwards.
        batch: the fold's first training batch on ``device``.
        settings: the fold's loss settings (``channels_last`` is ignored: it is probed).
        precision: ``auto`` or a fixed precision (then only ``channels_last`` is probed).
        channels_last: ``auto``, or a fixed choice.
    """
    saved = copy.deepcopy(network.state_dict())
    plain = dataclasses.replace(settings, channels_last=False)
    seconds: dict[str, float] = {}
    try:
        chosen, cosine, reason = _choose_precision(
            network, batch, plain, device, precision, seconds
        )
        use_channels_last = bool(channels_last) if channels_last != "auto" else False
        if channels_last == "auto":
            use_channels_last, why = _choose_memory_format(
                network, batch, plain, device, chosen, seconds
            )
            reason = f"{reason}; {why}"
    finally:
        network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        network.load_state_dict(saved)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = ProbeResult(chosen, use_channels_last, seconds, cosine, reason, now)
    log.info("precision probe: %s", describe(result))
    return result


def _choose_precision(
    network: torch.nn.Module,
    batch: Batch,
    settings: StepSettings,
    device: torch.device,
    precision: str,
    seconds: dict[str, float],
) -> tuple[Resolved, float | None, str]:
    """The precision, the gradient cosine (None when nothing was compared) and the reason."""
    if precision != "auto":
        return precision, None, f"{precision} as configured"  # type: ignore[return-value]
    candidate = candidate_precision(device)
    if candidate is None:
        return "fp32", None, f"fp32: bf16 is not native on this {device.type} (emulated, slow)"
    defect = kernel_defect(network, batch.images, Inference(device, candidate))
    if defect is not None:
        return "fp32", None, f"fp32: {defect}"
    reference, seconds["fp32"] = _gradient(network, batch, settings, Inference(device, "fp32"))
    gradient, seconds[candidate] = _gradient(network, batch, settings, Inference(device, candidate))
    cosine = _cosine(reference, gradient)
    if math.isnan(cosine):
        return "fp32", None, f"fp32: {candidate} gave a non-finite gradient on the first batch"
    if cosine < MIN_COSINE:
        why = f"{candidate}'s gradient disagrees with fp32's (cosine {cosine:.3f} < {MIN_COSINE})"
        return "fp32", cosine, f"fp32: {why}"
    speedup = seconds["fp32"] / seconds[candidate]
    if speedup < SPEEDUP_MARGIN:
        return "fp32", cosine, f"fp32: {candidate} is not faster here ({speedup:.2f}x)"
    why = f"{speedup:.2f}x faster than fp32, gradient cosine {cosine:.4f}"
    return candidate, cosine, f"{candidate}: {why}"


def _choose_memory_format(
    network: torch.nn.Module,
    batch: Batch,
    settings: StepSettings,
    device: torch.device,
    precision: Resolved,
    seconds: dict[str, float],
) -> tuple[bool, str]:
    inference = Inference(device, precision)
    if precision not in seconds:
        seconds[precision] = _gradient(network, batch, settings, inference)[1]
    network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    try:
        key = f"{precision}+channels_last"
        with_format = dataclasses.replace(settings, channels_last=True)
        seconds[key] = _gradient(network, batch, with_format, inference)[1]
    finally:
        network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    speedup = seconds[precision] / seconds[key]
    if speedup >= SPEEDUP_MARGIN:
        return True, f"channels_last_3d: {speedup:.2f}x faster"
    return False, f"contiguous memory: channels_last_3d {speedup:.2f}x"


def describe(result: ProbeResult) -> str:
    """One line: the choice, the reason, the measured seconds."""
    times = ", ".join(f"{k} {v:.3f} s" for k, v in result.seconds.items())
    return f"{result.reason}" + (f" (forward+backward: {times})" if times else "")
