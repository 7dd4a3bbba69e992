"""Whether a scan's head was masked away: skull-stripped, or defaced or cropped through the skull
base. The dura, the sinuses and the basal cisterns are then not in the image, and the reader
would measure the mask's edge as anatomy: such a scan is not measured.

Skull-stripping tools (BET, SynthStrip, HD-BET, FreeSurfer) set everything outside the brain to
one value, the image's minimum; a whole head has skull, marrow and scalp there, whose values
(noise included) are almost never exactly that. So a shell 4-8 mm outside the template's brain
surface, carried into the scan, is sampled (nearest voxel: no blending with the brain): on the 8
real heads and synthetic heads looked at, 0-2% of its samples were exactly the minimum, on three
skull-stripped scans 96-100% (docs/reader.md).
"""

from __future__ import annotations

import numpy as np

from sihnet.preprocessing.registration import Alignment
from sihnet.reader.profiles import Scan
from sihnet.reader.regions import Surface, template_regions

SHELL_MM = (4.0, 6.0, 8.0)  # outside the brain's surface: the skull and the scalp
MASKED_SHARE = 0.6  # of the shell's samples exactly at the image's minimum


def _masked_share(scan: Scan, alignment: Alignment, surface: Surface) -> float:
    """The share of the shell outside ``surface`` whose nearest voxel is the image's minimum (NaN
    when the shell lies outside the scan)."""
    from scipy import ndimage

    template = np.concatenate([surface.points + d * surface.normals for d in SHELL_MM])
    inverse = np.linalg.inv(scan.affine)
    voxels = alignment.to_world(template) @ inverse[:3, :3].T + inverse[:3, 3]
    values = ndimage.map_coordinates(scan.volume, voxels.T, order=0, mode="constant", cval=np.nan)
    values = values[np.isfinite(values)]
    if values.size < 0.25 * len(template):
        return float("nan")
    return float(np.mean(values == np.nanmin(scan.volume)))


def masked_reason(scan: Scan, alignment: Alignment) -> str:
    """Why a scan is masked ("" when its head is whole where the reader looks)."""
    regions = template_regions()
    if _masked_share(scan, alignment, regions.convexity) >= MASKED_SHARE:
        return "skull-stripped: the dura and the cisterns are masked"
    if _masked_share(scan, alignment, regions.skull_base) >= MASKED_SHARE:
        return "masked at the skull base (defaced or cropped through it): the cisterns are masked"
    return ""
