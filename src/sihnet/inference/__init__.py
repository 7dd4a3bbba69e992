"""Scoring a model on an image: the one place for device, precision and the fistula score.

Validation during training, the out-of-fold predictions, ``predict``, external evaluation and the
occlusion target all score through :class:`Inference`, so one model on one image gives one number
everywhere. Scans are scored one at a time (batch 1): a scan's probability must not depend on
which other scans share its batch (kernels may differ with the batch size).

Precision ``auto`` is bf16 autocast where the hardware computes bf16 natively (CUDA GPUs with
bf16; CPUs with AVX-512-BF16/AMX, as oneDNN reports), fp16 autocast (with loss scaling in
training) on GPUs without bf16, and fp32 elsewhere: on a CPU without it bf16
is emulated and was measured 40x slower than fp32 (AVX2 EPYC, DenseNet-121 train step at 48x64x64).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import torch

from sihnet.bern import HEAD_ITEMS
from sihnet.config import Precision
from sihnet.errors import SihnetError

log = logging.getLogger(__name__)

Resolved = Literal["fp32", "bf16", "fp16"]
FistulaTarget = Literal["logit", "probability"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a named device must exist on this machine.

    Raises:
        SihnetError: an unknown device name, or a GPU this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SihnetError(
            f"device {name!r} is not a device name (use auto, cpu, cuda or cuda:N)"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise SihnetError(f"device {name!r}: this machine has {count} CUDA device(s)")
    elif device.type != "cpu":
        raise SihnetError(f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (not emulated)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: Precision, device: torch.device) -> Resolved:
    """``auto`` -> bf16 where native, fp16 on a GPU without bf16, else fp32; an explicit choice is
    kept (bf16 where it is emulated is slow, and said so)."""
    if precision == "auto":
        if bf16_native(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and not bf16_native(device):
        log.warning("bf16 is emulated on this %s (slow); 'auto' would not use it", device.type)
    return precision


def target_scores(logits: torch.Tensor, target: FistulaTarget = "probability") -> torch.Tensor:
    """The fistula score of each row of ``logits`` (N, 2): its softmax probability or its logit."""
    if target == "probability":
        return torch.softmax(logits.float(), dim=1)[:, 1]
    return logits.float()[:, 1]


@dataclasses.dataclass(frozen=True)
class Inference:
    """Where and in which precision models run.

    Attributes:
        device: a device of this machine.
        precision: ``fp32`` or ``bf16`` (autocast), already resolved.
    """

    device: torch.device
    precision: Resolved

    @classmethod
    def resolve(cls, device: str = "auto", precision: Precision = "auto") -> Inference:
        """From configuration values (``training.device``/``training.precision`` or a flag)."""
        torch_device = resolve_device(device)
        return cls(torch_device, resolve_precision(precision, torch_device))

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """bf16/fp16 autocast, or a no-op context for fp32 (training uses it too)."""
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 training needs loss scaling (bf16 and fp32 do not)."""
        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def outputs(
        self, model: torch.nn.Module, images: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float32 logits (N, 2) of ``images`` (N, 1, X, Y, Z), and the raw Bern outputs (N, 6)
        of a network with the Bern heads (else None); model in eval mode."""
        from sihnet.models.bern_heads import split_outputs
        from sihnet.models.inputs import map_views

        model.eval()
        inputs = map_views(images, lambda view: view.to(self.device, torch.float32))
        with torch.inference_mode(), self.autocast():
            logits, bern = split_outputs(model(inputs))
        return logits.float(), None if bern is None else bern.float()

    def logits(self, model: torch.nn.Module, images: Any) -> torch.Tensor:
        """Float32 logits (N, 2) of ``images`` (N, 1, X, Y, Z), model in eval mode."""
        return self.outputs(model, images)[0]

    def bern_components(self, network: torch.nn.Module, volumes: Iterable[Any]) -> np.ndarray:
        """The six Bern components of each volume (1, X, Y, Z), one at a time: (n, 6) float64
        (sign probabilities, distances in mm) in :data:`sihnet.bern.HEAD_ITEMS` order.

        Raises:
            TypeError: the network has no Bern heads.
        """
        from sihnet.models.inputs import as_batch

        rows = []
        for volume in volumes:
            _, raw = self.outputs(network, as_batch(volume))
            if raw is None:
                raise TypeError("the network has no Bern heads")
            rows.append(network.components(raw)[0].cpu().double().numpy())  # type: ignore[operator]
        return np.asarray(rows).reshape(-1, len(HEAD_ITEMS))

    def probabilities(self, model: torch.nn.Module, volumes: Iterable[Any]) -> np.ndarray:
        """Fistula probability of each volume (1, X, Y, Z), one at a time: (n,) float64."""
        from sihnet.models.inputs import as_batch

        scores = [float(target_scores(self.logits(model, as_batch(v)))[0]) for v in volumes]
        return np.asarray(scores, dtype=np.float64)
