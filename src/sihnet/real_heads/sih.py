"""SIH added to real healthy heads with exact truth: the measuring stick of the reader and the
network on real anatomy (issue 34; the cohort: :func:`sihnet.real_heads.cohort.run_real_synth`).

A source head is a healthy T1 of any scanner, field of view and voxel size that the automatic
reader measures. Each patient is one source head with the signs the synthetic generator draws
(:mod:`sihnet.synth.patient`: the same severities, visible threshold and label model) added to the
head's own anatomy:

* **The dura, subdural collections and venous sinuses** are the generator's own layers
  (:func:`sihnet.synth.render.sih_layers`) painted along the head's own inner table: the head's
  brain (the template's brain carried by the reader's alignment, kept where the head is brighter
  than half its white matter), closed as the generator closes the template's brain, the inner
  table ``CSF_RIM_MM`` outside it. Over the convexity and the tentorium only, never at the
  central skull base where the cisterns are measured. A head without contrast gets the contrast
  look of these layers (a thin faint dura, bright sinuses) even when healthy; vessels, the
  choroid plexus and the pituitary are not enhanced.
* **Brain sag** (:mod:`sihnet.synth.sag_field`) on the ends of the three distances as the reader
  read them on the source head: the diencephalon lowered by the sag plus the midbrain's
  compression, the pons pushed towards the clivus by half the sag, each limited to
  ``MAX_SQUEEZE`` of the head's own cistern (the truth records what was applied).
* **The acquisition**: turned up to 10/5/5 degrees, resampled to the cohort's voxel size (the
  preprocessing's trilinear resampler), scaled, with Rician noise.

The truth: the signs as drawn, with pituitary engorgement (not added) at 0 and the sag as
applied, so the ceiling's ideal reader sees what is in the image; each distance as the reader read
it on the source head plus the field's exact change at its two ends. The distances thus judge
the reader on real anatomy under SIH, pose, resolution and noise with exact changes; whether the
source reading itself is right is judged on the heads (``benchmarks/real_heads.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from sihnet.bern import MAMILLOPONTINE, PREPONTINE, SUPRASELLAR
from sihnet.errors import SihnetError
from sihnet.preprocessing.cache import VolumeCache
from sihnet.preprocessing.volume import load_volume, resample_to_canvas, voxel_spacing
from sihnet.reader.distances import template_directions
from sihnet.reader.image import read_image
from sihnet.synth.anatomy import CLOSING_RADIUS_MM, CSF_RIM_MM
from sihnet.synth.geometry import rotation_matrix
from sihnet.synth.patient import Signs
from sihnet.synth.render import sih_layers
from sihnet.synth.sag_field import MAX_SQUEEZE, SagField, brain_sag, structure_ends
from sihnet.template import mni152_brain_2mm

ENDS = {  # the sag field's names of the three distances
    "suprasellar": SUPRASELLAR.name,
    "mamillopontine": MAMILLOPONTINE.name,
    "prepontine": PREPONTINE.name,
}
BRAIN_SHARE = 0.5  # of the white matter's level: brighter is brain (grey matter ~0.6-0.8)
PONS_SHARE = 0.5  # the pons is pushed towards the clivus by this share of the sag
SQUEEZE_MARGIN = 0.95  # of MAX_SQUEEZE: a sag is kept this far inside the one-to-one limit
LAYER_DEPTH_MM = 14.0  # the layers reach this far under the inner table (dura 3.5 + 7 + margin)
# The central skull base (template mm: |x|, y range, z below): the cisterns, sella and clivus,
# where no layer is painted.
SKULL_BASE = (32.0, (-50.0, 30.0), 0.0)
TURN_DEG = (10.0, 5.0, 5.0)
NOISE_SD = (0.0, 0.02)  # Rician sigma relative to white matter, added to the head's own


@dataclasses.dataclass(frozen=True)
class SourceHead:
    """A healthy head, read once, with what adding SIH to it needs.

    Attributes:
        name: the file's name without suffix.
        volume: (I, J, K) float32 intensities; ``affine`` its voxel -> world mm.
        white: the head's white-matter intensity (the reader's level).
        distances: the three Bern distances as read on the head, mm.
        ends: the two structures' points of each distance (world mm; ``ENDS``' names).
        vertical, clivus_normal: the head's upward direction and the clivus' normal (world).
        to_template: (4, 4) world mm -> template mm (the reader's similarity alignment).
        depth: (I, J, K) float32 mm under the inner table (negative outside it).
    """

    name: str
    volume: np.ndarray
    affine: np.ndarray
    white: float
    distances: dict[str, float]
    ends: dict[str, tuple[np.ndarray, np.ndarray]]
    vertical: np.ndarray
    clivus_normal: np.ndarray
    to_template: np.ndarray
    depth: np.ndarray


def source_head(path: Path, cache: VolumeCache) -> SourceHead:
    """Read a healthy head and find its inner table (module docstring).

    Raises:
        SihnetError: the reader could not read the head or one of its three distances.
    """
    name = Path(path).name.removesuffix(".gz").removesuffix(".nii")
    reading = read_image(Path(path), cache)
    if reading.problem:
        raise SihnetError(f"{name}: {reading.problem}")
    alignment = cache.alignment(Path(path))
    ends: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, item in ENDS.items():
        distance = reading.distances.get(item)
        if distance is None or distance.mm is None or distance.start is None:
            why = "not read" if distance is None else distance.reason
            raise SihnetError(f"{name}: the {item} could not be read ({why})")
        ends[key] = (np.asarray(distance.start), np.asarray(distance.end))
    rotation = np.asarray(reading.rotation)
    vertical, normal = template_directions(rotation)
    ends = structure_ends(ends, np.asarray(reading.landmarks["pons_superior"]), vertical)
    volume, affine = load_volume(Path(path))
    to_world = np.eye(4)
    to_world[:3, :3] = alignment.scale * alignment.rotation_matrix
    to_world[:3, 3] = alignment.translation
    to_template = np.linalg.inv(to_world)
    white = float(reading.white_matter_level or np.percentile(volume, 95))
    brain = _brain(volume, affine, to_template, white)
    return SourceHead(
        name,
        volume.astype(np.float32),
        affine,
        white,
        {item: float(reading.distances[item].mm or 0.0) for item in ENDS.values()},
        ends,
        vertical,
        normal,
        to_template,
        _depth(brain, voxel_spacing(affine)),
    )


def _brain(
    volume: np.ndarray, affine: np.ndarray, to_template: np.ndarray, white: float
) -> np.ndarray:
    """(I, J, K) bool: the head's brain - the template's brain carried into the head and dilated
    4 mm, kept where brighter than ``BRAIN_SHARE`` of white matter, its largest part, filled."""
    template, template_affine = mni152_brain_2mm()
    voxel_to_template = np.linalg.inv(template_affine) @ to_template @ affine
    prior = ndimage.affine_transform(
        np.asarray(template),
        voxel_to_template[:3, :3],
        voxel_to_template[:3, 3],
        output_shape=volume.shape,
        order=1,
    )
    spacing = voxel_spacing(affine)
    near = ndimage.distance_transform_edt(prior < 0.25, sampling=spacing) <= 4.0
    brain = near & (volume > BRAIN_SHARE * white)
    labels, count = ndimage.label(brain)
    if count > 1:
        sizes = ndimage.sum_labels(brain, labels, index=np.arange(1, count + 1))
        brain = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(brain)


def _depth(brain: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """(I, J, K) mm under the inner table: the brain closed over ``CLOSING_RADIUS_MM`` (as the
    generator closes the template's, :mod:`sihnet.synth.anatomy`), the table ``CSF_RIM_MM`` out.
    The brain is continued beyond the field of view (edge padding), whose border is no table;
    each voxel's distance is to the cavity's edge half a voxel away, smoothed over a voxel."""
    pad = [(int(n), int(n)) for n in np.ceil((CLOSING_RADIUS_MM + LAYER_DEPTH_MM) / spacing)]
    padded = np.pad(brain, pad, mode="edge")
    dilated = ndimage.distance_transform_edt(~padded, sampling=spacing) <= CLOSING_RADIUS_MM
    cavity = ndimage.binary_fill_holes(
        ndimage.distance_transform_edt(dilated, sampling=spacing) > CLOSING_RADIUS_MM
    )
    half = float(np.mean(spacing)) / 2  # a voxel's distance is to the next voxel's centre
    inside = ndimage.distance_transform_edt(cavity, sampling=spacing) - half
    outside = ndimage.distance_transform_edt(~cavity, sampling=spacing) - half
    depth = np.where(cavity, inside, -outside) + CSF_RIM_MM
    depth = ndimage.gaussian_filter(depth, sigma=1.0)  # as the template's (synth.anatomy)
    crop = tuple(slice(low, low + n) for (low, _), n in zip(pad, brain.shape, strict=True))
    return depth[crop].astype(np.float32)


def painted(head: SourceHead, signs: Signs) -> np.ndarray:
    """The head (I, J, K) with the dura, subdural collections and sinuses of ``signs`` painted
    along its inner table (module docstring), in the head's intensity units."""
    band = np.argwhere((head.depth > -2.0) & (head.depth < LAYER_DEPTH_MM))
    world = band @ head.affine[:3, :3].T + head.affine[:3, 3]
    points = world @ head.to_template[:3, :3].T + head.to_template[:3, 3]
    x, y, z = points.T
    reach, (front_low, front_high), top = SKULL_BASE
    vault = ~((np.abs(x) < reach) & (y > front_low) & (y < front_high) & (z < top))
    band, points = band[vault], points[vault]
    index = tuple(band.T)
    spacing = float(voxel_spacing(head.affine).min())
    relative = torch.from_numpy(head.volume[index] / head.white)
    layers = sih_layers(
        relative,
        torch.from_numpy(points),
        torch.from_numpy(head.depth[index].astype(np.float64)),
        signs,
        0.25 * spacing,
    )
    out = head.volume.copy()
    out[index] = layers.numpy().astype(np.float32) * head.white
    return out


def sag_of(head: SourceHead, signs: Signs) -> tuple[SagField | None, float, float]:
    """The sag field of ``signs`` on the head, and the diencephalon's and the pons' shifts it
    applies (mm; limited by the head's own cisterns, module docstring)."""
    gaps = [
        abs((s - e) @ head.vertical)
        for s, e in (head.ends["suprasellar"], head.ends["mamillopontine"])
    ]
    start, end = head.ends["prepontine"]
    pre_gap = abs((start - end) @ head.clivus_normal)
    limit = SQUEEZE_MARGIN * MAX_SQUEEZE
    diencephalon = min(signs.sag_mm + signs.midbrain_compression_mm, limit * min(gaps))
    pons = min(PONS_SHARE * signs.sag_mm, limit * pre_gap)
    if diencephalon <= 0.0 and pons <= 0.0:
        return None, 0.0, 0.0
    field = brain_sag(head.ends, head.vertical, head.clivus_normal, diencephalon, pons)
    return field, diencephalon, pons


def distances_after(head: SourceHead, field: SagField | None) -> dict[str, float]:
    """The three distances of the head once ``field`` moved it: as read on the source head plus
    the field's change at each distance's two ends, mm."""
    directions = {
        "suprasellar": head.vertical,
        "mamillopontine": head.vertical,
        "prepontine": head.clivus_normal,
    }
    out = {}
    for key, item in ENDS.items():
        change = 0.0 if field is None else field.change(*head.ends[key], directions[key])
        out[item] = round(max(0.0, head.distances[item] + change), 3)
    return out


def acquired(
    volume: np.ndarray, affine: np.ndarray, spacing_mm: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The head as a scanner stores it (int16 (I', J', K'), affine): turned by up to ``TURN_DEG``
    about its centre, on a grid of ``spacing_mm``, rescaled, with Rician noise."""
    a, b, c = (float(rng.uniform(-t, t)) for t in TURN_DEG)
    turn = rotation_matrix((a, b, c))
    steps = voxel_spacing(affine)
    shape = np.ceil(np.asarray(volume.shape) * steps / spacing_mm).astype(int)
    centre = affine[:3, :3] @ ((np.asarray(volume.shape) - 1) / 2) + affine[:3, 3]
    grid = np.eye(4)
    grid[:3, :3] = turn @ (affine[:3, :3] / steps) * spacing_mm
    grid[:3, 3] = centre - grid[:3, :3] @ ((shape - 1) / 2)
    i, j, k = (int(s) for s in shape)
    image = resample_to_canvas(volume, affine, grid, (i, j, k))
    bright = float(np.percentile(image, 99.5)) or 1.0
    sigma = float(rng.uniform(*NOISE_SD)) * bright
    noise = rng.standard_normal((2, *image.shape)).astype(np.float32) * sigma
    magnitude = np.hypot(image + noise[0], noise[1])
    scale = float(rng.uniform(400, 2500)) / bright
    data = np.clip(np.round(magnitude * scale), 0, 32767).astype(np.int16)
    return data, grid


def applied_signs(signs: Signs, diencephalon_mm: float) -> Signs:
    """The signs in the image: no pituitary engorgement, and the sag as applied (the
    diencephalon's shift split back into sag and midbrain compression in the drawn ratio)."""
    drawn = signs.sag_mm + signs.midbrain_compression_mm
    share = diencephalon_mm / drawn if drawn > 0 else 0.0
    return dataclasses.replace(
        signs,
        pituitary_mm=0.0,
        sag_mm=signs.sag_mm * share,
        midbrain_compression_mm=signs.midbrain_compression_mm * share,
    )
