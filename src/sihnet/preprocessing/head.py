"""Where the head is in a scan, from the head itself: starts for the MNI152 registration that do not
depend on the field of view.

A clinical CE-T1 may include the neck (its centre of mass is then in the neck), stop above the
vertex or below the skull base, or lie obliquely in a large field of view. The registration's
usual start, the two images' centres of mass, is then 40-80 mm from the brain and the optimiser
ends in the neck or the face (a 2 mm head-and-neck scan aligned to a correlation of 0.41). The
top of the head is where it is whatever the field of view holds below it: the brain's top lies
about ``SCALP_MM`` under it, and the head's centre just below the top is the brain's centre there.
By hand because it is a threshold, a largest component and a centroid (scipy does each).
"""

from __future__ import annotations

import numpy as np

SCALP_MM = 11.0  # vertex of the head -> top of the brain: scalp, skull and CSF (adults 8-14 mm)
SLAB_MM = (10.0, 60.0)  # below the top: where the head's centroid is the brain's
HEAD_LEVEL = 0.12  # of the scan's (clipped, scaled) head intensity: above it is head, not air
NO_VERTEX_SHIFTS_MM = (20.0, 40.0)  # the brain's top lies higher when the scan stops under it


def _world(indices: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return indices @ affine[:3, :3].T + affine[:3, 3]


def _top_and_centre(mask: np.ndarray, affine: np.ndarray) -> tuple[float, np.ndarray, bool]:
    """The mask's top (world z, mm), the (x, y) centroid of the slab under it, and whether the
    top touches the edge of the array (the field of view stops there)."""
    index = np.argwhere(mask)
    points = _world(index.astype(np.float64), affine)
    top = float(points[:, 2].max())
    at_top = points[:, 2] >= top - 2.0
    touches = bool(
        (index[at_top] == 0).any() or (index[at_top] == np.asarray(mask.shape) - 1).any()
    )
    slab = (points[:, 2] <= top - SLAB_MM[0]) & (points[:, 2] >= top - SLAB_MM[1])
    centre = points[slab, :2].mean(axis=0) if slab.any() else points[:, :2].mean(axis=0)
    return top, centre, touches


def head_mask(scaled: np.ndarray) -> np.ndarray:
    """The head in a scan (I, J, K) scaled to its head intensity (1 = the 80th percentile): the
    largest connected region above ``HEAD_LEVEL``, holes filled (an empty mask if none)."""
    from scipy import ndimage

    above = ndimage.binary_opening(scaled > HEAD_LEVEL, iterations=1)
    labels, count = ndimage.label(above)
    if count == 0:
        return above
    sizes = ndimage.sum_labels(above, labels, index=np.arange(1, count + 1))
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def head_starts(
    scaled: np.ndarray,
    affine: np.ndarray,
    template_brain: np.ndarray,
    template_affine: np.ndarray,
) -> list[np.ndarray]:
    """Template -> scan shifts (RAS mm, (3,)) that put the template's brain under the scan's head
    top (module docstring); more than one when the scan stops at its top.

    Args:
        scaled: (I, J, K) the scan scaled to its head intensity (:func:`head_mask`).
        affine: its voxel -> world (RAS mm).
        template_brain: (X, Y, Z) the template's brain mask; ``template_affine`` its affine.

    Returns:
        the shifts, best guess first; none when no head is found.
    """
    mask = head_mask(scaled)
    if mask.sum() < 100:
        return []
    top, centre, touches = _top_and_centre(mask, affine)
    brain_top, brain_centre, _ = _top_and_centre(template_brain, template_affine)
    shift = np.array([*(centre - brain_centre), top - SCALP_MM - brain_top])
    if not touches:
        return [shift]
    return [shift, *(shift + np.array([0.0, 0.0, dz]) for dz in NO_VERTEX_SHIFTS_MM)]
