"""Template anatomy for the phantoms: the MNI152 (ICBM 2009a) T1 that nilearn ships in its wheel.

The template is skull-stripped. What a CE-T1 shows beyond the brain is built around it from one
field: the signed distance to the inner table of the skull (negative inside the cranial cavity),
computed from a morphological closing of the brain mask and a box over the basal cisterns. Skull,
scalp, dura and venous sinuses are bands of that distance; the sella, pituitary and clivus are
explicit shapes placed at the landmarks below (template mm, read off the template's midline).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
from scipy import ndimage

from sihnet import landmarks
from sihnet.template import mni152_t1

# Landmarks in template (MNI) mm, on the template's tissue edges (sihnet.landmarks).
MAMILLARY_INFERIOR = landmarks.MAMILLARY_BODY.point  # inferior aspect of the mamillary bodies
PONS_SUPERIOR = landmarks.PONS_SUPERIOR.point  # upper margin of the pons
PONS_ANTERIOR = landmarks.PONS_ANTERIOR.point  # most anterior point of the pons
CHIASM_FLOOR = landmarks.CHIASM_FLOOR.point  # lowest point of the chiasm/hypothalamus
BRAINSTEM_AXIS_YZ = (
    -12.0,
    -20.0,
)  # (y, z) of the axis around which brain sag compresses the midbrain
TEMPLATE_MPD_MM = float(MAMILLARY_INFERIOR[2] - PONS_SUPERIOR[2])  # 5.1 mm vertical in the template
CLIVUS_ANGLE_DEG = landmarks.CLIVUS_ANGLE_DEG

GRID_SPACING_MM = 1.0
DISTANCE_SPACING_MM = 2.0
# Padded template box (mm): room for skull and scalp, and the medulla continued below the template.
BOX_LOW = np.array([-100.0, -142.0, -112.0])
BOX_HIGH = np.array([100.0, 106.0, 116.0])
MEDULLA_EXTENSION_MM = 32
CLOSING_RADIUS_MM = 14.0
CSF_RIM_MM = 2.5
BASAL_CISTERN_BOX = (np.array([-16.0, -24.0, -60.0]), np.array([16.0, 10.0, -16.0]))


@dataclasses.dataclass(frozen=True)
class Grid:
    """An axis-aligned template-space grid: ``origin`` (mm) of voxel 0, isotropic ``spacing`` (mm)."""

    origin: np.ndarray
    spacing: float
    shape: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """Template-space fields the renderer samples.

    Attributes:
        brain: (1, 1, X, Y, Z) float32 tensor, CE-T1-like brain intensity (white matter ~1), 0 outside.
        brain_grid: its grid (1 mm).
        inner_distance: (1, 1, X, Y, Z) float32 tensor, signed distance to the skull's inner table
            in mm (negative inside the cranial cavity).
        distance_grid: its grid (2 mm).
    """

    brain: torch.Tensor
    brain_grid: Grid
    inner_distance: torch.Tensor
    distance_grid: Grid


def box_grid(spacing: float) -> Grid:
    """The padded template box sampled every ``spacing`` mm."""
    shape = tuple(int(v) for v in np.round((BOX_HIGH - BOX_LOW) / spacing).astype(int) + 1)
    return Grid(origin=BOX_LOW.copy(), spacing=spacing, shape=shape)  # type: ignore[arg-type]


def _template_brain(grid: Grid) -> np.ndarray:
    """MNI152 T1 on ``grid`` (1 mm), exact zeros outside the brain, medulla continued downwards."""
    stored, affine = mni152_t1()
    data = stored / 255.0
    data[data < 0.02] = 0.0  # the template's background holds 1e-45..1e-17 noise
    # The template's voxel 0 sits at (-98, -134, -72) mm with 1 mm steps along RAS.
    offset = np.round((affine[:3, 3] - grid.origin) / grid.spacing).astype(int)
    out = np.zeros(grid.shape, dtype=np.float32)
    sx, sy, sz = data.shape
    out[offset[0] : offset[0] + sx, offset[1] : offset[1] + sy, offset[2] : offset[2] + sz] = data
    # The template stops at z = -72 mm through the medulla: continue the bottom slice downwards,
    # tapering its cross-section, so the brainstem leaves through the foramen magnum.
    bottom = out[:, :, offset[2]].copy()
    for step in range(1, MEDULLA_EXTENSION_MM + 1):
        shrink = (
            ndimage.binary_erosion(bottom > 0, iterations=step // 8) if step >= 8 else bottom > 0
        )
        out[:, :, offset[2] - step] = np.where(shrink, bottom, 0.0)
    return out


def _inner_distance(brain: np.ndarray, brain_grid: Grid, grid: Grid) -> np.ndarray:
    """Signed distance (mm) to the inner table on the coarse ``grid``; negative inside."""
    factor = round(grid.spacing / brain_grid.spacing)
    coarse = (
        brain[::factor, ::factor, ::factor][: grid.shape[0], : grid.shape[1], : grid.shape[2]] > 0
    )
    radius = CLOSING_RADIUS_MM / grid.spacing
    dilated = ndimage.distance_transform_edt(~coarse) <= radius
    closed = ndimage.distance_transform_edt(dilated) > radius
    closed = ndimage.binary_fill_holes(closed)
    low, high = BASAL_CISTERN_BOX
    coords = [grid.origin[a] + grid.spacing * np.arange(grid.shape[a]) for a in range(3)]
    box = np.ones(grid.shape, dtype=bool)
    for axis in range(3):
        inside = (coords[axis] >= low[axis]) & (coords[axis] <= high[axis])
        box &= inside.reshape([-1 if a == axis else 1 for a in range(3)])
    cavity = closed | box
    signed = ndimage.distance_transform_edt(~cavity) - ndimage.distance_transform_edt(cavity)
    signed = signed * grid.spacing - CSF_RIM_MM
    return ndimage.gaussian_filter(signed, sigma=1.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    """Build (once per process, a few seconds) the template fields the renderer samples."""
    brain_grid, distance_grid = box_grid(GRID_SPACING_MM), box_grid(DISTANCE_SPACING_MM)
    template = _template_brain(brain_grid)
    distance = _inner_distance(template, brain_grid, distance_grid)
    # CE-T1 fast spin echo: grey/white contrast is lower than on the MPRAGE-like template
    # (template CSF ~0.1, grey ~0.6, white ~0.9 -> 0.1, 0.8, 1.0).
    brain = np.interp(template, [0.0, 0.15, 0.6, 0.9, 1.0], [0.0, 0.1, 0.8, 1.0, 1.05]).astype(
        np.float32
    )
    return Anatomy(
        brain=torch.from_numpy(brain)[None, None],
        brain_grid=brain_grid,
        inner_distance=torch.from_numpy(distance)[None, None],
        distance_grid=distance_grid,
    )


def sample(
    volume: torch.Tensor, grid: Grid, points: torch.Tensor, padding: str = "zeros"
) -> torch.Tensor:
    """Trilinear samples of ``volume`` (1, C, X, Y, Z) at template points (N, 3) mm.

    Returns:
        (N,) for one channel, else (N, C). Outside the grid: 0 (``padding="zeros"``) or the
        nearest edge value (``"border"``).
    """
    size = torch.tensor(grid.shape, dtype=points.dtype) - 1
    normalized = (
        points - torch.from_numpy(grid.origin).to(points.dtype)
    ) / grid.spacing / size * 2 - 1
    # grid_sample's last coordinate axis is ordered (W, H, D) = (z, y, x) for an (X, Y, Z) volume.
    query = normalized.flip(-1).reshape(1, 1, 1, -1, 3)
    values = torch.nn.functional.grid_sample(
        volume, query, mode="bilinear", padding_mode=padding, align_corners=True
    )
    out = values[0, :, 0, 0, :]
    return out[0] if out.shape[0] == 1 else out.T
