"""Render one synthetic CE-T1 study: intensities at the template points an acquisition samples.

Every output voxel centre is carried world -> head -> template, and its intensity is composed
there, painter-style with soft (partial-volume) edges: brain (through the inverse sag) and CSF
inside the cranial cavity, subdural collections, dura, skull and scalp as bands of the distance to
the inner table, the venous sinuses, then the skull base (clivus, sella, sphenoid) and pituitary.
Scanner effects follow: contrast exponent, bias field, Rician noise, intensity scale, int16.

Relative intensities (white matter = 1, fat-saturated CE-T1): CSF 0.1, grey matter 0.8, normal
dura 0.55 (faint) to 1.3 (thick, bright), venous sinuses 1.3, pituitary 1.2, marrow 0.35.
"""

from __future__ import annotations

import numpy as np
import torch
from nibabel import orientations

from sihnet.synth import anatomy as atlas
from sihnet.synth.geometry import (
    HeadPose,
    SagMap,
    SkullBase,
    bias_of,
    deformation_of,
    rotation_matrix,
    template_to_head,
)
from sihnet.synth.patient import Patient, Signs

FIELD_OF_VIEW_MM = np.array(
    [180.0, 236.0, 220.0]
)  # left-right, posterior-anterior, inferior-superior
FIELD_CENTRE_MM = np.array([0.0, -16.0, 4.0])
CSF = 0.1
SUBDURAL_FLUID = 0.3
SINUS = 1.3
PITUITARY = 1.2
MARROW = 0.35
CORTICAL_BONE = 0.05
# Layers outside the inner table: (outer edge in mm, intensity); air beyond the last.
SCALP_LAYERS = ((1.5, CORTICAL_BONE), (5.0, 0.28), (6.5, CORTICAL_BONE), (12.0, 0.4))
CHUNK = 1 << 21


def _step(x: torch.Tensor, soft: float) -> torch.Tensor:
    """Smooth 0 -> 1 across x = 0 over about ``soft`` mm (a partial-volume edge)."""
    return torch.sigmoid(x / soft)


def _band(
    x: torch.Tensor, low: float | torch.Tensor, high: float | torch.Tensor, soft: float
) -> torch.Tensor:
    return _step(x - low, soft) - _step(x - high, soft)


def _paint(image: torch.Tensor, mask: torch.Tensor, value: float | torch.Tensor) -> torch.Tensor:
    return image + mask * (value - image)


def _superellipse(
    across: torch.Tensor,
    depth: torch.Tensor,
    width: float,
    height: float,
    power: float,
    soft: float,
) -> torch.Tensor:
    """Soft membership of a sinus cross-section: |across/width|^p + (depth/height)^p <= 1.

    ``power`` < 1 gives concave margins (a normal, triangular sinus), > 1 convex ones (distension).
    """
    radius = ((across.abs() / width) ** power + (depth.clamp(min=0) / height) ** power) ** (
        1 / power
    )
    return _step((1 - radius) * min(width, height), soft) * _step(depth, soft)


def _sinuses(
    points: torch.Tensor, depth: torch.Tensor, severity: float, soft: float
) -> torch.Tensor:
    """Superior sagittal and transverse sinuses; engorgement enlarges them and makes them convex."""
    x, y, z = points.unbind(-1)
    power = 0.8 + 1.7 * severity
    width, height = 4.0 * (1 + 0.5 * severity), 5.0 * (1 + 0.8 * severity)
    superior = _superellipse(x, depth, width, height, power, soft) * _step(z + 5.0, 3.0)
    lateral = x.abs()
    level = -5.0 - 8.0 * (lateral / 60.0) ** 2
    transverse = _superellipse(z - level, depth, width * 1.2, height, power, soft)
    transverse = transverse * _step(-(y + 55.0), 4.0) * _step(62.0 - lateral, 4.0)
    return torch.maximum(superior, transverse)


def _skull_base(
    image: torch.Tensor, points: torch.Tensor, skull: SkullBase, venous: float, soft: float
) -> torch.Tensor:
    """The midline skull base painted over ``image`` (N,) at ``points``: a block of bone anterior to
    the clivus surface and below the sella (marrow, cortical rim, the sphenoid sinus as air), the
    clival dura (basilar venous plexus, fuller with venous engorgement), the sella's floor and the
    pituitary. Each layer is painted with its own partial-volume edge (painting a mix of the layers
    again by their joint coverage would count an edge twice and shift it inwards).
    """
    p = points.double()
    x, y, z = p.unbind(-1)
    normal, direction = (
        torch.from_numpy(skull.clivus_normal),
        torch.from_numpy(skull.clivus_direction),
    )
    offset = p - torch.from_numpy(skull.clivus_point)
    across, along = offset @ normal, offset @ direction  # across > 0: towards the pons
    centre, radii = (
        torch.from_numpy(skull.pituitary_centre),
        torch.from_numpy(skull.pituitary_radii),
    )
    sella_floor = float(centre[2])
    dorsum_top = float(
        direction @ torch.from_numpy(skull.pituitary_centre - skull.clivus_point)
    ) - float(radii[2])
    # The basilar venous plexus (clival dura) thickens into the bone with venous engorgement.
    dural = 1.2 + 0.8 * venous
    lateral = _step(14.0 - x.abs(), soft)
    clivus = _band(along, dorsum_top, 45.0, soft) * _band(across, -12.0, -1.2, soft) * lateral
    block = (
        _step(-across - 1.2, soft)
        * _band(z, -75.0, sella_floor, soft)
        * _step(22.0 - y, soft)
        * lateral
    )
    bone = torch.maximum(clivus, block)
    marrow = _band(across, -10.5, -3.5, soft) * _band(along, dorsum_top + 1.5, 43.0, soft) * lateral
    sphenoid = (
        _step(-across - 13.5, soft)
        * _band(z, -55.0, sella_floor - 3.0, soft)
        * _step(20.0 - y, soft)
        * _step(12.0 - x.abs(), soft)
    )
    clival_dura = _band(across, -dural, 0.0, soft) * _band(along, dorsum_top, 45.0, soft) * lateral
    ellipsoid = torch.sqrt((((p - centre) / radii) ** 2).sum(-1))
    gland = _step((1 - ellipsoid) * float(radii.min()), soft)
    value = image.double()
    layers = (
        (bone, CORTICAL_BONE),
        (marrow, MARROW),
        (block * _step(-across - 13.0, soft), MARROW),
        (sphenoid, 0.02),
        (clival_dura, 1.0 + 0.3 * venous),
        (gland, PITUITARY),
    )
    for mask, level in layers:
        value = _paint(value, mask, level)
    return value.float()


def sih_layers(
    cavity: torch.Tensor, points: torch.Tensor, depth: torch.Tensor, signs: Signs, soft: float
) -> torch.Tensor:
    """The dura, subdural collections and venous sinuses of a CE-T1 painted over the cranial
    cavity's intensities.

    Args:
        cavity: (N,) relative intensities (white matter = 1) of brain and CSF.
        points: (N, 3) the same voxels' template mm (the sinuses' and collections' positions).
        depth: (N,) mm below the inner table of the skull.
        signs: the patient's SIH signs (dura 0.8 -> 3.5 mm thick and faint -> bright; collections
            up to ``subdural_mm`` over the convexities; sinuses larger and convex).
        soft: partial-volume edge scale, mm.

    Returns:
        (N,) the intensities with the layers painted.
    """
    dura_thickness = 0.8 + 2.7 * signs.dural_enhancement
    if signs.subdural_mm > 0:
        x, _, z = points.unbind(-1)
        extent = _step(z - 5.0, 8.0) * _step(x.abs() - 25.0, 6.0)
        thickness = signs.subdural_mm * extent
        cavity = _paint(
            cavity,
            _band(depth, dura_thickness, dura_thickness + thickness, soft)
            * _step(thickness - 0.2, 0.2),
            SUBDURAL_FLUID,
        )
    dura = _band(depth, 0.0, dura_thickness, soft)
    cavity = _paint(cavity, dura, 0.55 + 1.1 * signs.dural_enhancement)
    return _paint(cavity, _sinuses(points, depth, signs.venous_engorgement, soft), SINUS)


def tissue_intensity(
    template: torch.Tensor, patient: Patient, anatomy: atlas.Anatomy, soft: float
) -> torch.Tensor:
    """Noise-free relative intensity (white matter = 1) at template points (N, 3) mm: (N,)."""
    signs = patient.signs
    inner = atlas.sample(anatomy.inner_distance, anatomy.distance_grid, template, padding="border")
    depth = -inner  # mm below the inner table
    image = torch.zeros_like(inner)
    outer_edge = 0.0
    for edge, level in SCALP_LAYERS:
        image = _paint(image, _band(inner, outer_edge, edge, soft), level)
        outer_edge = edge
    inside = torch.nonzero(inner < 2.0).squeeze(1)
    if inside.numel():
        points = template[inside]
        d = depth[inside]
        source = SagMap.of_patient(patient).inverse(points.numpy())
        brain = atlas.sample(anatomy.brain, anatomy.brain_grid, torch.from_numpy(source).float())
        cavity = sih_layers(torch.clamp(brain, min=CSF), points, d, signs, soft)
        image[inside] = _paint(image[inside], _step(d, soft), cavity)
    near = torch.nonzero(
        (
            (template - torch.tensor([0.0, -8.0, -36.0])).abs() < torch.tensor([22.0, 38.0, 30.0])
        ).all(-1)
    ).squeeze(1)
    if near.numel():
        image[near] = _skull_base(
            image[near],
            template[near],
            SkullBase.of_patient(patient),
            signs.venous_engorgement,
            soft,
        )
    return image


def acquisition_grid(
    patient: Patient, spacing_mm: float
) -> tuple[np.ndarray, tuple[int, int, int], int]:
    """The RAS-ordered voxel grid of the study before storage reordering.

    Returns:
        ``(affine 4x4, shape (X, Y, Z), sub-samples per voxel along x)``: 2D acquisitions have
        thick sagittal slices, integrated over several sub-samples.
    """
    acquisition = patient.acquisition
    thickness = max(acquisition.slice_thickness_mm, spacing_mm) if acquisition.two_d else spacing_mm
    steps = np.array([thickness, spacing_mm, spacing_mm])
    shape = tuple(int(v) for v in np.round(FIELD_OF_VIEW_MM / steps).astype(int))
    rotation = rotation_matrix((acquisition.oblique_deg, 0.0, 0.0))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(steps)
    affine[:3, 3] = FIELD_CENTRE_MM - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    subsamples = max(1, round(thickness / min(spacing_mm, 1.0))) if acquisition.two_d else 1
    return affine, shape, subsamples  # type: ignore[return-value]


def render(
    patient: Patient, spacing_mm: float = 1.0, anatomy: atlas.Anatomy | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render the study as stored on disk.

    Args:
        patient: signs, anatomy and acquisition.
        spacing_mm: in-plane (3D: isotropic) voxel size in mm.
        anatomy: template fields (built once per process when omitted).

    Returns:
        ``(data int16 (I, J, K) in the patient's storage orientation, affine 4x4 voxel -> world mm)``.
    """
    anatomy = anatomy or atlas.load_anatomy()
    acquisition = patient.acquisition
    affine, shape, subsamples = acquisition_grid(patient, spacing_mm)
    pose = HeadPose.of(patient)
    # The deformation tabulated at 2 mm (within 0.01 mm of the exact field the truth is measured
    # on), the bias field at 8 mm.
    deformation_grid, bias_grid = atlas.box_grid(2.0), atlas.box_grid(8.0)
    deformation = torch.from_numpy(deformation_of(patient).tabulate(deformation_grid))[None]
    bias = torch.from_numpy(bias_of(patient).tabulate(bias_grid))[None]
    # A logistic edge of scale s ramps over ~4 s: s = spacing / 4 mimics a voxel's partial volume.
    soft = 0.25 * spacing_mm / float(np.prod(pose.scale) ** (1 / 3))
    index = torch.stack(
        torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij"), -1
    ).reshape(-1, 3)
    matrix = torch.from_numpy(affine[:3, :3].astype(np.float32))
    origin = torch.from_numpy(affine[:3, 3].astype(np.float32))
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    image = torch.empty(index.shape[0])
    for start in range(0, index.shape[0], CHUNK):
        block = index[start : start + CHUNK]
        total = torch.zeros(block.shape[0])
        for offset in offsets:
            world = (block + torch.tensor([float(offset), 0.0, 0.0])) @ matrix.T + origin
            head = torch.from_numpy(pose.world_to_head(world.double().numpy())).float()
            template = head + atlas.sample(deformation, deformation_grid, head, padding="border")
            total += tissue_intensity(template, patient, anatomy, soft)
        value = (total / subsamples).clamp(min=0) ** acquisition.gamma
        log_bias = atlas.sample(bias, bias_grid, head, padding="border")
        image[start : start + CHUNK] = value * torch.exp(log_bias)
    rng = np.random.default_rng(acquisition.seed + 2)
    if acquisition.noise_sd > 0:
        noise = rng.standard_normal((2, image.shape[0]), dtype=np.float32) * acquisition.noise_sd
        magnitude = np.hypot(image.numpy() + noise[0], noise[1])
    else:
        magnitude = image.numpy()
    data = (
        np.clip(np.round(magnitude * acquisition.intensity_scale), 0, 32767)
        .astype(np.int16)
        .reshape(shape)
    )
    return reorient(data, affine, acquisition.orientation)


def reorient(data: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """Store a RAS-ordered array in another axis order/direction, keeping world positions exact."""
    current = orientations.io_orientation(affine)
    target = orientations.axcodes2ornt(tuple(axcodes))
    transform = orientations.ornt_transform(current, target)
    stored = orientations.apply_orientation(data, transform)
    new_affine = affine @ orientations.inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(stored), new_affine


def world_position(affine: np.ndarray, voxel: np.ndarray) -> np.ndarray:
    """World mm of voxel indices (..., 3)."""
    return np.asarray(voxel) @ affine[:3, :3].T + affine[:3, 3]


def template_to_world(patient: Patient, template_points: np.ndarray) -> np.ndarray:
    """World (scanner) mm of skull-fixed template points (N, 3), through the patient's pose."""
    points = np.asarray(template_points, dtype=np.float64)[None]
    head = template_to_head(deformation_of(patient), points)[0]
    return HeadPose.of(patient).head_to_world(head)
