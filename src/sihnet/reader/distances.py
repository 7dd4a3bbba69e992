"""The three Bern distances measured on the patient's own edges (Dobrocky et al. 2019; docs/reader.md).

Each starts from template landmarks carried into the scan by the refined alignment
(:mod:`sihnet.reader.warp`) and is read along its measurement line, as a radiologist reads it:

* **suprasellar cistern**: down the patient's vertical through the chiasm landmark, from the lower
  edge of the chiasm/hypothalamus to the upper edge of the pituitary;
* **prepontine cistern**: along the clivus' normal through the most anterior point of the pons,
  from the pons' anterior edge to the clivus;
* **mamillopontine distance**: the vertical distance between the lower edge of the mamillary
  bodies and the upper edge of the pons, each found on a vertical through its landmark.

The patient's vertical and the clivus' normal are the template's, turned by the alignment. An edge
is looked for within ``SEARCH_MM`` of its landmark: further away, the measurement is refused
("not measured") rather than read off another structure.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sihnet import landmarks
from sihnet.reader.profiles import STEP_MM, Profile, Scan

SEARCH_MM = 5.0  # how far from its landmark an edge may lie
MAX_GAP_MM = 16.0  # the widest cistern looked for
MIN_SLOPE = (
    0.15  # an edge of the brainstem or diencephalon: this share of the tissue-CSF contrast per mm
)
FAR_SLOPE = 0.06  # the rise out of a cistern (a thin dura at coarse voxels is faint)
MIN_DIP = 0.15  # a dip shallower than this share of the tissue-CSF contrast is no cistern
TISSUE_SHARE = 0.45  # of the white matter-CSF contrast: brighter is brain (grey matter 0.6-0.8)


@dataclasses.dataclass(frozen=True)
class Distance:
    """One measured distance.

    Attributes:
        name: the Bern item.
        mm: the distance, or None when not measured.
        start, end: world mm of its two ends (the picture's and the markups' points), or None.
        reason: why it was not measured ("" when it was).
    """

    name: str
    mm: float | None
    start: tuple[float, float, float] | None = None
    end: tuple[float, float, float] | None = None
    reason: str = ""


def _point(vector: np.ndarray) -> tuple[float, float, float]:
    return (float(vector[0]), float(vector[1]), float(vector[2]))


def _not_measured(name: str, reason: str) -> Distance:
    return Distance(name, None, reason=reason)


def _gap(
    profile: Profile, landmark_at: float, inward: float, csf: float
) -> tuple[float, float] | str:
    """The cistern on a profile that runs from a tissue (around ``landmark_at``; ``inward`` = +1
    or -1, the direction into that tissue) across CSF to the next structure: the positions of its
    two edges, or why they were not found.

    From the brightest point of the tissue near the landmark the profile is followed outwards to
    where it first gets close to CSF; the tissue's edge is the half-level crossing just before,
    and the far edge the first rise after it (steeper than ``FAR_SLOPE`` of the contrast per mm: a thin
    dura across the cistern is faint at coarse voxels). A cistern narrower than the blur never gets
    close to CSF; its width is then the dip's area over the tissue-CSF contrast (a blur keeps the
    area)."""
    tissue = profile.level(landmark_at + inward * 1.0, landmark_at + inward * 4.0)
    start = _argmax(profile, landmark_at + inward * SEARCH_MM, landmark_at - inward * 1.0)
    deep = csf + 0.25 * (tissue - csf)
    arrive = profile.crossing(deep, start, start - inward * 2 * SEARCH_MM)
    if arrive is None:
        return _narrow(profile, landmark_at, inward, tissue, csf)
    # the tissue's edge: half-way between CSF and the tissue 2.5 mm in from where CSF begins (a
    # dim, graded tissue such as the chiasm has no step, and brighter tissue further in is not it)
    inner = profile.level(arrive + inward * 2.0, arrive + inward * 3.0)
    near = profile.crossing((inner + csf) / 2, arrive + inward * 2.5, arrive)
    if near is None:
        return "the cistern's edge was not found near the landmark"
    far = profile.first_edge(
        arrive,
        arrive - inward * MAX_GAP_MM,
        rising=inward < 0,
        min_slope=FAR_SLOPE * (tissue - csf),
    )
    if far is None:
        return "the structure across the cistern was not found"
    return near, far


def _tissue_end(profile: Profile, landmark_at: float, inward: float, tissue_level: float) -> float:
    """Where the structure a landmark names ends towards its cistern: the landmark itself when
    brain lies just inward of it; else the outer end of the nearest run of brain within
    ``SEARCH_MM`` (brighter than ``tissue_level``, smoothed over 0.5 mm) that has no brain just
    outward of it. A registration leaves a landmark a few mm off its edge: on real heads the
    chiasm's fell in the third ventricle's optic recess, 2.5-4 mm above the chiasm."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter1d(np.nan_to_num(profile.values), 0.5 / STEP_MM)
    bright = smooth >= tissue_level
    inside = np.abs(profile.positions - landmark_at) <= SEARCH_MM
    at = int(np.argmin(np.abs(profile.positions - landmark_at)))
    reach = round(1.0 / STEP_MM)
    inward_side = bright[at : at + reach] if inward > 0 else bright[max(at - reach, 0) : at + 1]
    if inward_side.size and inward_side.mean() > 0.5:
        return landmark_at
    step = 1 if inward > 0 else -1  # index step inwards
    ends = [
        i
        for i in np.flatnonzero(inside & bright)
        if 0 <= i - step < bright.size and not bright[i - step]
    ]
    if not ends:
        return landmark_at
    nearest = min(ends, key=lambda i: abs(profile.positions[i] - landmark_at))
    return float(profile.positions[nearest])


def _argmax(profile: Profile, start: float, stop: float) -> float:
    inside = (profile.positions >= min(start, stop)) & (profile.positions <= max(start, stop))
    values = np.where(inside & np.isfinite(profile.values), profile.values, -np.inf)
    return float(profile.positions[int(np.argmax(values))])


def _argmin(profile: Profile, start: float, stop: float) -> float:
    inside = (profile.positions >= min(start, stop)) & (profile.positions <= max(start, stop))
    values = np.where(inside & np.isfinite(profile.values), profile.values, np.inf)
    return float(profile.positions[int(np.argmin(values))])


def _narrow(
    profile: Profile, landmark_at: float, inward: float, tissue: float, csf: float
) -> tuple[float, float] | str:
    """A cistern whose dip never gets close to CSF: twice the dip's area on the tissue's side, over
    the tissue-CSF contrast (a blur keeps the area; the far side may be a brighter structure, whose
    own blurred rise is no cistern), centred on the dip; 0 when the profile does not dip below the
    tissue by ``MIN_DIP`` of the contrast (the structures touch)."""
    if not (np.isfinite(tissue) and np.isfinite(csf) and tissue > csf):
        return "the cistern's edges were not found near the landmark (no tissue brighter than CSF)"
    deepest = _argmin(profile, landmark_at, landmark_at - inward * SEARCH_MM)
    depth = (tissue - profile.level(deepest, deepest, "min")) / (tissue - csf)
    if not np.isfinite(depth):
        return "the cistern's edges were not found near the landmark"
    if depth < MIN_DIP:
        return deepest, deepest
    low, high = sorted((deepest, deepest + inward * 3.0))
    inside = (profile.positions >= low) & (profile.positions <= high)
    half = float(
        np.clip((tissue - profile.values[inside]) / (tissue - csf), 0.0, 1.0).sum() * STEP_MM
    )
    return deepest + inward * half, deepest - inward * half


def cistern(
    name: str, scan: Scan, landmark: np.ndarray, inward: np.ndarray, csf: float, white: float
) -> Distance:
    """A cistern's width through ``landmark`` (world mm) along ``inward`` (a unit vector pointing
    into the brain): from the brain's edge outward across the CSF to the next structure. The
    suprasellar cistern: chiasm/hypothalamus down to the pituitary (``inward``: the vertical); the
    prepontine cistern: pons to clivus (``inward``: the clivus' normal, into the pons)."""
    profile = Profile.along(scan, landmark, inward, -MAX_GAP_MM - 6.0, 6.0)
    end = _tissue_end(profile, 0.0, +1.0, csf + TISSUE_SHARE * (white - csf))
    found = _gap(profile, end, +1.0, csf)
    if isinstance(found, str):
        return _not_measured(name, found)
    near, far = found
    return Distance(
        name, float(near - far), _point(profile.point(near)), _point(profile.point(far))
    )


def between_levels(
    name: str,
    scan: Scan,
    mamillary: np.ndarray,
    pons_top: np.ndarray,
    vertical: np.ndarray,
    csf: float,
) -> Distance:
    """A vertical distance between two structures' edges, each found on a vertical through its
    landmark: the mamillopontine distance, from the mamillary bodies' lower edge to the pons'
    upper edge."""
    contrast = MIN_SLOPE * _contrast(scan, mamillary, vertical, csf)
    if not contrast > 0:
        return _not_measured(name, "the mamillary bodies are not brighter than CSF")
    upper = Profile.along(scan, mamillary, vertical, -10.0, 10.0)
    # from above, the first steep fall into the fossa: the mamillary bodies' lower edge
    bottom = upper.first_edge(SEARCH_MM, -SEARCH_MM, rising=True, min_slope=contrast)
    lower = Profile.along(scan, pons_top, vertical, -10.0, 10.0)
    # from below, the first steep fall out of the pons: its upper edge
    top = lower.first_edge(-SEARCH_MM, SEARCH_MM, rising=False, min_slope=contrast)
    if bottom is None or top is None:
        which = "mamillary bodies" if bottom is None else "pons"
        return _not_measured(name, f"the edge of the {which} was not found near its landmark")
    start, pons = upper.point(bottom), lower.point(top)
    mm = float((start - pons) @ vertical)
    # the line drawn (picture, Slicer) is the one measured: straight down from the mamillary
    # bodies to the level of the pons' top, not the slanted line between the two points
    return Distance(name, mm, _point(start), _point(start - mm * vertical))


def _contrast(scan: Scan, inside: np.ndarray, vertical: np.ndarray, csf: float) -> float:
    """Tissue minus CSF around a brain landmark (the median within 4 mm above it)."""
    return Profile.along(scan, inside, vertical, 0.0, 4.0).level(0.0, 4.0) - csf


def template_directions(rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The patient's vertical and the clivus' normal (world unit vectors) from the alignment's
    rotation."""
    return rotation @ landmarks.VERTICAL, rotation @ landmarks.CLIVUS_NORMAL
