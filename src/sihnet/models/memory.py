"""Memory a network needs, estimated before anything is allocated, and what the device has.

The estimate runs the network on PyTorch's ``meta`` device (shapes only, no data, milliseconds for
any grid) and adds up the tensors autograd saves for the backward pass, plus the weights, their
gradients and AdamW's two moments. On the CPU it agrees with PyTorch's ``MemTracker`` count of a
real step to within about a third (tests/models/test_memory.py); it is meant to refuse a grid or a
batch that cannot fit (a 1024^3 canvas asks for terabytes), not to plan to the megabyte.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sihnet.errors import SihnetError

OPTIMIZER_COPIES = 3  # gradient + AdamW's first and second moments, per weight
HEADROOM = 1.10  # allocator slack and the backward pass's transient buffers


def saved_activation_bytes(
    build: Callable[[], torch.nn.Module],
    shape: tuple[int, ...] | list[tuple[int, ...]],
    dtype: torch.dtype,
) -> tuple[int, int]:
    """Bytes autograd keeps for one forward pass of ``shape`` (N, C, X, Y, Z; a list of shapes for
    a network of several views) in ``dtype``, and the network's number of weights, measured on
    the meta device."""
    with torch.device("meta"):
        network = build().to(dtype=dtype)
    kept: dict[int, tuple[torch.Tensor, int]] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor
        kept[id(base)] = (base, base.numel() * base.element_size())
        return tensor

    images: Any = (
        tuple(torch.empty(s, device="meta", dtype=dtype) for s in shape)
        if isinstance(shape, list)
        else torch.empty(shape, device="meta", dtype=dtype)
    )
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        network.train()
        network(images)
    return sum(size for _, size in kept.values()), sum(p.numel() for p in network.parameters())


def training_bytes(
    build: Callable[[], torch.nn.Module],
    shape: tuple[int, ...] | list[tuple[int, ...]],
    precision: str,
) -> int:
    """Estimated peak bytes of one training step: saved activations (in the autocast precision,
    approximated as all bf16/fp16) plus fp32 weights, gradients and AdamW state, with headroom."""
    activation_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    activations, weights = saved_activation_bytes(build, shape, activation_dtype)
    return int(HEADROOM * (activations + 4 * weights * (1 + OPTIMIZER_COPIES)))


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 or v1), if one is set."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def available_bytes(device: torch.device) -> int:
    """Memory free for this process on ``device``: CUDA's free memory, or the machine's available
    memory (``MemAvailable``), capped by a cgroup limit."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    limit = _cgroup_limit()
    return min(available, limit) if limit is not None else available


def check_fits(needed: int, device: torch.device, what: str) -> None:
    """Refuse ``what`` in one line when it needs more memory than ``device`` has free.

    Raises:
        SihnetError: saying how much it needs and how much there is.
    """
    free = available_bytes(device)
    if needed > free:
        raise SihnetError(
            f"{what} needs about {needed / 2**30:,.1f} GB on {device.type}, "
            f"{free / 2**30:,.1f} GB is free; use a smaller grid or batch, or "
            "training.activation_checkpointing: true"
        )
