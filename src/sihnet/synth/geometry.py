"""Where things are: head pose, smooth deformation, brain sag, and the skull-base shapes.

Frames: *world* (scanner, mm) -> *head* (``world = s R head + t``) -> *template* (MNI mm,
``template = head + u(head)`` with a smooth random field u). Brain sag moves brain tissue only,
downwards along template z, as a piecewise-linear map of z per (x, y) column: everything below the
pons descends by ``sag_mm``; between the upper pons and the mamillary bodies the midbrain is
compressed (or, for a patient's own normal anatomy, stretched) so that the diencephalon descends
``midbrain_compression_mm`` more; above, the displacement fades to zero 100 mm higher. The column
map is inverted in closed form, so rendering and measuring use the same exact geometry.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from sihnet.synth import anatomy as atlas
from sihnet.synth.patient import Patient

SAG_FADE_MM = 100.0
PITUITARY_HEIGHT_MM = 6.0


def rotation_matrix(degrees: tuple[float, float, float]) -> np.ndarray:
    """Rotation (3, 3) about x, then y, then z by the given degrees."""
    ax, ay, az = (math.radians(d) for d in degrees)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclasses.dataclass(frozen=True)
class SagMap:
    """Brain sag as a z-map per column: ``z_displaced = z - D(x, y, z)`` (D >= 0 is downwards)."""

    pons_descent: float
    diencephalon_descent: float

    @staticmethod
    def of(patient: Patient) -> SagMap:
        relative = (
            patient.baseline.mamillopontine_mm
            - atlas.TEMPLATE_MPD_MM
            - patient.signs.midbrain_compression_mm
        )
        relative = max(
            relative, 0.3 - atlas.TEMPLATE_MPD_MM
        )  # keeps the map monotonic, MPD >= 0.3 mm
        return SagMap(patient.signs.sag_mm, patient.signs.sag_mm - relative)

    @staticmethod
    def _band(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compression band [z_low, z_high] per column: the midbrain, widening away from it."""
        axis_y, _ = atlas.BRAINSTEM_AXIS_YZ
        radius = torch.sqrt(x**2 + (y - axis_y) ** 2)
        widen = 12.0 * torch.clamp((radius - 10.0) / 20.0, 0.0, 1.0)
        return float(atlas.PONS_SUPERIOR[2]) - widen, float(atlas.MAMILLARY_INFERIOR[2]) + widen

    def displacement(self, points: torch.Tensor) -> torch.Tensor:
        """D at template points (N, 3): downward displacement in mm, (N,)."""
        x, y, z = points.unbind(-1)
        low, high = self._band(x, y)
        d_low, d_high = self.pons_descent, self.diencephalon_descent
        inside = d_low + (d_high - d_low) * (z - low) / (high - low)
        above = d_high * torch.clamp(1 - (z - high) / SAG_FADE_MM, min=0.0)
        return torch.where(
            z <= low, torch.full_like(z, d_low), torch.where(z <= high, inside, above)
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Where template brain points (N, 3) end up after the sag."""
        out = points.clone()
        out[:, 2] = points[:, 2] - self.displacement(points)
        return out

    def inverse(self, points: torch.Tensor) -> torch.Tensor:
        """The template brain point that the sag moved to each of ``points`` (N, 3)."""
        x, y, z = points.unbind(-1)
        low, high = self._band(x, y)
        d_low, d_high = self.pons_descent, self.diencephalon_descent
        slope = (d_high - d_low) / (high - low)
        below = z + d_low
        inside = (z + d_low - slope * low) / (1 - slope)
        fading = (z + d_high * (1 + high / SAG_FADE_MM)) / (1 + d_high / SAG_FADE_MM)
        source = torch.where(
            z <= low - d_low,
            below,
            torch.where(
                z <= high - d_high, inside, torch.where(z <= high + SAG_FADE_MM, fading, z)
            ),
        )
        out = points.clone()
        out[:, 2] = source
        return out


class SmoothField:
    """Smooth random fields over the template box, sampled together: one coarse grid per channel.

    Args:
        seed: random seed.
        standard_deviations: (C,) standard deviation of each channel's values.
        smoothing_cells: (C,) Gaussian sigma of each channel, in grid cells.
        spacing_mm: spacing of the coarse grid.
    """

    def __init__(
        self,
        seed: int,
        standard_deviations: tuple[float, ...],
        smoothing_cells: tuple[float, ...],
        spacing_mm: float = 12.0,
    ) -> None:
        from scipy import ndimage

        rng = np.random.default_rng(seed)
        shape = tuple(
            int(v) for v in np.ceil((atlas.BOX_HIGH - atlas.BOX_LOW) / spacing_mm).astype(int) + 1
        )
        channels = []
        for deviation, sigma in zip(standard_deviations, smoothing_cells, strict=True):
            smooth = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="wrap")
            channels.append(smooth * deviation / max(float(smooth.std()), 1e-12))
        self.volume = torch.from_numpy(np.stack(channels).astype(np.float32))[None]
        self.grid = atlas.Grid(origin=atlas.BOX_LOW.copy(), spacing=spacing_mm, shape=shape)  # type: ignore[arg-type]

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Field values at points (N, 3): (N, C)."""
        return atlas.sample(self.volume, self.grid, points, padding="border")


@dataclasses.dataclass(frozen=True)
class HeadPose:
    """``world = scale * rotation @ head + translation``, and the head -> template deformation."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    fields: SmoothField  # channels 0-2: deformation u (mm); channel 3: log bias field

    @staticmethod
    def of(patient: Patient) -> HeadPose:
        acquisition = patient.acquisition
        deviations = (acquisition.deformation_mm,) * 3 + (acquisition.bias_sd,)
        return HeadPose(
            acquisition.head_scale,
            rotation_matrix(acquisition.rotation_deg),
            np.asarray(acquisition.translation_mm, dtype=np.float64),
            SmoothField(acquisition.seed, deviations, smoothing_cells=(2.0, 2.0, 2.0, 4.0)),
        )

    def world_to_head(self, world: torch.Tensor) -> torch.Tensor:
        rotation = torch.from_numpy(self.rotation.astype(np.float32))
        translation = torch.from_numpy(self.translation.astype(np.float32))
        return (world - translation) @ rotation / self.scale

    def template_to_head(self, template: torch.Tensor, iterations: int = 30) -> torch.Tensor:
        """Invert ``template = head + u(head)`` at points (N, 3) by fixed-point iteration."""
        head = template.clone()
        for _ in range(iterations):
            head = template - self.fields(head)[:, :3]
        return head


@dataclasses.dataclass(frozen=True)
class SkullBase:
    """Explicit midline shapes (template mm): pituitary ellipsoid and the clivus plane."""

    pituitary_centre: np.ndarray
    pituitary_radii: np.ndarray
    pituitary_top_baseline_z: float
    clivus_point: np.ndarray
    clivus_normal: np.ndarray  # unit, from clivus bone towards the pons (posterior, upwards)
    clivus_direction: np.ndarray  # unit, down the clivus towards the basion

    @staticmethod
    def of(patient: Patient) -> SkullBase:
        baseline_sag = SagMap.of(
            dataclasses.replace(
                patient,
                signs=dataclasses.replace(patient.signs, sag_mm=0.0, midbrain_compression_mm=0.0),
            )
        )
        chiasm = baseline_sag.forward(torch.tensor(atlas.CHIASM_FLOOR, dtype=torch.float64)[None])[
            0
        ].numpy()
        top_baseline = float(chiasm[2] - patient.baseline.suprasellar_mm)
        bottom = top_baseline - PITUITARY_HEIGHT_MM
        top = top_baseline + patient.signs.pituitary_mm
        centre = np.array([0.0, 3.0, (top + bottom) / 2])
        radii = np.array([6.0, 5.0 + 0.4 * patient.signs.pituitary_mm, (top - bottom) / 2])
        angle = math.radians(atlas.CLIVUS_ANGLE_DEG)
        normal = np.array([0.0, -math.cos(angle), math.sin(angle)])
        direction = np.array([0.0, -math.sin(angle), -math.cos(angle)])
        point = atlas.PONS_ANTERIOR - patient.baseline.prepontine_mm * normal
        return SkullBase(centre, radii, top_baseline, point, normal, direction)
