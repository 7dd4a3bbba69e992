"""Incremental inference of MONAI's DenseNet on zero-occluded copies of one volume.

Zeroing a patch changes only a neighbourhood of each early feature map. The network is parsed into
units (stem conv, BatchNorm/ReLU, max-pool, each dense layer, each transition); the unoccluded
activations are computed once, and each occluded copy is computed on its changed window only
(cropped from the unoccluded activations, padded explicitly) until the window covers most of a
feature map; from there the network runs as usual. Written here because neither captum nor MONAI
does it; it reproduces plain forwards to float rounding (tests compare both to 1e-6).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

Triple = tuple[int, int, int]

# Above this fraction of a feature map's voxels the changed region is computed in full.
INCREMENTAL_LIMIT = 0.9

# Incremental inference over a feature pyramid: a "state" is, per occluded copy, a window of the
# current feature map (start (B, 3), common size) holding its values; outside it the copy equals
# the unoccluded activations.


@dataclasses.dataclass
class _State:
    starts: np.ndarray  # (B, 3) window starts in the current feature map, voxels
    values: torch.Tensor  # (B, C, *size) the occluded copies' values in their windows

    @property
    def size(self) -> Triple:
        shape = tuple(self.values.shape[2:])
        return (int(shape[0]), int(shape[1]), int(shape[2]))


def _at(batch: int, spatial: Iterable[slice]) -> tuple[Any, ...]:
    """Index of one copy, all channels, a spatial window."""
    return (batch, slice(None), *spatial)


def _paste(target: torch.Tensor, target_starts: np.ndarray, state: _State) -> None:
    """Copy each copy's window values into ``target`` (B, C, *t) whose windows start at ``target_starts``."""
    size, tsize = state.size, target.shape[2:]
    for b in range(target.shape[0]):
        lo = np.maximum(target_starts[b], state.starts[b])
        hi = np.minimum(target_starts[b] + np.asarray(tsize), state.starts[b] + np.asarray(size))
        if (hi <= lo).any():
            continue
        t = tuple(
            slice(int(a - s), int(c - s)) for a, c, s in zip(lo, hi, target_starts[b], strict=True)
        )
        v = tuple(
            slice(int(a - s), int(c - s)) for a, c, s in zip(lo, hi, state.starts[b], strict=True)
        )
        target[_at(b, t)] = state.values[_at(b, v)]


def _crop(base: torch.Tensor, starts: np.ndarray, size: Sequence[int]) -> torch.Tensor:
    """Windows of ``base`` (1, C, *S) at ``starts`` (B, 3) lying inside it: (B, C, *size)."""
    return torch.stack(
        [
            base[_at(0, (slice(int(a), int(a) + n) for a, n in zip(s, size, strict=True)))]
            for s in starts
        ]
    )


@dataclasses.dataclass(frozen=True)
class _Spatial:
    """Pointwise modules (eval-mode BatchNorm, ReLU, Dropout) followed by one windowed operator."""

    pointwise: tuple[nn.Module, ...]
    op: nn.Module  # Conv3d, MaxPool3d or AvgPool3d without dilation

    def _geometry(self) -> tuple[Triple, Triple, Triple]:
        def triple(value: int | Sequence[int]) -> Triple:
            v = (value,) * 3 if isinstance(value, int) else tuple(value)
            return (int(v[0]), int(v[1]), int(v[2]))

        op: nn.Module = self.op
        kernel = triple(op.kernel_size)  # type: ignore[arg-type]
        stride = triple(op.stride if op.stride is not None else op.kernel_size)  # type: ignore[arg-type]
        padding = triple(op.padding)  # type: ignore[arg-type]
        return kernel, stride, padding

    def output_window(
        self, starts: np.ndarray, size: Sequence[int], in_shape: Sequence[int]
    ) -> tuple[np.ndarray, Triple]:
        """Output windows (starts (B, 3), common size) covering every output a window can change."""
        kernel, stride, padding = self._geometry()
        k, s, p = np.asarray(kernel), np.asarray(stride), np.asarray(padding)
        n = np.asarray(in_shape)
        out_shape = (n + 2 * p - k) // s + 1
        lo = np.maximum(0, -((-(starts + p - k + 1)) // s))
        hi = np.minimum(out_shape, (starts + np.asarray(size) - 1 + p) // s + 1)
        length = np.minimum((hi - lo).max(axis=0), out_shape)
        out_starts = np.minimum(lo, out_shape - length)
        return out_starts, (int(length[0]), int(length[1]), int(length[2]))

    def full(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.pointwise:
            x = module(x)
        return self.op(x)

    def apply(self, state: _State, base: torch.Tensor) -> _State:
        """The windowed operator on the occluded copies; ``base`` is its unoccluded input (1, C, *S)."""
        kernel, stride, padding = self._geometry()
        in_shape = base.shape[2:]
        out_starts, out_size = self.output_window(state.starts, state.size, in_shape)
        need = tuple((o - 1) * st + k for o, st, k in zip(out_size, stride, kernel, strict=True))
        need_starts = out_starts * np.asarray(stride) - np.asarray(padding)
        batch = len(out_starts)
        # Region of each needed window that lies inside the feature map (the rest is padding).
        inner_lo = np.clip(need_starts, 0, np.asarray(in_shape))
        inner_hi = np.clip(need_starts + np.asarray(need), 0, np.asarray(in_shape))
        crop = torch.empty((batch, base.shape[1], *need), dtype=base.dtype, device=base.device)
        for b in range(batch):
            src = tuple(
                slice(int(a), int(c)) for a, c in zip(inner_lo[b], inner_hi[b], strict=True)
            )
            dst = tuple(
                slice(int(a - s), int(c - s))
                for a, c, s in zip(inner_lo[b], inner_hi[b], need_starts[b], strict=True)
            )
            crop[_at(b, dst)] = base[_at(0, src)]
        _paste(crop, need_starts, state)
        for module in self.pointwise:
            crop = module(crop)
        if any(padding):
            pad_value = -math.inf if isinstance(self.op, nn.MaxPool3d) else 0.0
            crop = crop.clone()
            for b in range(batch):
                for axis in range(3):
                    before = int(inner_lo[b][axis] - need_starts[b][axis])
                    after = int(need_starts[b][axis] + need[axis] - inner_hi[b][axis])
                    index: list[slice | int] = [
                        b,
                        slice(None),
                        slice(None),
                        slice(None),
                        slice(None),
                    ]
                    if before > 0:
                        index[2 + axis] = slice(0, before)
                        crop[tuple(index)] = pad_value
                    if after > 0:
                        index[2 + axis] = slice(need[axis] - after, need[axis])
                        crop[tuple(index)] = pad_value
        values = _unpadded(self.op)(crop)
        return _State(out_starts, values)


def _unpadded(op: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``op`` with its padding removed (the caller padded explicitly)."""
    if isinstance(op, nn.Conv3d):
        return lambda x: functional.conv3d(
            x, op.weight, op.bias, op.stride, 0, op.dilation, op.groups
        )
    if isinstance(op, nn.MaxPool3d):
        return lambda x: functional.max_pool3d(x, op.kernel_size, op.stride, 0, op.dilation)
    if isinstance(op, nn.AvgPool3d):
        return lambda x: functional.avg_pool3d(x, op.kernel_size, op.stride, 0)
    raise TypeError(f"no incremental rule for {type(op).__name__}")


@dataclasses.dataclass(frozen=True)
class _Unit:
    """One step of the network that can run in full or on windows.

    ``stages`` run in sequence; with ``dense`` the unit's input is concatenated in front of the
    output (a DenseNet layer).
    """

    module: nn.Module
    stages: tuple[_Spatial, ...]
    trailing: tuple[nn.Module, ...] = ()  # pointwise modules after the last stage
    dense: bool = False

    def full(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def baselines(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The unoccluded input of each stage, then the unit's output."""
        inputs = [x]
        y = x
        for stage in self.stages:
            y = stage.full(y)
            inputs.append(y)
        for module in self.trailing:
            y = module(y)
        inputs[-1] = torch.cat([x, y], 1) if self.dense else y
        return inputs

    def apply(self, state: _State, bases: list[torch.Tensor]) -> _State:
        out = state
        for stage, base in zip(self.stages, bases[:-1], strict=True):
            out = stage.apply(out, base)
        values = out.values
        for module in self.trailing:
            values = module(values)
        if not self.dense:
            return _State(out.starts, values)
        head = _crop(bases[0], out.starts, out.size)
        _paste(head, out.starts, state)
        return _State(out.starts, torch.cat([head, values], 1))


_POINTWISE = (nn.BatchNorm3d, nn.ReLU, nn.Dropout, nn.Dropout3d, nn.Identity)


def _split_stages(
    modules: Sequence[nn.Module],
) -> tuple[tuple[_Spatial, ...], tuple[nn.Module, ...]] | None:
    stages: list[_Spatial] = []
    pending: list[nn.Module] = []
    for module in modules:
        if isinstance(module, _POINTWISE):
            pending.append(module)
        elif isinstance(module, (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d)):
            if getattr(module, "dilation", 1) not in (1, (1, 1, 1)) or getattr(
                module, "ceil_mode", False
            ):
                return None
            stages.append(_Spatial(tuple(pending), module))
            pending = []
        else:
            return None
    return tuple(stages), tuple(pending)


def densenet_units(
    model: nn.Module,
) -> tuple[list[_Unit], Callable[[torch.Tensor], torch.Tensor]] | None:
    """MONAI DenseNet as windowable units + its head (``class_layers``, or the model's ``head``
    where it has one: the Bern heads); ``None`` for any other model."""
    features, head = getattr(model, "features", None), getattr(model, "class_layers", None)
    if not isinstance(features, nn.Sequential) or not isinstance(head, nn.Module):
        return None
    head = getattr(model, "head", head)  # a network with more outputs than the classifier's
    if not callable(head):
        return None
    units: list[_Unit] = []
    for child in features.children():
        if isinstance(child, _POINTWISE):
            units.append(_Unit(child, (), (child,)))
            continue
        layers = [child] if isinstance(child, (nn.Conv3d, nn.MaxPool3d)) else None
        if layers is not None:
            units.append(_Unit(child, (_Spatial((), child),)))
            continue
        inner = list(child.children())
        if inner and all(
            isinstance(getattr(layer, "layers", None), nn.Sequential) for layer in inner
        ):
            for layer in inner:  # a dense block
                split = _split_stages(list(layer.get_submodule("layers").children()))
                if split is None:
                    return None
                units.append(_Unit(layer, split[0], split[1], dense=True))
            continue
        split = _split_stages(inner)  # a transition
        if split is None or not split[0]:
            return None
        units.append(_Unit(child, split[0], split[1]))
    return units, head


class OccludedForward:
    """Logits of zero-occluded copies of one volume (windowed while it pays, then in full)."""

    def __init__(self, model: nn.Module, image: torch.Tensor, incremental: bool = True):
        """``image``: (1, 1, X, Y, Z); ``incremental``: window MONAI DenseNet's early units."""
        self.model, self.image = model, image
        parsed = densenet_units(model) if incremental else None
        self.units: list[_Unit] = []
        self.head: Callable[[torch.Tensor], torch.Tensor] = model
        if parsed is not None:
            self.units, self.head = parsed
        self.bases: list[list[torch.Tensor]] = []
        self.rest_input = image

    def prepare(self, patch: Sequence[int]) -> torch.Tensor:
        """Unoccluded activations of the windowed units; returns the unoccluded logits (1, C).

        Units are windowed while a central window stays under ``INCREMENTAL_LIMIT`` of the map.
        """
        x, size = self.image, np.asarray(patch)
        for unit in self.units:
            bases = unit.baselines(x)
            grown = size
            for stage, base in zip(unit.stages, bases[:-1], strict=True):
                shape = np.asarray(base.shape[2:])
                grown = np.minimum(grown, shape)
                centre = ((shape - grown) // 2)[None]
                grown = np.asarray(stage.output_window(centre, list(grown), list(shape))[1])
            out_shape = np.asarray(bases[-1].shape[2:])
            if np.prod(np.minimum(grown, out_shape)) > INCREMENTAL_LIMIT * np.prod(out_shape):
                break
            self.bases.append(bases)
            x, size = bases[-1], grown
        self.rest_input = x
        return self._rest(x)

    def _rest(self, x: torch.Tensor) -> torch.Tensor:
        if not self.units:
            return self.model(x)
        for unit in self.units[len(self.bases) :]:
            x = unit.full(x)
        return self.head(x)

    def logits(self, starts: np.ndarray, patch: Sequence[int]) -> torch.Tensor:
        """Logits (B, C) of the copies with the windows at ``starts`` (B, 3) zeroed (clipped at the edge)."""
        shape = np.asarray(self.image.shape[2:])
        inside = np.minimum(starts, shape - np.asarray(patch))  # clipped windows, moved inside
        values = _crop(self.image, inside, patch)
        for b, (start, moved) in enumerate(zip(starts, inside, strict=True)):
            offset = start - moved
            values[_at(b, (slice(int(o), None) for o in offset))] = 0
        state = _State(inside, values)
        for unit, bases in zip(self.units[: len(self.bases)], self.bases, strict=True):
            state = unit.apply(state, bases)
        full = self.rest_input.expand(len(starts), *self.rest_input.shape[1:]).clone()
        _paste(full, np.zeros_like(state.starts), state)
        return self._rest(full)
