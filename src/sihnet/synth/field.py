"""Smooth random fields of the phantoms: a cubic B-spline with independent normal coefficients.

Written by hand because the same field is needed two ways that no library offers together:
tabulated on a grid for rendering one patient, and evaluated exactly at a few landmarks of
100,000 patients in one vectorised call for the cohort's Monte Carlo ceiling. Knots lie on one
lattice (multiples of the spacing from the template box's corner), so a field drawn over a small
window has exactly the distribution of the whole field inside that window.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sihnet.synth import anatomy as atlas


def bspline_weights(fraction: np.ndarray) -> np.ndarray:
    """Cubic uniform B-spline weights of the four knots around each position.

    Args:
        fraction: (...) position within its knot cell, 0..1.

    Returns:
        (..., 4) weights of knots ``i-1, i, i+1, i+2``; they sum to 1.
    """
    f = np.asarray(fraction, dtype=np.float64)
    return np.stack(
        [
            (1 - f) ** 3 / 6,
            (3 * f**3 - 6 * f**2 + 4) / 6,
            (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6,
            f**3 / 6,
        ],
        axis=-1,
    )


def _mean_squared_weight() -> float:
    """Mean over a cell of the sum of squared weights, per axis: a field value's variance is the
    coefficients' variance times this cubed."""
    fractions = (np.arange(4096) + 0.5) / 4096
    return float((bspline_weights(fractions) ** 2).sum(-1).mean())


# A coefficient standard deviation of 1 gives a field standard deviation of VALUE_SD on average.
VALUE_SD = _mean_squared_weight() ** 1.5


@dataclasses.dataclass(frozen=True)
class SplineField:
    """Fields of a batch of patients over a window of the knot lattice.

    Attributes:
        coefficients: (B, C, NX, NY, NZ) knot values of B patients' C-channel fields.
        first_knot: (3,) integer lattice index of ``coefficients[..., 0, 0, 0]``.
        spacing: knot spacing, mm.
    """

    coefficients: np.ndarray
    first_knot: np.ndarray
    spacing: float

    @staticmethod
    def draw(
        rng: np.random.Generator,
        standard_deviations: np.ndarray,
        spacing: float,
        low: np.ndarray = atlas.BOX_LOW,
        high: np.ndarray = atlas.BOX_HIGH,
    ) -> SplineField:
        """Draw fields whose values inside the box ``[low, high]`` (template mm) are defined.

        Args:
            rng: source of the coefficients.
            standard_deviations: (B, C) average standard deviation of each patient's channels.
            spacing: knot spacing in mm (the field's smoothness: about half of it is its
                correlation length).
            low, high: (3,) corners of the region where the field will be evaluated.
        """
        deviations = np.asarray(standard_deviations, dtype=np.float64)
        first = np.floor((np.asarray(low) - atlas.BOX_LOW) / spacing).astype(int) - 1
        last = np.floor((np.asarray(high) - atlas.BOX_LOW) / spacing).astype(int) + 2
        shape = (*deviations.shape, *(last - first + 1))
        values = rng.standard_normal(shape) * (deviations / VALUE_SD)[..., None, None, None]
        return SplineField(values, first, float(spacing))

    def values(self, points: np.ndarray) -> np.ndarray:
        """Field values at template points.

        Args:
            points: (B, P, 3) template mm, one row of points per patient of the batch.

        Returns:
            (B, P, C). Points beyond the drawn window take the value at its edge.
        """
        position = (np.asarray(points, dtype=np.float64) - atlas.BOX_LOW) / self.spacing
        position = position - self.first_knot
        x, y, z = (self._axis_weights(position[..., a], a) for a in range(3))  # (B, P, N_axis)
        return np.einsum("bpi,bpj,bpk,bcijk->bpc", x, y, z, self.coefficients, optimize=True)

    def subset(self, patients: np.ndarray) -> SplineField:
        """The fields of some of the batch's patients (indices (K,))."""
        return SplineField(self.coefficients[patients], self.first_knot, self.spacing)

    def _axis_weights(self, position: np.ndarray, axis: int) -> np.ndarray:
        """Dense B-spline weights of every knot along ``axis`` at knot-unit positions (...):
        (..., N_axis), four of them non-zero."""
        size = self.coefficients.shape[2 + axis]
        cell = np.clip(np.floor(position).astype(int), 1, size - 3)
        weights = bspline_weights(np.clip(position - cell, 0.0, 1.0))
        dense = np.zeros((*position.shape, size))
        np.put_along_axis(dense, cell[..., None] + np.arange(4) - 1, weights, axis=-1)
        return dense

    def tabulate(self, grid: atlas.Grid) -> np.ndarray:
        """The first patient's field on an axis-aligned grid (separable, exact at the nodes).

        Returns:
            (C, X, Y, Z) float32.
        """
        matrices = [
            self._axis_weights(
                (grid.origin[a] + grid.spacing * np.arange(grid.shape[a]) - atlas.BOX_LOW[a])
                / self.spacing
                - self.first_knot[a],
                a,
            )
            for a in range(3)
        ]
        table = np.einsum("cijk,xi->cxjk", self.coefficients[0], matrices[0])
        table = np.einsum("cxjk,yj->cxyk", table, matrices[1])
        table = np.einsum("cxyk,zk->cxyz", table, matrices[2])
        return table.astype(np.float32)
