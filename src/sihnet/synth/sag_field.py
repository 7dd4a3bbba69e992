"""A known brain sag added to any head, real or synthetic, with its exact effect on each distance.

The measuring stick of the reader on real anatomy (issue 34): a displacement field in the scan's
world mm that lowers the diencephalon (chiasm, hypothalamus, mamillary bodies) towards the sella
and the pons, and may push the pons towards the clivus, while the skull base, the pituitary and the
clivus stay where they are, fading away from the midline. The field moves whole regions rigidly and
changes only inside thin layers of CSF (a cistern's middle), so a distance between two edges on
either side of a cistern changes by exactly the difference of the field at its two ends; the
image is resampled through the field's exact inverse.

Each region is bounded by a plane through the middle of a cistern (the :class:`Split`), with the
moving side fading in linearly over ``fade_mm`` either side of the plane: the cistern is squeezed
evenly, and the map stays one-to-one while the shift is under twice the fade (``MAX_SQUEEZE`` of
the cistern: a cistern cannot close further than its width). By hand because it
is a sum of a few analytic terms evaluated at points and inverted by fixed-point iteration; scipy
resamples the image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

LATERAL_SD_MM = 20.0  # how fast the sag fades away from the midline (Gaussian SD, mm)
FADE_SHARE = 0.4  # of the cistern's width either side of its middle, over which the field fades
MAX_SQUEEZE = 0.75  # the largest shift, as a share of the cistern's width (one-to-one below 0.8)
INVERSE_ITERATIONS = 8
FIXED_POINT_ITERATIONS = 600
CHUNK = 1 << 20  # voxels warped at a time
INVERSE_TOLERANCE_MM = 1e-6  # Newton stops once every point is this close


@dataclasses.dataclass(frozen=True)
class Split:
    """A plane between a region that moves and one that stays.

    Attributes:
        point: (3,) world mm on the plane (a cistern's middle).
        normal: (3,) unit vector pointing into the moving side.
        fade_mm: half-width of the layer over which the region's weight goes from 0 to 1.
        shift: (3,) world mm the moving side is displaced by.
    """

    point: np.ndarray
    normal: np.ndarray
    fade_mm: float
    shift: np.ndarray

    def weight(self, points: np.ndarray) -> np.ndarray:
        """(N,) 0 on the static side, 1 on the moving side, linear across the layer."""
        height = (points - self.point) @ self.normal / max(self.fade_mm, 1e-6)
        return np.clip((height + 1.0) / 2.0, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class SagField:
    """A sag of one head: the sum of its splits' shifts, fading away from the midline.

    Attributes:
        splits: the moving regions.
        midline: (3,) a world point on the mid-sagittal plane.
        left_right: (3,) unit vector across it.
    """

    splits: tuple[Split, ...]
    midline: np.ndarray
    left_right: np.ndarray

    def _with_jacobian(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The displacement (N, 3) and its Jacobian (N, 3, 3) at world points (N, 3)."""
        lateral = (points - self.midline) @ self.left_right
        fade = np.exp(-0.5 * (lateral / LATERAL_SD_MM) ** 2)
        fade_gradient = (-fade * lateral / LATERAL_SD_MM**2)[:, None] * self.left_right
        moved = np.zeros_like(points)
        jacobian = np.zeros((len(points), 3, 3))
        for split in self.splits:
            weight = split.weight(points)
            inside = (weight > 0.0) & (weight < 1.0)
            weight_gradient = np.outer(inside / (2 * max(split.fade_mm, 1e-6)), split.normal)
            moved += (weight * fade)[:, None] * split.shift
            gradient = fade[:, None] * weight_gradient + weight[:, None] * fade_gradient
            jacobian += split.shift[None, :, None] * gradient[:, None, :]
        return moved, jacobian

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """Where each world point (N, 3) mm moves by (N, 3) mm."""
        return self._with_jacobian(np.atleast_2d(np.asarray(points, dtype=np.float64)))[0]

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """The points (N, 3) that the field moves onto ``points``: x with x + D(x) = y (Newton's
        method; the few points whose Newton steps cycle across a layer's kink go on by the damped
        fixed point x -= (x + D(x) - y) / 2, a contraction while each shift is under twice its
        fade, where the map is one-to-one)."""
        target = np.atleast_2d(np.asarray(points, dtype=np.float64))
        source = target - self.displacement(target)
        active = np.arange(len(target))
        for iteration in range(INVERSE_ITERATIONS + FIXED_POINT_ITERATIONS):
            moved, jacobian = self._with_jacobian(source[active])
            residual = source[active] + moved - target[active]
            far = np.abs(residual).max(axis=1) >= INVERSE_TOLERANCE_MM
            if not far.any():
                break
            active, residual, jacobian = active[far], residual[far], jacobian[far]
            if iteration < INVERSE_ITERATIONS:
                source[active] -= np.linalg.solve(np.eye(3) + jacobian, residual[..., None])[..., 0]
            else:
                source[active] -= 0.5 * residual
        return source

    def warp(self, volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """The scan (I, J, K) with its anatomy moved by the field (cubic B-spline resampling)."""
        from scipy import ndimage

        source = np.asarray(volume, dtype=np.float32)
        coefficients = ndimage.spline_filter(source, order=3, mode="nearest")
        inverse_affine = np.linalg.inv(affine)
        out = source.copy().reshape(-1)
        for start in range(0, out.size, CHUNK):  # a million voxels at a time: bounded memory
            flat = np.arange(start, min(start + CHUNK, out.size))
            index = np.stack(np.unravel_index(flat, volume.shape), axis=1).astype(np.float64)
            world = index @ affine[:3, :3].T + affine[:3, 3]
            moved = np.linalg.norm(self.displacement(world), axis=1) > 1e-6
            if not moved.any():
                continue
            voxels = self.inverse(world[moved]) @ inverse_affine[:3, :3].T + inverse_affine[:3, 3]
            out[flat[moved]] = ndimage.map_coordinates(
                coefficients, voxels.T, order=3, mode="nearest", prefilter=False
            )
        return out.reshape(volume.shape)

    def change(self, start: np.ndarray, end: np.ndarray, direction: np.ndarray) -> float:
        """How much a distance measured from ``start`` to ``end`` along the unit ``direction``
        (start - end) changes, mm: the field's difference at its two ends."""
        moved = self.displacement(np.stack([start, end]))
        return float((moved[0] - moved[1]) @ direction)


def structure_ends(
    lines: dict[str, tuple[np.ndarray, np.ndarray]], pons_superior: np.ndarray, vertical: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The points on the two structures of each distance, from the lines the reader drew
    (``suprasellar``, ``mamillopontine``, ``prepontine``: start, end in world mm). The
    mamillopontine line runs straight down from the mamillary bodies to the pons' level; the
    structure at its lower end is the pons' top on the vertical through ``pons_superior``."""
    up = np.asarray(vertical, dtype=np.float64) / np.linalg.norm(vertical)
    start, end = (np.asarray(p, dtype=np.float64) for p in lines["mamillopontine"])
    landmark = np.asarray(pons_superior, dtype=np.float64)
    pons = landmark + ((end - landmark) @ up) * up
    return {**lines, "mamillopontine": (start, pons)}


def _middle(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    return (np.asarray(start, dtype=np.float64) + np.asarray(end, dtype=np.float64)) / 2


def brain_sag(
    ends: dict[str, tuple[np.ndarray, np.ndarray]],
    vertical: np.ndarray,
    clivus_normal: np.ndarray,
    sag_mm: float,
    brainstem_mm: float = 0.0,
) -> SagField:
    """The sag of a head whose three Bern distances were read at ``ends``.

    Args:
        ends: the start and end (world mm) of ``suprasellar``, ``mamillopontine`` and
            ``prepontine``: chiasm -> pituitary, mamillary bodies -> pons, pons -> clivus.
        vertical: the patient's upward unit vector; ``clivus_normal`` the clivus' normal pointing
            into the pons (both world).
        sag_mm: how far the diencephalon and the brain above it are lowered.
        brainstem_mm: how far the pons is pushed towards the clivus.

    The diencephalon's region is bounded by the plane through the middles of the suprasellar and
    mamillopontine gaps (tilted to hold both), the pons' by the plane through the middle of the
    prepontine gap; each fades over ``FADE_SHARE`` of its narrowest gap.

    Raises:
        ValueError: a shift over ``MAX_SQUEEZE`` of the gap it closes (the map would fold).
    """
    up = np.asarray(vertical, dtype=np.float64) / np.linalg.norm(vertical)
    into_pons = np.asarray(clivus_normal, dtype=np.float64) / np.linalg.norm(clivus_normal)
    supra, mp, pre = ends["suprasellar"], ends["mamillopontine"], ends["prepontine"]
    a, b = _middle(*supra), _middle(*mp)
    along = (a - b) - ((a - b) @ up) * up  # the line between the two middles, levelled
    across = b - a
    normal = up - (up @ across) / max(across @ across, 1e-9) * across
    normal /= np.linalg.norm(normal)
    gaps = [abs((s - e) @ up) for s, e in (supra, mp)]
    pre_gap = abs((pre[0] - pre[1]) @ into_pons)
    for shift, gap in ((sag_mm, min(gaps)), (brainstem_mm, pre_gap)):
        if shift > MAX_SQUEEZE * gap:
            raise ValueError(f"a shift of {shift:.1f} mm would close a {gap:.1f} mm cistern")
    splits = [
        Split(
            _middle(a, b),
            normal,
            FADE_SHARE * max(min(gaps), 0.5),
            -sag_mm * up,
        )
    ]
    if brainstem_mm:
        splits.append(
            Split(
                _middle(*pre),
                into_pons,
                FADE_SHARE * max(pre_gap, 0.5),
                -brainstem_mm * into_pons,
            )
        )
    left_right = np.cross(up, along if np.linalg.norm(along) > 1e-6 else into_pons)
    left_right /= np.linalg.norm(left_right)
    return SagField(tuple(splits), _middle(a, b), left_right)
