"""Whether a scan shows contrast enhancement: pachymeningeal enhancement and the engorged sinus are
signs of a contrast-enhanced T1, and a T1 without contrast is not read for them.

With gadolinium the pituitary gland and the dural venous sinuses are brighter than white matter
(the gland 1.2-1.6 x, the superior sagittal sinus likewise); without it the anterior pituitary is
grey matter (0.6-0.8 x) and the sinus a flow void or grey. On three real non-contrast heads the
gland read 0.47-0.73 x white matter and the sinus 0.61-0.69 x; on synthetic contrast-enhanced
heads at 2.5 mm the gland 0.84-1.16 x (``benchmarks/real_heads.py``, docs/reader.md). A scan is
called unenhanced only when both were read and both are below their threshold; when either was
not read, the signs are read as before.
"""

from __future__ import annotations

import numpy as np

from sihnet.reader.profiles import Profile, Scan
from sihnet.reader.regions import Surface
from sihnet.reader.signs import Measure, profiles_across

GLAND_ENHANCED = 0.8  # x white matter: an enhancing gland is brighter than grey matter
SINUS_ENHANCED = 0.9  # x white matter: an enhancing sinus is about white matter or brighter
UNIT = "x white matter"
NEEDS_CONTRAST = ("dural_enhancement", "sinus_height_mm")


def gland_brightness(line: Profile, top: float, white: float) -> Measure:
    """The pituitary's brightest value just under its top (``top`` on the upward ``line``), over
    white matter."""
    gland = line.level(top - 1.0, top - 3.0, "max")
    if not np.isfinite(gland) or white <= 0:
        return Measure(None, UNIT, "the pituitary was not found")
    return Measure(float(gland / white), UNIT)


def sinus_brightness(
    scan: Scan, surface: Surface, to_world: np.ndarray, rotation: np.ndarray, white: float
) -> Measure:
    """The superior sagittal sinus' brightest value from 2 mm inside to 8 mm outside the brain's
    surface over the vertex, over white matter: the median over the profiles."""
    peaks = [
        float(np.nanmax(p.values))
        for p in profiles_across(scan, surface, to_world, rotation, -2.0, 8.0)
        if np.isfinite(p.values).any()
    ]
    if not peaks or white <= 0:
        return Measure(None, UNIT, "the vertex lies outside the scan")
    return Measure(float(np.median(peaks) / white), UNIT)


def without_contrast(measures: dict[str, Measure]) -> dict[str, Measure]:
    """The measures with those that need contrast withdrawn, saying why, when the gland and the
    sinus both read below their thresholds; unchanged otherwise."""
    gland, sinus = measures["pituitary_enhancement"].value, measures["sinus_enhancement"].value
    if gland is None or sinus is None or gland >= GLAND_ENHANCED or sinus >= SINUS_ENHANCED:
        return measures
    reason = (
        f"the scan shows no contrast enhancement (pituitary {gland:.2f}, superior sagittal sinus "
        f"{sinus:.2f} x white matter): a T1 without contrast cannot show it"
    )
    return {
        name: Measure(None, measure.unit, reason) if name in NEEDS_CONTRAST else measure
        for name, measure in measures.items()
    }
