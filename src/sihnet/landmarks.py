"""The midline landmarks of the Bern distances, defined once on the MNI152 template (ICBM 2009a,
nilearn's 1 mm T1), in template mm (RAS).

Each point lies on the tissue edge its definition names (Dobrocky et al., JAMA Neurol 2019;
docs/reader.md): the half-level crossing of the template's intensity along the measurement line,
read off the template's mid-sagittal slice. The synthetic cohort is built around them
(``sihnet.synth``) and the automatic reader (``sihnet.reader``) carries them into a patient and
refines them on the patient's own edges.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Landmark:
    """A named point of the template.

    Attributes:
        name: identifier (Slicer control-point label, column of tables).
        mni_mm: (x, y, z) template mm.
        definition: in a radiologist's words.
    """

    name: str
    mni_mm: tuple[float, float, float]
    definition: str

    @property
    def point(self) -> np.ndarray:
        return np.asarray(self.mni_mm, dtype=np.float64)


MAMILLARY_BODY = Landmark(
    "mamillary_body",
    (0.0, -7.0, -17.6),
    "inferior aspect of the mamillary bodies (upper end of the mamillopontine distance)",
)
PONS_SUPERIOR = Landmark(
    "pons_superior",
    (0.0, -16.0, -22.7),
    "upper margin of the pons below the interpeduncular fossa (lower end of the mamillopontine "
    "distance)",
)
PONS_ANTERIOR = Landmark(
    "pons_anterior",
    (0.0, -12.8, -30.0),
    "most anterior point of the pons (posterior end of the prepontine cistern's width)",
)
CHIASM_FLOOR = Landmark(
    "chiasm_floor",
    (0.0, 4.0, -17.3),
    "lowest point of the optic chiasm / hypothalamus over the sella (upper end of the "
    "suprasellar cistern's height)",
)
BRAIN_LANDMARKS: tuple[Landmark, ...] = (MAMILLARY_BODY, PONS_SUPERIOR, PONS_ANTERIOR, CHIASM_FLOOR)

# The clivus of the template: inclined 30 degrees from the vertical (top anterior). Its normal
# points from the clivus towards the pons (posterior and upwards); "down the clivus" towards the
# basion. The prepontine cistern is measured along the normal.
CLIVUS_ANGLE_DEG = 30.0
CLIVUS_NORMAL = np.array(
    [0.0, -math.cos(math.radians(CLIVUS_ANGLE_DEG)), math.sin(math.radians(CLIVUS_ANGLE_DEG))]
)
CLIVUS_DIRECTION = np.array(
    [0.0, -math.sin(math.radians(CLIVUS_ANGLE_DEG)), -math.cos(math.radians(CLIVUS_ANGLE_DEG))]
)
VERTICAL = np.array([0.0, 0.0, 1.0])  # the template's inferior -> superior axis
