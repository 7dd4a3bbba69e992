"""Pick, per study, the series the model was trained on: a sagittal post-contrast T1, 3D preferred.

Every series gets an :class:`Assessment` (orientation, 2D/3D, weighting, contrast and the evidence
for both, or why it cannot be used; see :mod:`sihnet.ingest.classify`); reasons name only DICOM
keywords, coded values and matched keywords, never a free-text header value, so
``selection.tsv`` carries no PHI.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sihnet.errors import SihnetError
from sihnet.ingest.classify import contrast_of, description_text, weighting_of
from sihnet.ingest.discover import Series
from sihnet.tables import read_table

MIN_SLICES = 16
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DERIVED_TYPES = (
    "DERIVED",
    "MPR",
    "REFORMATTED",
    "PROJECTION IMAGE",
    "MIP",
    "MINIP",
    "CSA MPR",
    "SUBTRACTION",
)
LOCALIZER = re.compile(
    r"locali[sz]er|(?<![a-z])(?:scout|survey|pilot|aahead|planung|loc)(?![a-z])|3[ -]?plane|tri[- ]?pilot"
)
ORIENTATIONS = ("sagittal", "coronal", "axial")
EXPLICIT_CONTRAST = ("header", "description")  # the series' own evidence, not acquisition order


@dataclasses.dataclass(frozen=True)
class Assessment:
    """What a series is and whether it can be the model's input.

    Attributes:
        usable: an MR image series that is not a localizer, derived, annotated or too short.
        orientation: ``sagittal``/``coronal``/``axial``/``unknown``.
        acquisition: ``3D``, ``2D`` or ``unknown`` (MRAcquisitionType).
        weighting: ``T1``, the other kind it positively is (``field map``, ``BOLD``, ``FLAIR``, …),
            or ``unknown``; only ``T1`` can be selected.
        contrast: ``post``, ``pre`` or ``unknown``; contrast_evidence: which kind of evidence
            decided it (``header``, ``description``, ``acquisition order``, or '').
        evidence: why the weighting and contrast calls were made; reason: why unusable ('' if usable).
    """

    usable: bool
    orientation: str
    acquisition: str
    weighting: str
    contrast: str
    evidence: str
    reason: str
    contrast_evidence: str = ""


def orientation_of(cosines: np.ndarray | None) -> str:
    """Plane of a slice from its row/column cosines (LPS): the axis its normal is closest to."""
    if cosines is None:
        return "unknown"
    normal = np.cross(cosines[:3], cosines[3:])
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 0.5:
        return "unknown"
    axis = int(np.argmax(np.abs(normal)))
    return ORIENTATIONS[axis]


def assess(series: Series) -> Assessment:
    """Classify one series (see :class:`Assessment`); a header that cannot be parsed is unusable."""
    try:
        return _assess(series)
    except Exception as error:  # malformed values surface lazily in pydicom, with many types
        reason = f"unreadable header fields ({type(error).__name__})"
        return Assessment(False, "unknown", "unknown", "unknown", "unknown", "", reason)


def _assess(series: Series) -> Assessment:
    header = series.header
    text = description_text(header)
    raw_type = header.get("ImageType") or []
    raw_type = str(raw_type).split("\\") if isinstance(raw_type, (str, bytes)) else raw_type
    image_type = [str(v).strip().upper() for v in raw_type]
    orientation = orientation_of(series.orientation)
    acquisition = str(header.get("MRAcquisitionType", "") or "").upper() or "unknown"
    acquisition = acquisition if acquisition in ("2D", "3D") else "unknown"
    weighting = weighting_of(header, series.echoes)
    contrast = contrast_of(header)
    evidence = "; ".join(
        e
        for e in (
            contrast.evidence,
            f"weighting from {weighting.evidence}" if weighting.evidence else "",
        )
        if e
    )

    def verdict(reason: str) -> Assessment:
        return Assessment(
            not reason,
            orientation,
            acquisition,
            weighting.value,
            contrast.value,
            evidence,
            reason,
            contrast.kind,
        )

    modality = str(header.get("Modality", "") or "")
    sop_class = str(header.get("SOPClassUID", "") or "")
    if modality != "MR":
        return verdict(f"modality {modality or 'missing'} (not MR)")
    if sop_class.startswith(SECONDARY_CAPTURE):
        return verdict("secondary capture")
    if str(header.get("BurnedInAnnotation", "") or "").upper() == "YES":
        return verdict("burned-in annotation")
    if "LOCALIZER" in image_type or LOCALIZER.search(text):
        return verdict("localizer")
    derived = [t for t in image_type if t in DERIVED_TYPES]
    if derived:
        return verdict(f"derived image (ImageType {'/'.join(derived)})")
    if orientation == "unknown":
        return verdict("no ImageOrientationPatient")
    if weighting.value not in ("T1", "unknown"):
        return verdict(f"{weighting.value}, not a T1 ({weighting.evidence})")
    if series.frames < MIN_SLICES:
        return verdict(f"{series.frames} slices (< {MIN_SLICES}: not a brain volume)")
    gap = missing_slice(series)
    if gap:
        return verdict(gap)
    return verdict("")


def missing_slice(series: Series) -> str:
    """Why the slice positions show a hole ('' when evenly spaced): a gap over 1.5 times the
    usual spacing along the slice normal means a slice (file) is missing from the export."""
    if series.orientation is None or series.mosaic_images or len(series.positions) < 3:
        return ""
    normal = np.cross(series.orientation[:3], series.orientation[3:])
    steps = np.diff(np.sort(series.positions @ normal))
    steps = steps[steps > 1e-3]  # several frames at one position (echoes, phases) are not gaps
    if len(steps) < 2:
        return ""
    usual = float(np.median(steps))
    largest = float(steps.max())
    if largest > 1.5 * usual:
        return (
            f"a slice is missing (a gap of {largest:.1f} mm where slices are {usual:.1f} mm apart)"
        )
    return ""


@dataclasses.dataclass(frozen=True)
class Choice:
    """A study's pick: the chosen series index (or None), why it is uncertain, per-series decisions.

    Attributes:
        warning: why nothing was chosen, or why the choice is uncertain ('' when it is not).
        alternatives: the other candidates, best first (tried if conversion fails).
    """

    chosen: int | None
    warning: str
    decisions: list[tuple[Assessment, str]]
    alternatives: tuple[int, ...] = ()


def _infer_from_order(assessed: list[Assessment]) -> list[Assessment]:
    """A series saying nothing about contrast, acquired after one whose own header or description
    says post-contrast, is post-contrast by acquisition order (weaker evidence, ranked lower)."""
    out, seen_post = [], False
    for assessment in assessed:
        if assessment.contrast == "post" and assessment.contrast_evidence in EXPLICIT_CONTRAST:
            seen_post = True
        elif assessment.contrast == "unknown" and seen_post:
            evidence = "; ".join(
                e for e in ("acquired after a post-contrast series", assessment.evidence) if e
            )
            assessment = dataclasses.replace(
                assessment,
                contrast="post",
                evidence=evidence,
                contrast_evidence="acquisition order",
            )
        out.append(assessment)
    return out


def _rank(assessment: Assessment, frames: int) -> tuple[int, int, int, int]:
    """Explicit contrast evidence first, then sagittal, then 3D, then more slices."""
    return (
        assessment.contrast_evidence in EXPLICIT_CONTRAST,
        assessment.orientation == "sagittal",
        assessment.acquisition == "3D",
        frames,
    )


def uncertainty(assessment: Assessment) -> str:
    """Why picking this candidate is uncertain ( when the series' own header says post-contrast
    and it is sagittal)."""
    reasons = []
    if assessment.contrast_evidence not in EXPLICIT_CONTRAST:
        reasons.append("post-contrast only by acquisition order (the series itself does not say)")
    if assessment.orientation != "sagittal":
        reasons.append(
            f"no sagittal post-contrast T1; fell back to {assessment.orientation} {assessment.acquisition}"
        )
    return "; ".join(reasons)


def _not_chosen(assessment: Assessment) -> str:
    if not assessment.usable:
        return "rejected" if assessment.weighting in ("T1", "unknown") else "not T1"
    if assessment.weighting != "T1":
        return "not T1 (weighting not stated)"
    return "not post-contrast"


def choose(study: Sequence[Series], override: int | None = None) -> Choice:
    """Pick one series of a study (series in acquisition order).

    Only a series that is positively T1-weighted and post-contrast can be picked. Ranking: the
    series' own contrast evidence (header or description) before acquisition order, then
    sagittal, 3D and more slices; ties go to the earlier series. A pick resting on acquisition
    order or on a non-sagittal plane is returned with a warning (uncertain). ``override`` (a
    SeriesNumber) wins.
    """
    assessed = _infer_from_order([assess(s) for s in study])
    if override is not None:
        matches = [i for i, s in enumerate(study) if s.series_number == override]
        if not matches:
            return Choice(
                None,
                f"override series {override} not found in the study",
                [(a, "rejected") for a in assessed],
            )
        chosen = max(matches, key=lambda i: study[i].frames)
        decisions = [
            (a, "selected (override table)" if i == chosen else "not selected")
            for i, a in enumerate(assessed)
        ]
        return Choice(chosen, "", decisions)
    candidates = [
        i
        for i, a in enumerate(assessed)
        if a.usable and a.contrast == "post" and a.weighting == "T1"
    ]
    if not candidates:
        return Choice(
            None,
            "no post-contrast T1 series (" + _summary(assessed) + ")",
            [(a, _not_chosen(a)) for a in assessed],
        )
    ranked = sorted(
        candidates, key=lambda i: (_rank(assessed[i], study[i].frames), -i), reverse=True
    )
    chosen = ranked[0]
    warning = uncertainty(assessed[chosen])
    decisions = []
    for i, a in enumerate(assessed):
        if i == chosen:
            decisions.append((a, "selected (uncertain)" if warning else "selected"))
        elif i in candidates:
            decisions.append((a, "not selected (lower rank)"))
        else:
            decisions.append((a, _not_chosen(a)))
    return Choice(chosen, warning, decisions, tuple(ranked[1:]))


def _summary(assessed: list[Assessment]) -> str:
    """What the study held instead, e.g. ``2 T1 without post-contrast evidence, 1 field map``."""
    counts: dict[str, int] = {}
    for a in assessed:
        if not a.usable and a.weighting in ("T1", "unknown"):
            what = f"unusable ({a.reason.split(' (')[0]})"
        elif a.weighting == "T1":
            what = "T1 without post-contrast evidence"
        elif a.weighting == "unknown":
            what = "weighting not stated"
        else:
            what = a.weighting
        counts[what] = counts.get(what, 0) + 1
    return ", ".join(f"{n} {what}" for what, n in counts.items())


def read_overrides(path: Path) -> dict[str, int]:
    """The override table (CSV/TSV ``study,series_number``) -> {study key: SeriesNumber}.

    ``study`` is a StudyInstanceUID, an accession number or a patient ID.
    """
    columns, rows = read_table(Path(path), "override table")
    if not {"study", "series_number"} <= set(columns):
        raise SihnetError(f"override table {Path(path).name} needs columns study,series_number")
    try:
        return {row["study"]: int(row["series_number"]) for row in rows}
    except ValueError:
        raise SihnetError(
            f"override table {Path(path).name}: series_number must be an integer"
        ) from None
