"""Occlusion sensitivity maps, exact and fast (the paper's Figure 3).

A voxel's value is ``score(x) - score(x with the patch zeroed)``, averaged over the patches that
cover the voxel: the definition of captum's ``Occlusion`` with baseline 0, with its window
placement (windows at multiples of the stride; the last one on an axis clipped at the end).

Exact speed-ups, in order: (1) a window whose input region is already all zero leaves the input
unchanged, so its difference is 0 without a forward pass; (2) many occluded copies per forward
pass; (3) for MONAI's DenseNet, incremental inference of the early layers
(:mod:`sihnet.interpret.incremental`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sihnet.config import Target
from sihnet.errors import SihnetError
from sihnet.inference import Inference, target_scores
from sihnet.interpret.incremental import OccludedForward
from sihnet.models.bern_heads import component_scores, has_heads, split_outputs


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Window starts along one axis of ``size`` voxels, as captum's ``Occlusion`` places them.

    ``ceil((size - patch) / stride) + 1`` windows at multiples of ``stride``; the last one may
    reach past the end and is then clipped to the volume, so every voxel is covered.
    """
    patch = min(patch, size)
    return [i * stride for i in range(math.ceil((size - patch) / stride) + 1)]


def windows(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]) -> np.ndarray:
    """All window starts of a volume: int array (n_windows, 3), in voxels (stops: start + patch,
    clipped to ``shape``)."""
    axes = [window_starts(n, p, s) for n, p, s in zip(shape, patch, stride, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1)


def default_batch_size(shape: Sequence[int], device: torch.device) -> int:
    """Occluded copies per forward pass.

    GPU: as many as a quarter of free memory holds (~600 bytes per input voxel each), up to 32.
    CPU: about 1.6 M input voxels per pass, 1–8 (larger batches were slower per copy on 2 cores).
    """
    voxels = int(np.prod(shape))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(np.clip(free // 4 // (600 * voxels), 1, 32))
    return int(np.clip(1_600_000 // voxels, 1, 8))


@dataclasses.dataclass(frozen=True)
class OcclusionResult:
    """An occlusion map on the model-input grid.

    Attributes:
        map: float32 (X, Y, Z): base score minus occluded score, averaged over covering windows.
        base_score: the target score of the unoccluded input.
        windows: windows in the sweep; forwards: occluded copies actually evaluated (the rest were
            all-zero regions); seconds: wall time; incremental_units: network units run on windows.
        patch, stride: as used, in voxels (clipped to the image; the stride to the patch).
    """

    map: np.ndarray
    base_score: float
    windows: int
    forwards: int
    seconds: float
    incremental_units: int
    patch: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()


def _box(start: Sequence[int], patch: Sequence[int]) -> tuple[slice, slice, slice]:
    a, b, c = (int(v) for v in start)
    return (slice(a, a + patch[0]), slice(b, b + patch[1]), slice(c, c + patch[2]))


def _plan(
    volume: np.ndarray, patch: Sequence[int], stride: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All window starts, those whose input is not all zero (the all-zero test on the host: no
    device sync per window), and how many windows cover each voxel (X, Y, Z)."""
    starts = windows(volume.shape, patch, stride)
    nonzero = np.array([bool(volume[_box(start, patch)].any()) for start in starts])
    count = np.zeros(volume.shape, dtype=np.float64)
    for start in starts:
        count[_box(start, patch)] += 1
    return starts, starts[nonzero], count


@contextlib.contextmanager
def _relu_not_inplace(model: nn.Module) -> Iterator[None]:
    """In-place ReLUs would overwrite the stored activations the incremental path reuses."""
    inplace = [m for m in model.modules() if isinstance(m, nn.ReLU) and m.inplace]
    for module in inplace:
        module.inplace = False
    try:
        yield
    finally:
        for module in inplace:
            module.inplace = True


def _scorer(model: nn.Module, target: Target) -> Callable[[Any], torch.Tensor]:
    """The network's outputs → the target score per row (the fistula's, or a Bern item's).

    Raises:
        SihnetError: a Bern item asked of a model without the Bern heads.
    """
    if target in ("logit", "probability"):
        return lambda outputs: target_scores(split_outputs(outputs)[0], target)  # type: ignore[arg-type]
    if not has_heads(model):
        raise SihnetError(f"--target {target} needs a model trained with the Bern heads")

    def item(outputs: Any) -> torch.Tensor:
        raw = split_outputs(outputs)[1]
        assert raw is not None
        return component_scores(raw, target, model)

    return item


def _clipped(
    patch: Sequence[int], stride: Sequence[int] | None, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The window and its step on an image of ``shape``: a patch larger than the image occludes
    the whole axis (one window there); a stride is at most the patch, so every voxel is covered
    (OcclusionConfig refuses a larger one from users)."""
    clipped = tuple(max(1, min(int(p), n)) for p, n in zip(patch, shape, strict=True))
    step = tuple(max(1, min(int(s), p)) for s, p in zip(stride or clipped, clipped, strict=True))
    return clipped, step


def occlusion_map(
    model: nn.Module,
    image: torch.Tensor,
    patch: Sequence[int],
    stride: Sequence[int] | None = None,
    target: Target = "logit",
    batch_size: int | None = None,
    incremental: bool = True,
    inference: Inference | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> OcclusionResult:
    """The occlusion map of ``image`` for the fistula class.

    Args:
        model: eval-mode classifier, (N, 1, X, Y, Z) -> logits (N, 2); its device is used.
        image: (1, X, Y, Z) or (1, 1, X, Y, Z) model input.
        patch: window size in voxels of ``image`` (clipped to the volume).
        stride: window step in voxels (at most the patch); default: the patch, as in the paper.
        target: ``logit`` (the fistula logit, default) or ``probability`` (its softmax); for a
            model with the Bern heads also a component: a sign (its logit) or a distance (mm).
        batch_size: occluded copies per forward pass; default from free memory.
        incremental: windowed inference of MONAI DenseNet's early layers (exact; off = plain).
        inference: the precision (bf16 is approximate); default fp32 on the model's device.
        progress: called with (done, total) windows after each batch.

    Returns:
        An :class:`OcclusionResult` whose ``map`` has the spatial shape of ``image``.
    """
    started = time.perf_counter()
    device = next(model.parameters()).device
    inference = inference or Inference(device, "fp32")
    x = image.reshape(1, 1, *image.shape[-3:]).to(device=device, dtype=torch.float32)
    shape = tuple(int(n) for n in x.shape[2:])
    patch, stride = _clipped(patch, stride, shape)
    starts, todo, count = _plan(x[0, 0].cpu().numpy(), patch, stride)
    total = np.zeros(shape, dtype=np.float64)
    batch = batch_size or default_batch_size(shape, device)
    score_of = _scorer(model, target)
    with _relu_not_inplace(model), torch.inference_mode(), inference.autocast():
        engine = OccludedForward(model, x, incremental)
        base = float(score_of(engine.prepare(patch))[0])
        for first in range(0, len(todo), batch):
            chunk = todo[first : first + batch]
            occluded = score_of(engine.logits(chunk, patch)).double().cpu().numpy()
            for start, score in zip(chunk, occluded, strict=True):
                total[_box(start, patch)] += base - score
            if progress is not None:
                progress(min(first + batch, len(todo)), len(todo))
    return OcclusionResult(
        map=(total / count).astype(np.float32),
        base_score=base,
        windows=len(starts),
        forwards=len(todo),
        seconds=time.perf_counter() - started,
        incremental_units=len(engine.bases),
        patch=patch,
        stride=stride,
    )
