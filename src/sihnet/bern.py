"""The Bern score (Dobrocky et al., JAMA Neurol 2019;76:580): brain-MRI probability of a spinal CSF leak.

Major criteria, 2 points each: pachymeningeal enhancement, engorgement of venous sinus,
suprasellar cistern <= 4.0 mm. Minor criteria, 1 point each: subdural fluid collection,
prepontine cistern <= 5.0 mm, mamillopontine distance <= 6.5 mm. Total 0-9; probability of a
spinal CSF leak low (<= 2), intermediate (3-4), high (>= 5).

:data:`ITEMS` is the one table of the six items: the manifest's Bern columns, the scoring rules,
the Bern heads' outputs, the occlusion targets, the plausible ranges a manifest value is checked
against and the automatic score all derive from it.

A missing field is never scored as absent: the score is then *partial* and reported with the
range it could take (``score_min`` counts only what is known, ``score_max`` adds every missing
criterion's points).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Literal

import numpy as np


@dataclasses.dataclass(frozen=True)
class BernItem:
    """One criterion of the Bern score.

    Attributes:
        name: the manifest column (and the Bern head's output, and the occlusion target).
        kind: ``sign`` (0/1, present scores) or ``distance`` (mm, at most ``threshold_mm`` scores).
        points: what the criterion adds to the score when met.
        threshold_mm: a distance meets the criterion at or below it; None for a sign.
        plausible_mm: the range a measured distance can take in an adult head (a value outside is
            a typing or unit error, refused naming the row); None for a sign.
        description: in a radiologist's words.
    """

    name: str
    kind: Literal["sign", "distance"]
    points: int
    threshold_mm: float | None = None
    plausible_mm: tuple[float, float] | None = None
    description: str = ""

    def meets(self, value: float) -> bool:
        """Whether a reader's value (a sign 0/1, a distance in mm) meets the criterion."""
        return bool(self.met_by(np.asarray(value, dtype=np.float64)))

    def met_by(self, values: np.ndarray) -> np.ndarray:
        """:meth:`meets` of each of an array of values (bool, the same shape)."""
        if self.kind == "sign":
            return values >= 0.5
        assert self.threshold_mm is not None
        return values <= self.threshold_mm


# The distances are a few millimetres; beyond 30 mm a value is a unit or typing error.
_PLAUSIBLE_MM = (0.0, 30.0)
ITEMS: tuple[BernItem, ...] = (
    BernItem("pachymeningeal_enhancement", "sign", 2, description="pachymeningeal enhancement"),
    BernItem("venous_sinus_engorgement", "sign", 2, description="engorgement of venous sinus"),
    BernItem("suprasellar_cistern_mm", "distance", 2, 4.0, _PLAUSIBLE_MM, "suprasellar cistern"),
    BernItem("subdural_fluid_collection", "sign", 1, description="subdural fluid collection"),
    BernItem("prepontine_cistern_mm", "distance", 1, 5.0, _PLAUSIBLE_MM, "prepontine cistern"),
    BernItem(
        "mamillopontine_distance_mm", "distance", 1, 6.5, _PLAUSIBLE_MM, "mamillopontine distance"
    ),
)
PACHYMENINGEAL, VENOUS_SINUS, SUPRASELLAR, SUBDURAL, PREPONTINE, MAMILLOPONTINE = ITEMS
SIGNS: tuple[BernItem, ...] = tuple(item for item in ITEMS if item.kind == "sign")
DISTANCES: tuple[BernItem, ...] = tuple(item for item in ITEMS if item.kind == "distance")
# The Bern heads' outputs, in order: the signs (logits), then the distances (mm).
HEAD_ITEMS: tuple[BernItem, ...] = (*SIGNS, *DISTANCES)
FIELDS: tuple[str, ...] = tuple(item.name for item in ITEMS)
SIGN_FIELDS: tuple[str, ...] = tuple(item.name for item in SIGNS)
DISTANCE_FIELDS: tuple[str, ...] = tuple(item.name for item in DISTANCES)
HEAD_FIELDS: tuple[str, ...] = tuple(item.name for item in HEAD_ITEMS)
# A multi-task run's per-patient Bern outputs (``oof_bern_predictions.csv``, a fold's
# ``bern_predictions.csv``): written by training and evaluation alike.
BERN_PREDICTION_COLUMNS = (
    "patient_id",
    "fold",
    "label",
    *HEAD_FIELDS,
    "auto_bern",
    "expected_bern",
)
BY_NAME: dict[str, BernItem] = {item.name: item for item in ITEMS}


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


def score_fields(fields: Mapping[str, object]) -> BernScore:
    """Bern score of one patient from the manifest's six fields (text or numbers; empty = missing)."""
    low = high = 0
    missing = []
    for item in ITEMS:
        value = _value(fields.get(item.name))
        if value is None:
            missing.append(item.name)
            high += item.points
        elif item.meets(value):
            low += item.points
            high += item.points
    return BernScore(low, high, tuple(missing))


def bern_score(fields: Mapping[str, object]) -> int:
    """Bern score 0-9 of six complete fields; raises ValueError if any is missing."""
    result = score_fields(fields)
    if result.score is None:
        raise ValueError(f"Bern fields missing: {', '.join(result.missing)}")
    return result.score


def bern_scores(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Bern scores 0-9 of B patients from complete columns (item name -> (B,) values)."""
    return sum(
        (
            item.points * item.met_by(np.asarray(columns[item.name], dtype=np.float64))
            for item in ITEMS
        ),
        start=np.zeros(len(columns[ITEMS[0].name]), dtype=int),
    )


def expected_score(components: Mapping[str, float], distance_sd_mm: float) -> float:
    """Each criterion's points times the probability it is met: a sign's probability, and for a
    distance predicted ``d`` mm, Φ((threshold − d) / ``distance_sd_mm``)."""
    total = 0.0
    for item in ITEMS:
        value = float(components[item.name])
        if item.kind == "sign":
            total += item.points * value
        else:
            assert item.threshold_mm is not None
            z = (item.threshold_mm - value) / distance_sd_mm
            total += item.points * 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return total
