"""The MNI152 template, loaded in one place: nilearn's 1 mm T1 (the reader's box, its regions and
the synthetic heads) and its 2 mm brain (the similarity registration), and the one conversion of an
array with a RAS affine into a SimpleITK image. Callers scale the intensities as they need; the
arrays returned here are shared (cached once per process) and must not be written to.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

TEMPLATE_SPACING_MM = 2  # the registration's template


@functools.lru_cache(maxsize=1)
def mni152_t1() -> tuple[np.ndarray, np.ndarray]:
    """nilearn's 1 mm MNI152 T1: intensities (X, Y, Z) float32 as stored (0-255; its background
    holds 1e-45..1e-17) and the RAS affine (4, 4), read-only."""
    import nibabel as nib
    from nilearn import datasets

    image: Any = nib.load(str(datasets.MNI152_FILE_PATH))
    data = np.asarray(image.dataobj, dtype=np.float32)
    data.setflags(write=False)
    return data, np.asarray(image.affine, dtype=np.float64)


@functools.lru_cache(maxsize=1)
def mni152_brain_2mm() -> tuple[np.ndarray, np.ndarray]:
    """nilearn's MNI152 brain template at ``TEMPLATE_SPACING_MM``: intensities (X, Y, Z) float32
    (0-1) and the RAS affine (4, 4), read-only."""
    from nilearn import datasets

    image = datasets.load_mni152_template(resolution=TEMPLATE_SPACING_MM)
    data = np.asarray(image.dataobj, dtype=np.float32)
    data.setflags(write=False)
    return data, np.asarray(image.affine, dtype=np.float64)


def sitk_image(volume: np.ndarray, affine: np.ndarray) -> Any:
    """A SimpleITK image in LPS world mm (ITK's frame) from a RAS-affine array (I, J, K)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(volume, (2, 1, 0))))
    lps = np.diag([-1.0, -1.0, 1.0])
    matrix = lps @ affine[:3, :3]
    spacing = np.sqrt((matrix**2).sum(axis=0))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (matrix / spacing).ravel()])
    image.SetOrigin([float(v) for v in lps @ affine[:3, 3]])
    return image
