"""Where things are: head pose and shape, smooth deformation, brain sag, and the skull-base shapes.

Frames: *world* (scanner, mm) -> *head* (``world = R (s * head) + t``, ``s`` the head's size along
its three axes) -> *template* (MNI mm, ``template = head + u(head)`` with a smooth random field u).
Brain sag moves brain tissue only, downwards along template z, as a piecewise-linear map of z per
(x, y) column: everything below the pons descends by ``pons_descent``; between the upper pons and
the mamillary bodies the midbrain is compressed (or, for a patient's own normal anatomy,
stretched) so that the diencephalon descends more; above, the displacement fades to zero 100 mm
higher. The column map is inverted in closed form, so rendering and measuring use the same exact
geometry.

The functions here broadcast: a value is one patient's float, or a (B, 1) column of B patients
for the cohort's Monte Carlo (:mod:`sihnet.synth.ceiling`), against points (P, 3) or (N, 3).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sihnet import landmarks
from sihnet.synth import anatomy as atlas
from sihnet.synth.field import SplineField
from sihnet.synth.patient import Patient

Values = float | np.ndarray  # one patient's float, or (B, 1) for a batch of patients
SAG_FADE_MM = 100.0
DEFORMATION_KNOTS_MM = 40.0  # knot spacing of the smooth deformation
BIAS_KNOTS_MM = 64.0


def rotation_matrix(degrees: tuple[float, float, float]) -> np.ndarray:
    """Rotation (3, 3) about x, then y, then z by the given degrees."""
    ax, ay, az = (math.radians(d) for d in degrees)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclasses.dataclass(frozen=True)
class SagMap:
    """Brain position as a z-map per column: ``z_displaced = z - D(x, y, z)`` (D > 0: downwards)."""

    pons_descent: Values
    diencephalon_descent: Values

    @staticmethod
    def of(
        sag_mm: Values,
        midbrain_compression_mm: Values,
        mamillopontine_distance_mm: Values,
        brainstem_offset_mm: Values,
    ) -> SagMap:
        """The map of a patient's sag and compression on its own anatomy (baseline
        mamillopontine distance and brainstem height)."""
        relative = mamillopontine_distance_mm - atlas.TEMPLATE_MPD_MM - midbrain_compression_mm
        relative = np.maximum(relative, 0.3 - atlas.TEMPLATE_MPD_MM)  # keeps MPD >= 0.3 mm
        pons = sag_mm + brainstem_offset_mm
        return SagMap(pons, pons - relative)

    @staticmethod
    def of_patient(patient: Patient, with_signs: bool = True) -> SagMap:
        """One patient's map; ``with_signs=False``: its normal anatomy without the SIH sag."""
        signs, baseline = patient.signs, patient.baseline
        return SagMap.of(
            signs.sag_mm if with_signs else 0.0,
            signs.midbrain_compression_mm if with_signs else 0.0,
            baseline.mamillopontine_distance_mm,
            baseline.brainstem_offset_mm,
        )

    @staticmethod
    def _band(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Compression band [z_low, z_high] per column: the midbrain, widening away from it."""
        axis_y, _ = atlas.BRAINSTEM_AXIS_YZ
        radius = np.sqrt(x**2 + (y - axis_y) ** 2)
        widen = 12.0 * np.clip((radius - 10.0) / 20.0, 0.0, 1.0)
        return float(atlas.PONS_SUPERIOR[2]) - widen, float(atlas.MAMILLARY_INFERIOR[2]) + widen

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """D at template points (..., 3): downward displacement in mm."""
        x, y, z = np.moveaxis(np.asarray(points, dtype=np.float64), -1, 0)
        low, high = self._band(x, y)
        d_low, d_high = np.asarray(self.pons_descent), np.asarray(self.diencephalon_descent)
        inside = d_low + (d_high - d_low) * (z - low) / (high - low)
        above = d_high * np.maximum(1 - (z - high) / SAG_FADE_MM, 0.0)
        return np.where(z <= low, d_low, np.where(z <= high, inside, above))

    def forward(self, points: np.ndarray) -> np.ndarray:
        """Where template brain points (..., 3) end up."""
        points = np.asarray(points, dtype=np.float64)
        moved = points[..., 2] - self.displacement(points)
        return np.concatenate(
            [np.broadcast_to(points[..., :2], (*moved.shape, 2)), moved[..., None]], -1
        )

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """The template brain point that the map moved to each of ``points`` (..., 3)."""
        points = np.asarray(points, dtype=np.float64)
        x, y, z = np.moveaxis(points, -1, 0)
        low, high = self._band(x, y)
        d_low, d_high = np.asarray(self.pons_descent), np.asarray(self.diencephalon_descent)
        slope = (d_high - d_low) / (high - low)
        below = z + d_low
        inside = (z + d_low - slope * low) / (1 - slope)
        fading = (z + d_high * (1 + high / SAG_FADE_MM)) / (1 + d_high / SAG_FADE_MM)
        source = np.where(
            z <= low - d_low,
            below,
            np.where(z <= high - d_high, inside, np.where(z <= high + SAG_FADE_MM, fading, z)),
        )
        return np.concatenate(
            [np.broadcast_to(points[..., :2], (*source.shape, 2)), source[..., None]], -1
        )


def deformation_of(patient: Patient) -> SplineField:
    """The patient's head -> template deformation u (3 channels, mm), over the whole template box."""
    baseline = patient.baseline
    rng = np.random.default_rng(baseline.deformation_seed)
    return SplineField.draw(rng, np.full((1, 3), baseline.deformation_mm), DEFORMATION_KNOTS_MM)


def bias_of(patient: Patient) -> SplineField:
    """The patient's log bias field (1 channel) over the whole template box."""
    rng = np.random.default_rng(patient.acquisition.seed + 1)
    return SplineField.draw(rng, np.full((1, 1), patient.acquisition.bias_sd), BIAS_KNOTS_MM)


def template_to_head(
    deformation: SplineField, template: np.ndarray, tolerance_mm: float = 1e-4
) -> np.ndarray:
    """Invert ``template = head + u(head)`` at points (B, P, 3) by fixed-point iteration, each
    patient until its points move less than ``tolerance_mm`` (u's gradient stays below 1, so the
    error shrinks several-fold per step)."""
    head = np.array(template, dtype=np.float64)
    active = np.arange(head.shape[0])
    for _ in range(100):
        field = deformation.subset(active)
        updated = template[active] - field.values(head[active])
        moved = np.abs(updated - head[active]).max(axis=(1, 2))
        head[active] = updated
        active = active[moved >= tolerance_mm]
        if active.size == 0:
            break
    return head


@dataclasses.dataclass(frozen=True)
class HeadPose:
    """``world = rotation @ (scale * head) + translation``."""

    scale: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    @staticmethod
    def of(patient: Patient) -> HeadPose:
        acquisition = patient.acquisition
        return HeadPose(
            np.asarray(patient.baseline.head_scale, dtype=np.float64),
            rotation_matrix(acquisition.rotation_deg),
            np.asarray(acquisition.translation_mm, dtype=np.float64),
        )

    def world_to_head(self, world: np.ndarray) -> np.ndarray:
        """Head-frame points (N, 3) of world points (N, 3), mm."""
        return (world - self.translation) @ self.rotation / self.scale

    def head_to_world(self, head: np.ndarray) -> np.ndarray:
        """World points (N, 3) of head-frame points (N, 3), mm."""
        return (head * self.scale) @ self.rotation.T + self.translation


def _flat(values: Values) -> np.ndarray:
    """A value per patient: () for one patient's float, (B,) for a batch's (B, 1) column."""
    array = np.asarray(values, dtype=np.float64)
    return array[..., 0] if array.ndim else array


@dataclasses.dataclass(frozen=True)
class SkullBase:
    """Explicit midline shapes (template mm): pituitary ellipsoid and the clivus plane.

    Arrays are (3,) for one patient, (B, 3) for a batch.
    """

    pituitary_centre: np.ndarray
    pituitary_radii: np.ndarray
    clivus_point: np.ndarray
    clivus_normal: np.ndarray  # unit, from clivus bone towards the pons (posterior, upwards)
    clivus_direction: np.ndarray  # unit, down the clivus towards the basion

    @staticmethod
    def of(
        normal_anatomy: SagMap,
        suprasellar_cistern_mm: Values,
        prepontine_cistern_mm: Values,
        pituitary_height_mm: Values,
        pituitary_mm: Values,
    ) -> SkullBase:
        """Place the sella and clivus so that the patient's normal anatomy (``normal_anatomy``:
        its brain position without SIH signs) has its baseline cisterns."""
        moved = normal_anatomy.forward(np.stack([atlas.CHIASM_FLOOR, atlas.PONS_ANTERIOR]))
        chiasm, pons_front = moved[..., 0, :], moved[..., 1, :]
        top_baseline = chiasm[..., 2] - _flat(suprasellar_cistern_mm)
        bottom = top_baseline - _flat(pituitary_height_mm)
        engorgement = _flat(pituitary_mm) + np.zeros_like(top_baseline)
        top = top_baseline + engorgement
        zeros = np.zeros_like(top)
        centre = np.stack([zeros, zeros + 3.0, (top + bottom) / 2], -1)
        radii = np.stack([zeros + 6.0, 5.0 + 0.4 * engorgement, (top - bottom) / 2], -1)
        normal, direction = landmarks.CLIVUS_NORMAL, landmarks.CLIVUS_DIRECTION
        point = pons_front - _flat(prepontine_cistern_mm)[..., None] * normal
        return SkullBase(centre, radii, point, normal, direction)

    @staticmethod
    def of_patient(patient: Patient) -> SkullBase:
        baseline = patient.baseline
        return SkullBase.of(
            SagMap.of_patient(patient, with_signs=False),
            baseline.suprasellar_cistern_mm,
            baseline.prepontine_cistern_mm,
            baseline.pituitary_height_mm,
            patient.signs.pituitary_mm,
        )
