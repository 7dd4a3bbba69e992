"""Ground-truth Bern fields of a synthetic patient, measured on the geometry that is rendered.

Distances follow the Bern score's definitions (Dobrocky et al., JAMA Neurol 2019) on the
mid-sagittal plane: suprasellar cistern = vertical distance from the upper margin of the pituitary
to the lowest point of the chiasm/hypothalamus; prepontine cistern = distance from the most
anterior point of the pons to the clivus, perpendicular to the clivus; mamillopontine distance =
vertical distance from the inferior aspect of the mamillary bodies to the upper margin of the pons.
Landmarks are carried through the brain's position and the smooth deformation into the head frame
and scaled by the head's size along each axis, so the values are in the stored image's mm.
"""

from __future__ import annotations

import numpy as np

from sihnet.bern import MAMILLOPONTINE, PREPONTINE, SUPRASELLAR
from sihnet.bern_reading import SIGN_READINGS
from sihnet.synth import anatomy as atlas
from sihnet.synth.field import SplineField
from sihnet.synth.geometry import SagMap, SkullBase, deformation_of, template_to_head
from sihnet.synth.patient import SIGN_MODELS, VISIBLE_SEVERITY, Patient

BRAIN_LANDMARKS = np.stack(
    [atlas.MAMILLARY_INFERIOR, atlas.PONS_SUPERIOR, atlas.CHIASM_FLOOR, atlas.PONS_ANTERIOR]
)
# Bern sign items and the latent sign whose visibility each is (sihnet.bern_reading's table).
SIGN_OF_ITEM = {r.name: str(r.synth) for r in SIGN_READINGS}
SIGN_INDEX = {model.field: i for i, model in enumerate(SIGN_MODELS)}


def bern_distances(
    sag: SagMap, skull: SkullBase, deformation: SplineField, head_scale: np.ndarray
) -> dict[str, np.ndarray]:
    """The three Bern distances of a batch of B patients, mm (>= 0).

    Args:
        sag: brain position with the SIH signs, values (B, 1).
        skull: the skull-base shapes, arrays (B, 3).
        deformation: the head -> template fields of the B patients.
        head_scale: (B, 3) head size along each axis.

    Returns:
        Bern distance name -> (B,).
    """
    brain = sag.forward(BRAIN_LANDMARKS)  # (B, 4, 3)
    mamillary, pons_top, chiasm, pons_front = np.moveaxis(brain, 1, 0)
    pituitary_top = skull.pituitary_centre + skull.pituitary_radii * np.array([0.0, 0.0, 1.0])
    clivus_low = skull.clivus_point + 10.0 * skull.clivus_direction
    template = np.stack(
        [mamillary, pons_top, chiasm, pituitary_top, pons_front, skull.clivus_point, clivus_low], 1
    )
    head = template_to_head(deformation, template) * head_scale[:, None, :]
    along = head[:, 6] - head[:, 5]
    along /= np.linalg.norm(along, axis=-1, keepdims=True)
    offset = head[:, 4] - head[:, 5]
    across = offset - (offset * along).sum(-1, keepdims=True) * along
    in_front = ((pons_front - skull.clivus_point) @ skull.clivus_normal) > 0
    return {
        SUPRASELLAR.name: np.maximum(0.0, head[:, 2, 2] - head[:, 3, 2]),
        PREPONTINE.name: np.where(in_front, np.linalg.norm(across, axis=-1), 0.0),
        MAMILLOPONTINE.name: np.maximum(0.0, head[:, 0, 2] - head[:, 1, 2]),
    }


def measure_distances(patient: Patient) -> dict[str, float]:
    """The three Bern distances of one patient in mm (world), >= 0."""
    sag = SagMap.of_patient(patient)
    skull = SkullBase.of_patient(patient)
    batch = SagMap(
        np.array([[sag.pons_descent]], dtype=float),
        np.array([[sag.diencephalon_descent]], dtype=float),
    )
    one = SkullBase(
        skull.pituitary_centre[None],
        skull.pituitary_radii[None],
        skull.clivus_point[None],
        skull.clivus_normal,
        skull.clivus_direction,
    )
    scale = np.asarray(patient.baseline.head_scale, dtype=np.float64)[None]
    distances = bern_distances(batch, one, deformation_of(patient), scale)
    return {name: float(value[0]) for name, value in distances.items()}


def visible_signs(severities: np.ndarray) -> dict[str, np.ndarray]:
    """Bern sign item -> 0/1 of (B, S) latent severities (visible at ``VISIBLE_SEVERITY``)."""
    return {
        item: (severities[..., SIGN_INDEX[sign]] >= VISIBLE_SEVERITY).astype(int)
        for item, sign in SIGN_OF_ITEM.items()
    }


def measure_bern_fields(
    patient: Patient,
    reader_noise_mm: float = 0.0,
    rng: np.random.Generator | None = None,
    distances: dict[str, float] | None = None,
) -> dict[str, float | int]:
    """The six Bern fields of the manifest contract for one patient.

    Args:
        patient: the synthetic patient.
        distances: its three Bern distances, mm, where they are known otherwise (a real head
            with SIH added, :mod:`sihnet.real_heads.sih`); else measured on the generator's geometry.
        reader_noise_mm: standard deviation of a reader's measurement error (0 = ground truth).
            Binary signs within 0.1 of the visible threshold are also called at random then.
        rng: source of the reader noise.
    """
    severities = patient.signs.severities()
    rng = rng or np.random.default_rng(0)
    fields: dict[str, float | int] = {}
    for item, sign in SIGN_OF_ITEM.items():
        severity = float(severities[SIGN_INDEX[sign]])
        if reader_noise_mm > 0 and abs(severity - VISIBLE_SEVERITY) < 0.1:
            fields[item] = int(rng.random() < 0.5)
        else:
            fields[item] = int(severity >= VISIBLE_SEVERITY)
    for name, value in (distances or measure_distances(patient)).items():
        noisy = value + (rng.normal(0, reader_noise_mm) if reader_noise_mm > 0 else 0.0)
        fields[name] = round(max(0.0, noisy), 2)
    return fields
