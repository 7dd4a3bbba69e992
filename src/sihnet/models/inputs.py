"""A network input is one canvas (N, 1, X, Y, Z), or with views a tuple of them (whole head first):
the few operations every stage needs on either, in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Images = torch.Tensor | tuple[torch.Tensor, ...]


def map_views(images: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``function`` applied to the canvas, or to each view of a tuple (or list) of them."""
    if isinstance(images, tuple | list):
        return tuple(function(torch.as_tensor(view)) for view in images)
    return function(torch.as_tensor(images))


def as_batch(volume: np.ndarray | torch.Tensor | tuple[Any, ...]) -> Images:
    """One scan's input (1, X, Y, Z) (or a tuple of views) as a batch of one."""
    return map_views(volume, lambda view: view[None])


def batch_size(images: Images) -> int:
    return int((images[0] if isinstance(images, tuple) else images).shape[0])


def shapes(images: Images) -> tuple[tuple[int, ...], ...]:
    """The shape of each view (one for a single canvas)."""
    views = images if isinstance(images, tuple) else (images,)
    return tuple(tuple(view.shape) for view in views)
