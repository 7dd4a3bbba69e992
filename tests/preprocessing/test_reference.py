"""Input checks against the training images' ranges, in plain words."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sihnet.config import PreprocessingConfig
from sihnet.preprocessing.reference import image_properties, input_warnings, reference_statistics
from sihnet.preprocessing.volume import preprocess_file
from tests.helpers import brain_like, write_nifti

CONFIG = PreprocessingConfig(spacing_mm=4.0, size=(48, 48, 48))


def properties(path: Path) -> dict[str, float]:
    return image_properties(path, preprocess_file(path, CONFIG))


def test_images_like_the_training_ones_raise_no_warning_and_others_say_why(tmp_path: Path) -> None:
    training = [
        properties(
            write_nifti(
                tmp_path / f"t{i}.nii.gz",
                brain_like((40, 44, 42), seed=i),
                np.diag([3.0, 3.0, 3.0, 1.0]),
            )
        )
        for i in range(4)
    ]
    reference = reference_statistics(training)
    assert reference["slice_thickness_mm"]["n_images"] == 4
    same = properties(
        write_nifti(
            tmp_path / "same.nii.gz",
            brain_like((40, 44, 42), seed=9),
            np.diag([3.0, 3.0, 3.0, 1.0]),
        )
    )
    assert input_warnings(same, reference) == []
    thick = np.diag([3.0, 3.0, 7.0, 1.0])  # thick slices
    warnings = input_warnings(
        properties(write_nifti(tmp_path / "thick.nii.gz", brain_like((40, 44, 18)), thick)),
        reference,
    )
    assert any("slices are 7.0 mm thick" in w for w in warnings)
    shifted = np.zeros((40, 44, 42), np.float32)  # the head in one corner of the field of view
    shifted[:20, :22, :21] = brain_like((20, 22, 21))
    corner = write_nifti(tmp_path / "corner.nii.gz", shifted * 3 + 1, np.diag([6.0, 6.0, 6.0, 1.0]))
    warnings = input_warnings(properties(corner), reference)
    assert any("from the canvas centre" in w for w in warnings)
    tilted = np.diag([3.0, 3.0, 3.0, 1.0])
    angle = np.radians(30)
    tilted[:3, :3] = tilted[:3, :3] @ np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    warnings = input_warnings(
        properties(write_nifti(tmp_path / "tilt.nii.gz", brain_like((40, 44, 42)), tilted)),
        reference,
    )
    assert any("tilted 30°" in w for w in warnings)
