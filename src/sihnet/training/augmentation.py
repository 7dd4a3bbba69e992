"""The paper's six augmentations from MONAI, parameterised by :class:`AugmentationConfig`."""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.transforms import (
    Compose,
    RandAffine,
    RandBiasField,
    RandFlip,
    RandGaussianNoise,
    RandHistogramShift,
    RandShiftIntensity,
)

from sihnet.config import AugmentationConfig


def build_augmentation(config: AugmentationConfig, spacing_mm: float, seed: int) -> Compose | None:
    """MONAI array transforms for one (1, X, Y, Z) tensor; ``None`` when disabled.

    Order: intensity shift, histogram shift, bias field, flip, affine (rotation in degrees,
    isotropic scale, translation in mm converted to voxels, zero padding), Gaussian noise.
    """
    if not config.enabled:
        return None
    rotate = math.radians(config.affine_rotate_deg)
    translate = config.affine_translate_mm / spacing_mm
    transforms = Compose(
        [
            RandShiftIntensity(
                offsets=config.intensity_shift_offset, prob=config.intensity_shift_prob
            ),
            RandHistogramShift(
                num_control_points=config.histogram_shift_control_points,
                prob=config.histogram_shift_prob,
            ),
            RandBiasField(coeff_range=config.bias_field_coefficients, prob=config.bias_field_prob),
            RandFlip(spatial_axis=list(config.flip_axes), prob=config.flip_prob),
            RandAffine(
                prob=config.affine_prob,
                rotate_range=(rotate, rotate, rotate),
                scale_range=(config.affine_scale,) * 3,
                translate_range=(translate, translate, translate),
                padding_mode="zeros",
            ),
            RandGaussianNoise(prob=config.noise_prob, std=config.noise_std),
        ]
    )
    transforms.set_random_state(seed=seed)
    return transforms


def build_view_augmentations(
    config: AugmentationConfig, spacings: list[float], seed: int
) -> Compose | tuple[Compose | None, ...] | None:
    """One chain for a single canvas; with views one chain per view (its own spacing, seed)."""
    if len(spacings) == 1:
        return build_augmentation(config, spacings[0], seed)
    return tuple(build_augmentation(config, s, seed + 104_729 * i) for i, s in enumerate(spacings))


def augment_batch(images: Any, transforms: Any) -> Any:
    """Apply ``transforms`` sample by sample to (N, 1, X, Y, Z), on the tensor's own device; a
    tuple of views gets its tuple of chains, view by view."""
    if isinstance(images, tuple | list):
        return tuple(
            augment_batch(view, chain) for view, chain in zip(images, transforms, strict=True)
        )
    if transforms is None:
        return images
    out = [torch.as_tensor(transforms(image)).to(images.dtype) for image in images]
    return torch.stack([o.as_subclass(torch.Tensor) for o in out])
