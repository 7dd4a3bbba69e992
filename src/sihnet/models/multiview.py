"""Several views of one head, one MONAI DenseNet-121 trunk each, their features joined.

The whole head at the canvas's spacing (dural enhancement, subdural collections, the sinuses) and
high-resolution boxes of where the other signs are (the sella, the cisterns, the pons) each pass
through their own ``DenseNet121`` up to its pooled 1024 features. The fistula classifier reads all
views' features joined; each Bern item's head reads the view the configuration assigns it
(``ViewConfig.bern_items``; the whole-head view otherwise). ``forward`` takes the views as a tuple
``(whole, view_1, ...)`` of (N, 1, X, Y, Z) tensors and returns ``(logits (N, 2), bern (N, 6))``
(``bern`` None without heads), the Bern outputs raw as in :mod:`sihnet.models.bern_heads`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import DenseNet121
from torch import nn

from sihnet.bern import DISTANCES, HEAD_FIELDS
from sihnet.models.bern_heads import BernScale

FEATURES = 1024  # DenseNet-121's pooled features


def _trunk() -> DenseNet121:
    """MONAI DenseNet-121 without its classifier: ``class_layers`` ends in the pooled features."""
    trunk = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    trunk.class_layers.out = nn.Identity()
    return trunk


class MultiViewDenseNet(BernScale, nn.Module):
    """One DenseNet-121 trunk per view (module docstring).

    Args:
        views: the names of the views after the whole head, in input order.
        bern_items: per view (whole head first) the Bern items its head reads; empty lists
            everywhere and ``bern_heads`` False: no Bern outputs.
        bern_heads: whether the network has the Bern heads.
    """

    distance_mean: torch.Tensor
    distance_sd: torch.Tensor

    def __init__(
        self, views: Sequence[str], bern_items: Sequence[Sequence[str]], bern_heads: bool
    ) -> None:
        super().__init__()
        self.view_names = ("main", *views)
        self.trunks = nn.ModuleDict({name: _trunk() for name in self.view_names})
        self.classifier = nn.Linear(FEATURES * len(self.view_names), 2)
        self.bern_heads = bern_heads
        self.assignment: list[list[int]] = []
        if bern_heads:
            claimed = {item for items in bern_items[1:] for item in items}
            main = [name for name in HEAD_FIELDS if name not in claimed]
            per_view = [main, *(list(items) for items in bern_items[1:])]
            self.assignment = [[HEAD_FIELDS.index(n) for n in items] for items in per_view]
            self.heads = nn.ModuleDict(
                {
                    name: nn.Linear(FEATURES, len(items))
                    for name, items in zip(self.view_names, self.assignment, strict=True)
                    if items
                }
            )
            self.register_buffer("distance_mean", torch.zeros(len(DISTANCES)))
            self.register_buffer("distance_sd", torch.ones(len(DISTANCES)))

    def pooled(self, name: str, features: torch.Tensor) -> torch.Tensor:
        """A view's pooled features (N, 1024) from its trunk's last feature map."""
        return self.trunks[name].class_layers(features)  # type: ignore[operator]

    def head_from_pooled(
        self, pooled: Sequence[torch.Tensor]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The outputs from every view's pooled features, in view order."""
        logits = self.classifier(torch.cat(list(pooled), dim=1))
        if not self.bern_heads:
            return logits
        bern = logits.new_zeros(logits.shape[0], len(HEAD_FIELDS))
        for name, features, columns in zip(self.view_names, pooled, self.assignment, strict=True):
            if columns:
                bern[:, columns] = self.heads[name](features).to(bern.dtype)
        return logits, bern

    def forward(
        self, views: Sequence[torch.Tensor]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        pooled = [
            self.pooled(name, self.trunks[name].features(x))  # type: ignore[operator]
            for name, x in zip(self.view_names, views, strict=True)
        ]
        return self.head_from_pooled(pooled)


class ViewModel(nn.Module):
    """One view of a :class:`MultiViewDenseNet` as a single-input DenseNet for the occlusion
    engine: ``features`` is the view's trunk, ``head`` joins its pooled features with the other
    views' (fixed: those of the unoccluded scan)."""

    def __init__(
        self, network: MultiViewDenseNet, view: str, inputs: Sequence[torch.Tensor]
    ) -> None:
        super().__init__()
        self.network, self.view = network, view
        self.features = network.trunks[view].features
        self.class_layers = network.trunks[view].class_layers
        self.index = network.view_names.index(view)
        with torch.inference_mode():
            fixed = [
                network.pooled(name, network.trunks[name].features(x))  # type: ignore[operator]
                for name, x in zip(network.view_names, inputs, strict=True)
            ]
        self.fixed = [f.clone() for f in fixed]

    def head(self, features: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        pooled = self.network.pooled(self.view, features)
        joined = [f.expand(pooled.shape[0], -1) for f in self.fixed]
        joined[self.index] = pooled
        return self.network.head_from_pooled(joined)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.features(x))  # type: ignore[operator]

    def components(self, raw: torch.Tensor) -> torch.Tensor:
        return self.network.components(raw)

    @property
    def bern_heads(self) -> bool:
        return self.network.bern_heads

    @property
    def distance_mean(self) -> torch.Tensor:
        return self.network.distance_mean

    @property
    def distance_sd(self) -> torch.Tensor:
        return self.network.distance_sd
