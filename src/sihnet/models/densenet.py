"""The paper's classifier: MONAI ``DenseNet121`` (3D, one input channel, two classes)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from monai.networks.nets import DenseNet121
from torch.utils.checkpoint import checkpoint

from sihnet.config import ViewConfig


def build_model(
    activation_checkpointing: bool = False,
    bern_heads: bool = False,
    views: Sequence[ViewConfig] = (),
) -> torch.nn.Module:
    """MONAI ``DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)``: 11,244,674 parameters.

    Input (N, 1, X, Y, Z) float; output logits (N, 2): index 1 is the fistula class.

    Args:
        activation_checkpointing: recompute each dense block's activations in the backward pass
            instead of keeping them (see :func:`checkpoint_dense_layers`).
        bern_heads: the same network with the auxiliary Bern head
            (:class:`sihnet.models.bern_heads.BernDenseNet121`).
        views: further input views: a :class:`sihnet.models.multiview.MultiViewDenseNet`
            (input a tuple of views, one trunk each).
    """
    if views:
        from sihnet.models.multiview import MultiViewDenseNet

        items = [[], *(list(view.bern_items) for view in views)]
        network = MultiViewDenseNet([view.name for view in views], items, bern_heads)
        if activation_checkpointing:
            for trunk in network.trunks.values():
                checkpoint_dense_layers(trunk)
        return network
    if bern_heads:
        from sihnet.models.bern_heads import BernDenseNet121

        model: torch.nn.Module = BernDenseNet121()
    else:
        model = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    if activation_checkpointing:
        checkpoint_dense_layers(model)
    return model


def _memory_efficient_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A dense block's forward that keeps only each layer's new features: every layer's
    concatenated input and its inner activations are recomputed in the backward pass."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return block.__class__.forward(block, x)
    features = [x]
    for layer in block.children():
        inner: torch.nn.Module = layer.layers  # type: ignore[assignment]  # MONAI's _DenseLayer

        def new_features(*previous: torch.Tensor, inner: torch.nn.Module = inner) -> torch.Tensor:
            return inner(torch.cat(previous, 1))  # norm-relu-conv-norm-relu-conv on the concat

        features.append(checkpoint(new_features, *features, use_reentrant=False))
    return torch.cat(features, 1)


def checkpoint_dense_layers(model: torch.nn.Module) -> int:
    """Memory-efficient activation checkpointing of the dense blocks (torch.utils.checkpoint, as
    torchvision's ``memory_efficient`` DenseNet): a block keeps only each layer's new features;
    the ever-growing concatenations and every layer's inner activations — DenseNet's largest
    memory cost — are recomputed in the backward pass, for about a third more compute. The
    output, the gradients and the weights' names are those of the plain network.

    Returns:
        How many blocks were wrapped.
    """
    wrapped = 0
    for name, block in model.features.named_children():  # type: ignore[union-attr]
        if name.startswith("denseblock"):
            block.forward = functools.partial(_memory_efficient_block, block)
            wrapped += 1
    return wrapped
