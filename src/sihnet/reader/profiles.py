"""Intensity profiles of a scan along lines in world mm, and the edges on them.

An edge is where a profile crosses the level half-way between the two tissues it separates
(the half-level crossing: unbiased for a symmetric blur of an edge between plateaus wider than
the blur), found by linear interpolation between samples 0.1 mm apart. By hand because the
measurement is a handful of 1D profiles; scipy samples them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

STEP_MM = 0.1


@dataclasses.dataclass(frozen=True)
class Scan:
    """A scan's intensities and where its voxels are.

    Attributes:
        volume: (I, J, K) float32 intensities.
        affine: voxel -> world (RAS mm).
    """

    volume: np.ndarray
    affine: np.ndarray

    @property
    def spacing_mm(self) -> np.ndarray:
        """(3,) voxel size along the array axes, mm."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def sample(self, world: np.ndarray) -> np.ndarray:
        """Trilinear intensities at world points (..., 3); NaN outside the volume."""
        points = np.asarray(world, dtype=np.float64)
        inverse = np.linalg.inv(self.affine)
        voxels = points @ inverse[:3, :3].T + inverse[:3, 3]
        flat = voxels.reshape(-1, 3).T
        values = ndimage.map_coordinates(self.volume, flat, order=1, mode="constant", cval=np.nan)
        return values.reshape(points.shape[:-1])

    def spacing_along(self, direction: np.ndarray) -> float:
        """The extent of a voxel along a world direction, mm (the blur a profile in it sees)."""
        unit = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
        return float(np.abs(unit @ self.affine[:3, :3]).sum())


@dataclasses.dataclass(frozen=True)
class Profile:
    """Intensities along ``origin + s * direction`` for s in ``positions`` (mm)."""

    origin: np.ndarray
    direction: np.ndarray
    positions: np.ndarray
    values: np.ndarray

    @staticmethod
    def along(
        scan: Scan, origin: np.ndarray, direction: np.ndarray, low: float, high: float
    ) -> Profile:
        """The profile from ``low`` to ``high`` mm along the unit ``direction`` through ``origin``."""
        unit = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
        positions = np.arange(low, high + STEP_MM / 2, STEP_MM)
        points = np.asarray(origin, dtype=np.float64) + positions[:, None] * unit
        return Profile(np.asarray(origin, dtype=np.float64), unit, positions, scan.sample(points))

    def point(self, position: float) -> np.ndarray:
        """World mm of a position along the profile."""
        return self.origin + position * self.direction

    def level(self, low: float, high: float, statistic: str = "median") -> float:
        """A statistic (median, max or min) of the values between two positions; NaN if none."""
        inside = (self.positions >= min(low, high)) & (self.positions <= max(low, high))
        values = self.values[inside]
        values = values[np.isfinite(values)]
        if values.size == 0:
            return float("nan")
        if statistic == "max":
            return float(values.max())
        if statistic == "min":
            return float(values.min())
        return float(np.median(values))

    def _slope(self, rising: bool) -> np.ndarray:
        """Per-mm slope of the profile smoothed over 0.5 mm, signed so that the wanted edge is
        positive."""
        smooth = ndimage.gaussian_filter1d(np.nan_to_num(self.values), 0.5 / STEP_MM)
        return np.gradient(smooth) / STEP_MM * (1.0 if rising else -1.0)

    def _refine(self, at: float, reach: float) -> float:
        """The half-level crossing nearest to ``at`` between the extremes within ``reach`` mm."""
        half = (
            self.level(at - reach, at + reach, "min") + self.level(at - reach, at + reach, "max")
        ) / 2
        ahead, behind = self.crossing(half, at, at + reach), self.crossing(half, at, at - reach)
        found = [c for c in (ahead, behind) if c is not None]
        return min(found, key=lambda c: abs(c - at)) if found else at

    def edge(self, start: float, stop: float, rising: bool, reach: float = 2.5) -> float | None:
        """The strongest edge between two positions whose intensity rises (``rising``) or falls
        with the position, refined to its half-level crossing; None if there is no slope that way."""
        inside = (self.positions >= min(start, stop)) & (self.positions <= max(start, stop))
        if inside.sum() < 3 or not np.isfinite(self.values[inside]).all():
            return None
        slope = np.where(inside, self._slope(rising), -np.inf)
        peak = int(np.argmax(slope))
        if not slope[peak] > 0:
            return None
        return self._refine(float(self.positions[peak]), reach)

    def first_edge(
        self, start: float, stop: float, rising: bool, min_slope: float, reach: float = 2.5
    ) -> float | None:
        """The first edge from ``start`` towards ``stop`` whose slope (per mm, the wanted way)
        exceeds ``min_slope``, at the top of that slope, refined to its half-level crossing."""
        order = 1 if stop >= start else -1
        inside = (self.positions >= min(start, stop)) & (self.positions <= max(start, stop))
        index = np.flatnonzero(inside)[::order]
        if index.size < 3 or not np.isfinite(self.values[index]).all():
            return None
        slope = self._slope(rising)[index]
        steep = np.flatnonzero(slope > min_slope)
        if steep.size == 0:
            return None
        k = int(steep[0])
        while k + 1 < index.size and slope[k + 1] >= slope[k]:
            k += 1
        return self._refine(float(self.positions[index[k]]), reach)

    def crossing(self, level: float, start: float, stop: float) -> float | None:
        """The first position from ``start`` towards ``stop`` where the profile crosses ``level``
        (either way), interpolated between samples; None if it does not within the range."""
        order = 1 if stop >= start else -1
        inside = (self.positions >= min(start, stop)) & (self.positions <= max(start, stop))
        index = np.flatnonzero(inside)[::order]
        if index.size < 2 or not np.isfinite(level):
            return None
        values = self.values[index] - level
        if not np.isfinite(values).all():
            return None
        sign = np.sign(values)
        changes = np.flatnonzero(sign[1:] != sign[:-1])
        if changes.size == 0:
            return None
        k = int(changes[0])
        a, b = values[k], values[k + 1]
        fraction = 0.0 if a == b else a / (a - b)
        s0, s1 = self.positions[index[k]], self.positions[index[k + 1]]
        return float(s0 + fraction * (s1 - s0))
