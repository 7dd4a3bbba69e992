"""The Bern score (Dobrocky et al., JAMA Neurol 2019;76:580): brain-MRI probability of a spinal CSF leak.

Major criteria, 2 points each: pachymeningeal enhancement, engorgement of venous sinus,
suprasellar cistern <= 4.0 mm. Minor criteria, 1 point each: subdural fluid collection,
prepontine cistern <= 5.0 mm, mamillopontine distance <= 6.5 mm. Total 0-9; probability of a
spinal CSF leak low (<= 2), intermediate (3-4), high (>= 5).

A missing field is never scored as absent: the score is then *partial* and reported with the
range it could take (``score_min`` counts only what is known, ``score_max`` adds every missing
criterion's points).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

SUPRASELLAR_THRESHOLD_MM = 4.0
PREPONTINE_THRESHOLD_MM = 5.0
MAMILLOPONTINE_THRESHOLD_MM = 6.5

# (manifest column, points, test on the value)
CRITERIA: tuple[tuple[str, int, str], ...] = (
    ("pachymeningeal_enhancement", 2, "present"),
    ("venous_sinus_engorgement", 2, "present"),
    ("suprasellar_cistern_mm", 2, f"<= {SUPRASELLAR_THRESHOLD_MM}"),
    ("subdural_fluid_collection", 1, "present"),
    ("prepontine_cistern_mm", 1, f"<= {PREPONTINE_THRESHOLD_MM}"),
    ("mamillopontine_distance_mm", 1, f"<= {MAMILLOPONTINE_THRESHOLD_MM}"),
)
BERN_FIELDS = tuple(name for name, _, _ in CRITERIA)


@dataclasses.dataclass(frozen=True)
class BernScore:
    """A patient's Bern score; ``score_min == score_max`` when every field is known."""

    score_min: int
    score_max: int
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def score(self) -> int | None:
        """The score when complete, else None."""
        return self.score_min if self.complete else None

    @property
    def category(self) -> str:
        """``low``/``intermediate``/``high``, or ``low-high`` style when a partial range spans two."""
        low, high = category_of(self.score_min), category_of(self.score_max)
        return low if low == high else f"{low}-{high}"


def category_of(score: int) -> str:
    """Leak probability category of a complete score."""
    return "low" if score <= 2 else ("intermediate" if score <= 4 else "high")


def _value(raw: object) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = raw.strip()
        if raw == "":
            return None
    value = float(raw)  # type: ignore[arg-type]
    return None if math.isnan(value) else value


def _meets(name: str, value: float) -> bool:
    if name == "suprasellar_cistern_mm":
        return value <= SUPRASELLAR_THRESHOLD_MM
    if name == "prepontine_cistern_mm":
        return value <= PREPONTINE_THRESHOLD_MM
    if name == "mamillopontine_distance_mm":
        return value <= MAMILLOPONTINE_THRESHOLD_MM
    return value >= 0.5  # a sign given as 0/1


def score_fields(fields: Mapping[str, object]) -> BernScore:
    """Bern score of one patient from the manifest's six fields (text or numbers; empty = missing)."""
    low = high = 0
    missing = []
    for name, points, _ in CRITERIA:
        value = _value(fields.get(name))
        if value is None:
            missing.append(name)
            high += points
        elif _meets(name, value):
            low += points
            high += points
    return BernScore(low, high, tuple(missing))


def bern_score(fields: Mapping[str, object]) -> int:
    """Bern score 0-9 of six complete fields; raises ValueError if any is missing."""
    result = score_fields(fields)
    if result.score is None:
        raise ValueError(f"Bern fields missing: {', '.join(result.missing)}")
    return result.score
