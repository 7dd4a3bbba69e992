from pathlib import Path

import numpy as np
import pytest
import torch

from sihnet.config import AugmentationConfig
from sihnet.training.augmentation import augment_batch, build_augmentation
from sihnet.training.fold import Samples, auroc_or_nan, class_weights, patient_level


def test_class_weights_are_inverse_class_ratios() -> None:
    weights = class_weights([0] * 30 + [1] * 10)
    np.testing.assert_allclose(weights.numpy(), [40 / 60, 40 / 20])
    # Balanced classes weigh equally.
    np.testing.assert_allclose(class_weights([0, 1, 0, 1]).numpy(), [1.0, 1.0])


def test_patient_level_averages_scans() -> None:
    samples = Samples(["a", "a", "b"], [Path("x"), Path("y"), Path("z")], [1, 1, 0])
    patients, labels, probabilities = patient_level(samples, np.array([0.2, 0.6, 0.3]))
    assert patients == ["a", "b"]
    np.testing.assert_allclose(probabilities, [0.4, 0.3])
    np.testing.assert_array_equal(labels, [1, 0])


def test_auroc_is_nan_with_one_class() -> None:
    assert np.isnan(auroc_or_nan(np.array([1, 1]), np.array([0.1, 0.2])))
    assert auroc_or_nan(np.array([0, 1]), np.array([0.1, 0.2])) == 1.0


@pytest.mark.parametrize("enabled", [True, False])
def test_augmentation_keeps_shape_and_is_seeded(enabled: bool) -> None:
    config = AugmentationConfig(
        enabled=enabled,
        affine_prob=1.0,
        noise_prob=1.0,
        bias_field_prob=1.0,
        histogram_shift_prob=1.0,
    )
    images = torch.rand(2, 1, 16, 20, 24)
    first = augment_batch(images, build_augmentation(config, spacing_mm=4.0, seed=1))
    second = augment_batch(images, build_augmentation(config, spacing_mm=4.0, seed=1))
    assert first.shape == images.shape and type(first) is torch.Tensor
    torch.testing.assert_close(first, second)
    assert (not torch.equal(first, images)) == enabled
