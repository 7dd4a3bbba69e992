"""Ground-truth Bern fields of a synthetic patient, measured on the geometry that is rendered.

Distances follow the Bern score's definitions (Dobrocky et al., JAMA Neurol 2019) on the
mid-sagittal plane: suprasellar cistern = vertical distance from the upper margin of the pituitary
to the lowest point of the chiasm/hypothalamus; prepontine cistern = distance from the most
anterior point of the pons to the clivus, perpendicular to the clivus; mamillopontine distance =
vertical distance from the inferior aspect of the mamillary bodies to the upper margin of the pons.
Landmarks are carried through the sag and the smooth deformation into the head frame and scaled
by head size, so the values are in the stored image's millimetres.
"""

from __future__ import annotations

import numpy as np
import torch

from sihnet.bern import (
    MAMILLOPONTINE,
    PACHYMENINGEAL,
    PREPONTINE,
    SUBDURAL,
    SUPRASELLAR,
    VENOUS_SINUS,
)
from sihnet.synth import anatomy as atlas
from sihnet.synth.geometry import HeadPose, SagMap, SkullBase
from sihnet.synth.patient import VISIBLE_SEVERITY, VISIBLE_SUBDURAL_MM, Patient


def _to_head(pose: HeadPose, template_points: np.ndarray) -> np.ndarray:
    points = torch.as_tensor(np.asarray(template_points, dtype=np.float32))
    return pose.template_to_head(points).double().numpy()


def measure_distances(patient: Patient) -> dict[str, float]:
    """The three Bern distances in mm (world), >= 0."""
    pose, sag, skull = HeadPose.of(patient), SagMap.of(patient), SkullBase.of(patient)
    brain = sag.forward(
        torch.tensor(
            np.stack(
                [
                    atlas.MAMILLARY_INFERIOR,
                    atlas.PONS_SUPERIOR,
                    atlas.CHIASM_FLOOR,
                    atlas.PONS_ANTERIOR,
                ]
            ),
            dtype=torch.float64,
        )
    ).numpy()
    mamillary, pons_top, chiasm, pons_front = brain
    pituitary_top = skull.pituitary_centre + np.array([0.0, 0.0, skull.pituitary_radii[2]])
    depth = float(skull.clivus_normal @ (pons_front - skull.clivus_point))
    clivus_foot = pons_front - depth * skull.clivus_normal
    head = _to_head(
        pose, np.stack([mamillary, pons_top, chiasm, pituitary_top, pons_front, clivus_foot])
    )
    scale = pose.scale
    return {
        SUPRASELLAR.name: max(0.0, scale * float(head[2, 2] - head[3, 2])),
        PREPONTINE.name: max(0.0, scale * float(np.linalg.norm(head[4] - head[5])))
        if depth > 0
        else 0.0,
        MAMILLOPONTINE.name: max(0.0, scale * float(head[0, 2] - head[1, 2])),
    }


def measure_bern_fields(
    patient: Patient, reader_noise_mm: float = 0.0, rng: np.random.Generator | None = None
) -> dict[str, float | int]:
    """The six Bern fields of the manifest contract for one patient.

    Args:
        patient: the synthetic patient.
        reader_noise_mm: standard deviation of a reader's measurement error (0 = ground truth).
            Binary signs within 0.1 of the visible threshold are also called at random then.
        rng: source of the reader noise.
    """
    signs = patient.signs
    rng = rng or np.random.default_rng(0)
    fields: dict[str, float | int] = {}

    def call(severity: float, threshold: float, margin: float) -> int:
        if reader_noise_mm > 0 and abs(severity - threshold) < margin:
            return int(rng.random() < 0.5)
        return int(severity >= threshold)

    fields[PACHYMENINGEAL.name] = call(signs.pachymeningeal_enhancement, VISIBLE_SEVERITY, 0.1)
    fields[VENOUS_SINUS.name] = call(signs.venous_engorgement, VISIBLE_SEVERITY, 0.1)
    fields[SUBDURAL.name] = call(
        signs.subdural_mm * patient.acquisition.head_scale, VISIBLE_SUBDURAL_MM, 0.5
    )
    for name, value in measure_distances(patient).items():
        noisy = value + (rng.normal(0, reader_noise_mm) if reader_noise_mm > 0 else 0.0)
        fields[name] = round(max(0.0, noisy), 2)
    return fields
