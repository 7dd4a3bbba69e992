"""Incremental DenseNet inference reproduces plain forwards."""

from __future__ import annotations

import numpy as np

from sihnet.interpret.incremental import densenet_units
from sihnet.interpret.occlusion import occlusion_map
from tests.helpers import randomised_densenet, volume


def test_incremental_inference_equals_plain_forwards() -> None:
    model, image = randomised_densenet(), volume(seed=1)
    assert densenet_units(model) is not None
    fast = occlusion_map(model, image, (5, 6, 7), batch_size=5)
    plain = occlusion_map(model, image, (5, 6, 7), batch_size=5, incremental=False)
    assert fast.incremental_units > 0 and plain.incremental_units == 0
    assert fast.forwards == plain.forwards
    np.testing.assert_allclose(fast.map, plain.map, atol=1e-6, rtol=0)
