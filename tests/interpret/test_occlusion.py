"""Occlusion maps: the definition (box model), parity with captum, exactness of the speed-ups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sihnet.inference import Inference
from sihnet.interpret.occlusion import occlusion_map, window_starts
from tests.helpers import randomised_densenet, volume

BOX = (slice(4, 8), slice(8, 12), slice(0, 4))


class BoxModel(nn.Module):
    """Fistula logit = sum of the input inside ``BOX``; the other logit is constant."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = x[(slice(None), 0, *BOX)].flatten(1).sum(1) * self.scale
        return torch.stack([torch.zeros_like(inside), inside], 1)


def test_window_placement_is_captums() -> None:
    assert window_starts(32, 4, 4) == list(range(0, 32, 4))
    assert window_starts(32, 5, 5) == [0, 5, 10, 15, 20, 25, 30]  # last clipped at the end
    assert window_starts(10, 6, 4) == [0, 4]
    assert window_starts(11, 6, 4) == [0, 4, 8]
    assert window_starts(3, 5, 5) == [0]


def test_box_model_map_is_nonzero_exactly_on_the_box() -> None:
    image = volume((16, 16, 16))
    result = occlusion_map(BoxModel(), image, patch=(4, 4, 4), batch_size=3)
    expected = np.zeros((16, 16, 16), dtype=np.float32)
    expected[BOX] = float(image[(0, *BOX)].sum())
    np.testing.assert_allclose(result.map, expected, rtol=1e-6)
    assert (result.map != 0).sum() == 4**3
    assert result.base_score == pytest.approx(float(image[(0, *BOX)].sum()), rel=1e-6)


def test_box_model_overlapping_windows_average_over_covering_patches() -> None:
    image = torch.ones(1, 16, 16, 16)
    result = occlusion_map(BoxModel(), image, patch=(4, 4, 4), stride=(2, 2, 2), target="logit")
    total, count = np.zeros((16, 16, 16)), np.zeros((16, 16, 16))
    box = np.zeros((16, 16, 16), dtype=bool)
    box[BOX] = True
    for a in range(0, 13, 2):
        for b in range(0, 13, 2):
            for c in range(0, 13, 2):
                window = (slice(a, a + 4), slice(b, b + 4), slice(c, c + 4))
                total[window] += box[
                    window
                ].sum()  # ones: the logit drops by the occluded box voxels
                count[window] += 1
    np.testing.assert_allclose(result.map, total / count, rtol=1e-6)
    assert (result.map != 0).sum() == 8 * 8 * 6  # the box and the windows that touch it


@pytest.mark.parametrize(
    ("patch", "stride"), [((8, 8, 8), (8, 8, 8)), ((7, 9, 9), (7, 9, 9)), ((8, 8, 8), (6, 6, 6))]
)
def test_map_equals_captum_occlusion(
    patch: tuple[int, int, int], stride: tuple[int, int, int]
) -> None:
    from captum.attr import Occlusion

    model, image = randomised_densenet(), volume()
    ours = occlusion_map(model, image, patch, stride, batch_size=8)
    with torch.no_grad():
        reference = (
            Occlusion(model)
            .attribute(
                image[None],
                sliding_window_shapes=(1, *patch),
                strides=(1, *stride),
                baselines=0,
                target=1,
                perturbations_per_eval=8,
            )[0, 0]
            .numpy()
        )
    assert np.abs(reference).max() > 1e-4  # the comparison is not between two flat maps
    np.testing.assert_allclose(ours.map, reference, atol=1e-5, rtol=0)
    assert ours.forwards < ours.windows  # all-zero windows were skipped


def test_probability_target_is_the_softmax_of_the_fistula_logit() -> None:
    model, image = randomised_densenet(), volume(seed=2)
    logit = occlusion_map(model, image, (8, 8, 8), target="logit")
    probability = occlusion_map(model, image, (8, 8, 8), target="probability")
    with torch.no_grad():
        expected = torch.softmax(model(image[None]), 1)[0, 1]
    assert probability.base_score == pytest.approx(float(expected), rel=1e-5)
    assert np.abs(probability.map).max() > 0 and not np.allclose(probability.map, logit.map)


def test_bf16_map_approximates_the_fp32_map() -> None:
    model, image = randomised_densenet(), volume(seed=2)
    fp32 = occlusion_map(model, image, (16, 16, 16))
    bf16 = occlusion_map(
        model, image, (16, 16, 16), inference=Inference(torch.device("cpu"), "bf16")
    )
    error = np.abs(bf16.map - fp32.map).max()
    assert 0 < error < 0.1 * np.abs(fp32.map).max()  # bf16 was used, and stays close
    assert np.corrcoef(bf16.map.ravel(), fp32.map.ravel())[0, 1] > 0.95
    assert bf16.base_score == pytest.approx(fp32.base_score, abs=0.01)


def test_zero_image_runs_no_forward_and_relu_modules_are_restored() -> None:
    model = randomised_densenet()
    result = occlusion_map(model, torch.zeros(1, 32, 32, 32), (8, 8, 8))
    assert result.forwards == 0 and not result.map.any()
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_stride_larger_than_patch_is_refused_from_users_and_clipped_in_the_sweep() -> None:
    from sihnet.config import OcclusionConfig
    from sihnet.errors import SihnetError

    with pytest.raises(SihnetError, match="must not exceed the patch"):
        OcclusionConfig(patch_1mm=(2, 2, 2), stride_1mm=(4, 4, 4))
    result = occlusion_map(BoxModel(), volume((16, 16, 16)), (2, 2, 2), (4, 4, 4))
    assert result.stride == (2, 2, 2) and result.windows == 8**3
