"""The paper's classifier: MONAI ``DenseNet121`` (3D, one input channel, two classes)."""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet121


def build_model() -> torch.nn.Module:
    """MONAI ``DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)``: 11,244,674 parameters.

    Input (N, 1, X, Y, Z) float; output logits (N, 2): index 1 is the fistula class.
    """
    return DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
