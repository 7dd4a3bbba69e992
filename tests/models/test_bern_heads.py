"""The auxiliary Bern heads: masked loss, the Bern rules on predicted components, the network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sihnet.bern import HEAD_FIELDS
from sihnet.models.bern_heads import (
    BernDenseNet121,
    auto_bern,
    bern_loss,
    bern_targets,
    has_bern_head,
)

NAN = math.nan


def _network() -> BernDenseNet121:
    network = BernDenseNet121()
    network.set_distance_scale(np.array([[0, 1, 0, 4.0, 5.0, 7.0], [1, 0, 1, 6.0, 7.0, 9.0]]))
    return network


def test_masked_loss_equals_the_loss_on_the_present_fields_only() -> None:
    network = _network()
    raw = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor(
        [[1, NAN, 0, 5.0, NAN, 8.0], [NAN, NAN, NAN, NAN, NAN, NAN], [0, 1, NAN, NAN, 6.0, 7.5]]
    )
    present = torch.isfinite(targets)
    sign_mask, distance_mask = present[:, :3], present[:, 3:]
    signs = torch.nn.functional.binary_cross_entropy_with_logits(
        raw[:, :3][sign_mask], targets[:, :3][sign_mask]
    )
    standardised = (targets[:, 3:] - network.distance_mean) / network.distance_sd
    distances = torch.nn.functional.huber_loss(
        raw[:, 3:][distance_mask], standardised[distance_mask]
    )
    assert float(bern_loss(raw, targets, network)) == pytest.approx(float(signs + distances))
    assert torch.isfinite(bern_loss(raw, targets, network))
    # a row with every field missing changes nothing
    assert float(bern_loss(raw[[0, 2]], targets[[0, 2]], network)) == pytest.approx(
        float(signs + distances)
    )
    nothing = bern_loss(raw.requires_grad_(), torch.full((3, 6), NAN), network)
    assert float(nothing) == 0.0
    nothing.backward()  # still part of the graph
    assert raw.grad is not None and float(raw.grad.abs().sum()) == 0.0


def test_distance_scale_is_the_training_patients_and_survives_the_weights() -> None:
    network = _network()
    assert network.distance_mean.tolist() == pytest.approx([5.0, 6.0, 8.0])
    assert network.distance_sd.tolist() == pytest.approx([1.0, 1.0, 1.0])
    state = network.state_dict()
    assert has_bern_head(set(state)) and "distance_mean" in state
    again = BernDenseNet121()
    again.load_state_dict(state)
    assert again.distance_mean.tolist() == pytest.approx([5.0, 6.0, 8.0])


def test_the_heads_leave_the_classifier_output_alone() -> None:
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    network = _network().eval()
    plain = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    plain.load_state_dict(
        {
            k: v
            for k, v in network.state_dict().items()
            if not k.startswith(("bern_head", "distance_"))
        }
    )
    x = torch.rand(2, 1, 32, 32, 32)
    with torch.no_grad():
        logits, raw = network(x)  # one forward, both outputs
        alone = plain(x)
    assert logits.shape == (2, 2) and raw.shape == (2, 6)
    assert torch.equal(alone, logits)
    components = network.components(raw)
    assert ((components[:, :3] >= 0) & (components[:, :3] <= 1)).all()


def test_the_bern_rules_on_predicted_components() -> None:
    # signs p: pachy 0.9 (2), venous 0.2 (0), subdural 0.6 (1); supra 3.0 <= 4 (2),
    # prepontine 6.0 > 5 (0), mamillopontine 6.0 <= 6.5 (1): 6
    score, expected = auto_bern(np.array([0.9, 0.2, 0.6, 3.0, 6.0, 6.0]))
    assert score == 6
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    assert expected == pytest.approx(2 * 0.9 + 2 * 0.2 + 0.6 + 2 * phi(1.0) + phi(-1.0) + phi(0.5))
    assert auto_bern(np.array([0.0, 0.0, 0.0, 9.0, 9.0, 9.0]))[0] == 0


def test_reader_fields_become_targets_with_missing_as_nan() -> None:
    rows = [{"pachymeningeal_enhancement": "1", "suprasellar_cistern_mm": "3.5"}, {}]
    targets = bern_targets(rows)
    assert targets.shape == (2, len(HEAD_FIELDS))
    assert targets[0, 0] == 1 and targets[0, 3] == 3.5 and np.isnan(targets[0, 1])
    assert np.isnan(targets[1]).all()
