"""What the training images looked like, and plain-words warnings when a new image does not.

Per image, from the NIfTI header and the preprocessed model input: voxel spacing and slice
thickness (mm), obliquity (degrees), field of view (mm), how much of the head touches the canvas
border (cut off), how far the head's centre lies from the canvas centre (mm), how much of the
canvas the head fills, and the head's normalised intensities. A training run keeps the range of
each quantity over its images (``RUN/reference.json``: aggregates only, no per-patient values);
``predict`` compares a new image against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.affines import obliquity

from sihnet.preprocessing.volume import Preprocessed, voxel_spacing

HEAD_LEVEL = 0.1  # normalised intensity above which a canvas voxel counts as head


def image_properties(nifti: Path, prepared: Preprocessed) -> dict[str, float]:
    """The quantities of the module docstring for one image (header read, voxels not)."""
    header: Any = nib.load(str(nifti))
    affine = np.asarray(header.affine, dtype=np.float64)
    spacing = np.sort(voxel_spacing(affine))
    fov = voxel_spacing(affine) * np.asarray(header.shape[:3])
    image = np.asarray(prepared.image[0])
    head = image > HEAD_LEVEL
    canvas_spacing = float(voxel_spacing(prepared.affine)[0])
    properties = {
        "spacing_min_mm": float(spacing[0]),
        "slice_thickness_mm": float(spacing[-1]),
        "obliquity_deg": float(np.degrees(np.max(np.abs(obliquity(affine))))),
        "fov_min_mm": float(fov.min()),
        "head_fraction": float(head.mean()),
    }
    if not head.any():
        return {
            **properties,
            "border_fraction": 0.0,
            "centre_offset_mm": 0.0,
            "intensity_median": 0.0,
        }
    border = np.zeros_like(head)
    border[[0, -1], :, :] = border[:, [0, -1], :] = border[:, :, [0, -1]] = True
    centre = (np.asarray(image.shape) - 1) / 2
    offset = (np.argwhere(head).mean(axis=0) - centre) * canvas_spacing
    return {
        **properties,
        "border_fraction": float((head & border).sum() / head.sum()),
        "centre_offset_mm": float(np.linalg.norm(offset)),
        "intensity_median": float(np.median(image[head])),
    }


def reference_statistics(properties: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per quantity, the minimum and maximum over the training images (and how many)."""
    names = sorted({name for row in properties for name in row})
    return {
        name: {
            "min": float(np.min([row[name] for row in properties])),
            "max": float(np.max([row[name] for row in properties])),
            "n_images": len(properties),
        }
        for name in names
    }


# quantity -> (margin beyond the training range before warning, warning when above, when below)
CHECKS: dict[str, tuple[float, str, str]] = {
    "slice_thickness_mm": (0.25, "slices are {value:.1f} mm thick; the training scans were at most {max:.1f} mm", ""),
    "spacing_min_mm": (0.25, "voxels are {value:.1f} mm in-plane; the training scans were at most {max:.1f} mm", "voxels are {value:.2f} mm; the training scans were at least {min:.2f} mm"),
    "obliquity_deg": (5.0, "the acquisition is tilted {value:.0f}° from the scanner axes; training scans at most {max:.0f}°", ""),
    "fov_min_mm": (10.0, "", "the field of view is only {value:.0f} mm along one axis; training scans covered at least {min:.0f} mm"),
    "border_fraction": (0.02, "{percent:.0f}% of the head touches the edge of the model's canvas (cut off); training scans at most {max_percent:.0f}%", ""),
    "centre_offset_mm": (15.0, "the head's centre lies {value:.0f} mm from the canvas centre; training scans at most {max:.0f} mm (is the head centred in the field of view?)", ""),
    "head_fraction": (0.05, "the head fills {percent:.0f}% of the canvas; training scans at most {max_percent:.0f}%", "the head fills only {percent:.0f}% of the canvas; training scans at least {min_percent:.0f}% (is this a head?)"),
    "intensity_median": (0.1, "the head is brighter after normalisation than any training scan (median {value:.2f} vs at most {max:.2f}): another contrast or sequence?", "the head is darker after normalisation than any training scan (median {value:.2f} vs at least {min:.2f}): another contrast or sequence?"),
}  # fmt: skip


def input_warnings(
    properties: dict[str, float], reference: dict[str, dict[str, float]]
) -> list[str]:
    """Plain-words warnings where the image lies outside the training range (with a margin)."""
    warnings = []
    for name, (margin, above, below) in CHECKS.items():
        if name not in properties or name not in reference:
            continue
        value, low, high = properties[name], reference[name]["min"], reference[name]["max"]
        words = {
            "value": value,
            "min": low,
            "max": high,
            "percent": 100 * value,
            "max_percent": 100 * high,
            "min_percent": 100 * low,
        }
        if above and value > high + margin:
            warnings.append(above.format(**words))
        elif below and value < low - margin:
            warnings.append(below.format(**words))
    return warnings
