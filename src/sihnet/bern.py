"""The Bern score (Dobrocky et al., JAMA Neurol 2019;76:580): brain-MRI probability of a spinal CSF leak.

Major criteria, 2 points each: pachymeningeal enhancement, engorgement of venous sinus, suprasellar
cistern <= 4.0 mm. Minor criteria, 1 point each: subdural fluid collection, prepontine cistern
<= 5.0 mm, mamillopontine distance <= 6.5 mm. Total 0-9; low (<= 2), intermediate (3-4), high (>= 5).
"""

from __future__ import annotations

from collections.abc import Mapping

SUPRASELLAR_THRESHOLD_MM = 4.0
PREPONTINE_THRESHOLD_MM = 5.0
MAMILLOPONTINE_THRESHOLD_MM = 6.5


def bern_score(fields: Mapping[str, float | int]) -> int:
    """Bern score 0-9 from the six complete manifest fields (signs 0/1, distances in mm)."""
    score = 2 * int(fields["pachymeningeal_enhancement"]) + 2 * int(
        fields["venous_sinus_engorgement"]
    )
    score += 2 * int(float(fields["suprasellar_cistern_mm"]) <= SUPRASELLAR_THRESHOLD_MM)
    score += int(fields["subdural_fluid_collection"])
    score += int(float(fields["prepontine_cistern_mm"]) <= PREPONTINE_THRESHOLD_MM)
    score += int(float(fields["mamillopontine_distance_mm"]) <= MAMILLOPONTINE_THRESHOLD_MM)
    return score
