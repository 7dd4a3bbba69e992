"""Where the reader looks for the signs, defined once on the MNI152 template (docs/reader.md).

From nilearn's 1 mm MNI152 T1 (skull-stripped) at 2 mm: the brain's outer surface (a closing of
its mask, so that the surface runs over the sulci as the dura does) with outward normals, and on it

* the **convexity**: above the skull base, off the midline (the falx and superior sagittal sinus)
  and away from the torcula and transverse sinuses — where pachymeningeal enhancement is read;
* the **lateral convexity**: where a subdural collection would widen the space between the brain
  and the dura;
* the **superior sagittal sinus**: the midline of the surface over the vertex;
* the **skull base**: the floor of the anterior and middle cranial fossae and the clivus, under
  the brain near the midline (where a scan defaced or cropped through the skull base is masked);

and **deep white matter** (the centrum semiovale), the scan's intensity reference.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from sihnet.template import mni152_t1

SPACING_MM = 2.0
CLOSING_MM = 8.0
POINTS = 160  # surface points per region (an even subsample)


@dataclasses.dataclass(frozen=True)
class Surface:
    """Points on the template's brain surface (N, 3) mm and their outward unit normals (N, 3)."""

    points: np.ndarray
    normals: np.ndarray


@dataclasses.dataclass(frozen=True)
class Regions:
    """The template regions of the signs (module docstring)."""

    convexity: Surface
    lateral: Surface
    sagittal_sinus: Surface
    skull_base: Surface
    white_matter: np.ndarray  # (N, 3) mm


def _subsample(mask: np.ndarray, count: int) -> np.ndarray:
    """Indices of about ``count`` of a mask's voxels, evenly through its raster order."""
    index = np.flatnonzero(mask)
    if index.size <= count:
        return index
    return index[np.linspace(0, index.size - 1, count).round().astype(int)]


@functools.lru_cache(maxsize=1)
def template_regions() -> Regions:
    """The regions, built once per process from the template (about a second)."""
    from scipy import ndimage

    stored, stored_affine = mni152_t1()
    data = stored / float(np.percentile(stored[stored > 0], 99))
    step = int(SPACING_MM)
    coarse = data[::step, ::step, ::step]
    affine = stored_affine.copy()
    affine[:3, :3] *= step
    grid = np.indices(coarse.shape).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    x, y, z = (grid[:, a].reshape(coarse.shape) for a in range(3))
    radius = CLOSING_MM / SPACING_MM
    brain = coarse > 0.05
    closed = (
        ndimage.distance_transform_edt(ndimage.distance_transform_edt(~brain) <= radius) > radius
    )
    closed = ndimage.binary_fill_holes(closed)
    signed = ndimage.distance_transform_edt(~closed) - ndimage.distance_transform_edt(closed)
    gradient = np.stack(np.gradient(ndimage.gaussian_filter(signed, 1.0)), -1)
    normals = gradient / np.maximum(np.linalg.norm(gradient, axis=-1, keepdims=True), 1e-6)
    surface = closed & ~ndimage.binary_erosion(closed)

    def pick(mask: np.ndarray) -> Surface:
        chosen = _subsample(mask, POINTS)
        return Surface(grid[chosen], normals.reshape(-1, 3)[chosen])

    convexity = surface & (z > 10) & (np.abs(x) > 15) & ~((y < -60) & (z < 30))
    lateral = surface & (z > 10) & (z < 55) & (np.abs(x) > 45)
    sinus = surface & (np.abs(x) < SPACING_MM) & (z > 30) & (y > -70) & (y < 30)
    base = surface & (z < -10) & (np.abs(x) < 35) & (y > -40) & (normals[..., 2] < -0.5)
    white = ndimage.binary_erosion(coarse > 0.8, iterations=1) & (z > 10) & (z < 40)
    white &= (np.abs(x) > 15) & (np.abs(x) < 35)
    return Regions(
        pick(convexity), pick(lateral), pick(sinus), pick(base), grid[_subsample(white, 400)]
    )
