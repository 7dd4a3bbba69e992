"""Memory estimated before allocating: close to a real step's count, and any grid in a second."""

from __future__ import annotations

import time

import pytest
import torch

from sihnet.errors import SihnetError
from sihnet.models.densenet import build_model
from sihnet.models.memory import check_fits, saved_activation_bytes, training_bytes


def test_the_estimate_scales_with_the_grid_and_batch_and_is_instant() -> None:
    started = time.perf_counter()
    huge = training_bytes(build_model, (4, 1, 1024, 1024, 1024), "fp32")
    assert time.perf_counter() - started < 10
    assert huge > 1000 * 2**30  # terabytes: refused below, never allocated
    small = training_bytes(build_model, (4, 1, 32, 32, 32), "fp32")
    assert small < training_bytes(build_model, (8, 1, 32, 32, 32), "fp32") < 2 * small
    checkpointed = training_bytes(lambda: build_model(True), (4, 1, 48, 64, 64), "fp32")
    assert checkpointed < 0.7 * training_bytes(build_model, (4, 1, 48, 64, 64), "fp32")
    assert training_bytes(build_model, (4, 1, 48, 64, 64), "bf16") < training_bytes(
        build_model, (4, 1, 48, 64, 64), "fp32"
    )


def test_more_than_the_device_has_is_one_line() -> None:
    with pytest.raises(SihnetError, match=r"needs about [\d,.]+ GB on cpu, [\d,.]+ GB is free"):
        check_fits(2**62, torch.device("cpu"), "a training step")
    check_fits(2**20, torch.device("cpu"), "a training step")


@pytest.mark.slow  # a real forward and backward at 64^3 under MemTracker
def test_the_estimate_is_near_pytorchs_count_of_a_real_step() -> None:
    from sihnet.training.plan import peak_tensor_bytes

    torch.manual_seed(0)
    model = build_model()
    x = torch.rand(2, 1, 64, 64, 64)
    counted = peak_tensor_bytes(lambda: model(x)[:, 1].sum().backward(), model)
    saved, weights = saved_activation_bytes(build_model, (2, 1, 64, 64, 64), torch.float32)
    assert 0.67 * counted < saved + 8 * weights < 1.5 * counted
