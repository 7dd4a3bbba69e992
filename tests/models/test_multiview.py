"""Several views, one DenseNet-121 trunk each: outputs, which view each Bern item reads, and the
occlusion engine on one view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sihnet.bern import HEAD_FIELDS
from sihnet.config import ViewConfig
from sihnet.models.densenet import build_model
from sihnet.models.multiview import MultiViewDenseNet, ViewModel

DISTANCES = ("suprasellar_cistern_mm", "prepontine_cistern_mm", "mamillopontine_distance_mm")


def _network(heads: bool = True) -> MultiViewDenseNet:
    torch.manual_seed(0)
    view = ViewConfig(name="midline", size=(32, 32, 32), bern_items=DISTANCES)
    network = build_model(bern_heads=heads, views=[view])
    assert isinstance(network, MultiViewDenseNet)
    return network.eval()


def _inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(batch, 1, 32, 32, 32, generator=generator), torch.rand(
        batch, 1, 32, 32, 32, generator=generator
    )


def test_outputs_and_which_view_each_bern_item_reads() -> None:
    network = _network()
    whole, midline = _inputs()
    whole.requires_grad_(True)
    midline.requires_grad_(True)
    logits, bern = network((whole, midline))
    assert logits.shape == (2, 2) and bern.shape == (2, len(HEAD_FIELDS))
    for name in HEAD_FIELDS:
        whole.grad, midline.grad = None, None
        bern[:, HEAD_FIELDS.index(name)].sum().backward(retain_graph=True)
        reads_midline = float(midline.grad.abs().sum()) > 0
        reads_whole = float(whole.grad.abs().sum()) > 0
        assert (reads_midline, reads_whole) == (
            (True, False) if name in DISTANCES else (False, True)
        ), name
    plain = _network(heads=False)
    assert isinstance(plain((whole, midline)), torch.Tensor)  # no heads: logits only


@pytest.mark.parametrize("view", ["main", "midline"])
def test_one_view_for_the_occlusion_engine_is_the_network(view: str) -> None:
    from sihnet.interpret.occlusion import occlusion_map

    network = _network()
    whole, midline = _inputs(batch=1)
    single = ViewModel(network, view, [whole, midline])
    with torch.no_grad():
        logits, bern = network((whole, midline))
        view_logits, view_bern = single(whole if view == "main" else midline)
    torch.testing.assert_close(view_logits, logits)
    torch.testing.assert_close(view_bern, bern)
    image = (whole if view == "main" else midline)[0]
    fast = occlusion_map(single, image, (8, 8, 8), target="suprasellar_cistern_mm")
    slow = occlusion_map(
        single, image, (8, 8, 8), target="suprasellar_cistern_mm", incremental=False
    )
    np.testing.assert_allclose(fast.map, slow.map, atol=1e-5)
    # the suprasellar cistern is read from the midline view alone: occluding the head changes nothing
    assert (np.abs(fast.map).max() > 1e-5) == (view == "midline")
