"""How each Bern item is read: the one table the automatic reader (``sihnet.reader``), its picture
and markups, the measured items' agreement and the synthetic generator's truth (``sihnet.synth``)
loop over (docs/reader.md).

A sign is called from one continuous measure at a threshold; a distance runs from a landmark of the
template (:mod:`sihnet.landmarks`) along the patient's vertical or the clivus' normal, to the next
edge or to a second landmark's level. The synthetic generator knows each item as a latent sign or
as its geometry (``synth``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from sihnet.bern import (
    MAMILLOPONTINE,
    PACHYMENINGEAL,
    PREPONTINE,
    SUBDURAL,
    SUPRASELLAR,
    VENOUS_SINUS,
    BernItem,
)
from sihnet.landmarks import CHIASM_FLOOR, MAMILLARY_BODY, PONS_ANTERIOR, PONS_SUPERIOR, Landmark

Direction = Literal["vertical", "clivus_normal"]

# A sign is called present at or above its threshold: Youden's point on the development cohorts
# dev1 and dev2 pooled (benchmarks/reader_thresholds.py; 80 synthetic heads; docs/reader.md),
# re-derived with the deterministic reader of December 2026 (dural 2.25 -> 2.15, subdural 1.65 ->
# 2.38).
# The reader's own plausible range of a distance: beyond the largest adult Bern distance (normal
# ranges: docs/synthetic.md), or edges crossing by more than a voxel's blur, the line was read off
# the wrong structures (in r1-r3, 4 of 400 readings at 12.4-16.8 mm, each a misplaced landmark).
# A manifest's value is checked against the wider ``BernItem.plausible_mm``: a human reader's 13 mm
# is rare but no typing error.
READ_RANGE_MM = (-1.0, 12.0)


@dataclasses.dataclass(frozen=True)
class ItemReading:
    """How one Bern item is read.

    Attributes:
        item: the Bern item (:data:`sihnet.bern.ITEMS`).
        synth: a sign's latent sign in the synthetic generator (``Signs`` field; a distance is
            called by its item's name there too).
        measure: a sign's continuous measure (its name in a reading's ``measures``).
        threshold: a sign is called present at or above it (the measure's unit).
        start: a distance's landmark: its line starts at the edge found near it.
        end: a distance between two landmarks' levels (the mamillopontine distance); None for a
            cistern, whose far edge is the next structure across the CSF.
        direction: the line's direction, turned into the patient by the alignment.
        colour: the line's colour in the measurement picture.
    """

    item: BernItem
    synth: str | None = None
    measure: str | None = None
    threshold: float | None = None
    start: Landmark | None = None
    end: Landmark | None = None
    direction: Direction | None = None
    colour: str = "white"

    @property
    def name(self) -> str:
        return self.item.name

    def call(self, value: float) -> float:
        """A sign's item, 1.0 (present) or 0.0, from its measure's value."""
        if self.threshold is None:
            raise ValueError(f"{self.name} is not called from a measure")
        return float(value >= self.threshold)


READINGS: tuple[ItemReading, ...] = (
    ItemReading(PACHYMENINGEAL, "dural_enhancement", "dural_enhancement", 2.15),
    ItemReading(VENOUS_SINUS, "venous_engorgement", "sinus_height_mm", 5.97),
    ItemReading(SUBDURAL, "subdural_mm", "subdural_fluid_mm", 2.38),
    ItemReading(
        SUPRASELLAR,
        start=CHIASM_FLOOR,
        direction="vertical",
        colour="#ffcc00",
    ),
    ItemReading(
        PREPONTINE,
        start=PONS_ANTERIOR,
        direction="clivus_normal",
        colour="#33ddff",
    ),
    ItemReading(
        MAMILLOPONTINE,
        start=MAMILLARY_BODY,
        end=PONS_SUPERIOR,
        direction="vertical",
        colour="#ff66cc",
    ),
)
SIGN_READINGS = tuple(r for r in READINGS if r.item.kind == "sign")
DISTANCE_READINGS = tuple(r for r in READINGS if r.item.kind == "distance")
BY_NAME = {r.name: r for r in READINGS}
