"""Batch normalisation over the global batch of several CPU processes.

Written by hand because PyTorch's ``SyncBatchNorm`` works only on GPUs (DistributedDataParallel
refuses it on CPU modules: "SyncBatchNorm layers only work with GPU modules"); on GPUs sihnet uses
PyTorch's. The batch statistics are summed over the processes with the differentiable
``torch.distributed.nn.functional.all_reduce``, so the gradients also flow across processes, as
with one process holding the whole batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce


class GlobalBatchNorm3d(nn.BatchNorm3d):
    """``BatchNorm3d`` whose training statistics are those of the batch over every process
    (same parameters and buffers, so state dicts load either way).

    Its collectives run on a process group of their own: DDP's gradient all-reduces, launched
    while the backward pass runs, must not interleave with them in a different order on
    different processes.
    """

    group: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_available() or not dist.is_initialized():
            return super().forward(x)
        channels, dims, shape = x.shape[1], [0, 2, 3, 4], (1, x.shape[1], 1, 1, 1)
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum(dims), count]), group=self.group)
        n = sums[-1]
        mean = sums[:channels] / n
        # Two passes (sum, then the sum of squared deviations): E[x^2] - E[x]^2 loses digits.
        var = all_reduce(((x - mean.view(shape)) ** 2).sum(dims), group=self.group) / n
        if (
            self.track_running_stats
            and self.running_mean is not None
            and self.running_var is not None
        ):
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def global_batchnorm(module: nn.Module, group: Any = None) -> nn.Module:
    """``module`` with every ``BatchNorm3d`` replaced by :class:`GlobalBatchNorm3d` (same values);
    call on every process (it creates their process group)."""
    if group is None and dist.is_available() and dist.is_initialized():
        group = dist.new_group()
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm3d) and not isinstance(child, GlobalBatchNorm3d):
            replacement = GlobalBatchNorm3d(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            replacement.load_state_dict(child.state_dict())
            replacement.group = group
            setattr(module, name, replacement.to(next(child.buffers()).device))
        else:
            global_batchnorm(child, group)
    return module
