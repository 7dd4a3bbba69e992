"""Pick, per study, the series the model was trained on: a sagittal post-contrast T1, 3D preferred.

Every series gets an :class:`Assessment` (orientation, 2D/3D, weighting, contrast and the evidence
for it, or why it cannot be used); reasons name only DICOM keywords, coded values and matched
keywords, never a free-text header value, so ``selection.tsv`` carries no PHI.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sihnet.ingest.discover import Series

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

# Description keywords (English and German), matched on lower-cased SeriesDescription/ProtocolName.
LOCALIZER = re.compile(
    r"locali[sz]er|\bscout|\bsurvey|3[ -]?plane|tri[- ]?pilot|\bpilot|aahead|planung|\bloc\b"
)
PRE = re.compile(
    r"\bpre\b|\bprecontrast|\bnativ|\bnative\b|ohne\s*km|vor\s*km|\bw/?o\s*(?:gd|contrast)|\bnon[- ]?contrast"
)
POST = re.compile(
    r"\bpost|\+\s*c\b|\+\s*gd|\+\s*km|\bgd\b|gado|\bgad\b|\bkm\b|nach\s*km|mit\s*km|\bce\b|contrast|kontrast|\bmdc\b|\bc\+"
)
T1 = re.compile(
    r"t1|mp-?rage|mp\s*rage|spgr|bravo|vibe|\btfl|fl3d|\btfe|\bffe|\bflash|\bmprage|\bse\s*t1"
)
NOT_T1 = re.compile(
    r"t2|flair|\bdwi|diff|\bswi|\btof|\bdti|\badc|\bbold|\bepi\b|perf|\bpd\b|stir|\bt2\*"
)
ORIENTATIONS = ("sagittal", "coronal", "axial")


@dataclasses.dataclass(frozen=True)
class Assessment:
    """What a series is and whether it can be the model's input.

    Attributes:
        usable: MR image series that is not a localizer, derived, or annotated.
        orientation: ``sagittal``/``coronal``/``axial``/``oblique?``/``unknown``.
        acquisition: ``3D``, ``2D`` or ``unknown`` (MRAcquisitionType).
        weighting: ``T1``, ``other`` or ``unknown``; contrast: ``post``, ``pre`` or ``unknown``.
        evidence: why the contrast/weighting call was made; reason: why unusable ('' if usable).
    """

    usable: bool
    orientation: str
    acquisition: str
    weighting: str
    contrast: str
    evidence: str
    reason: str


def _text(series: Series) -> str:
    header = series.header
    return " ".join(
        str(header.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName")
    ).lower()


def orientation_of(cosines: np.ndarray | None) -> str:
    """Plane of a slice from its row/column cosines (LPS): the axis its normal is closest to."""
    if cosines is None:
        return "unknown"
    normal = np.cross(cosines[:3], cosines[3:])
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 0.5:
        return "unknown"
    axis = int(np.argmax(np.abs(normal)))
    return ORIENTATIONS[axis]


def _contrast_agent(series: Series) -> bool:
    header = series.header
    for key in ("ContrastBolusAgent", "ContrastBolusIngredient"):
        value = str(header.get(key, "") or "").strip().lower()
        if value and value not in ("none", "no", "n", "0", "nein", "ohne"):
            return True
    groups = [header]
    for key in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if header.get(key):
            groups.append(header.get(key)[0])  # enhanced MR: contrast usage lives in the groups
    for group in groups:
        for key in ("ContrastBolusAgentSequence", "ContrastBolusUsageSequence"):
            if group.get(key):
                usage = group.get(key)[0]
                administered = str(usage.get("ContrastBolusAgentAdministered", "YES")).upper()
                return administered != "NO"
    return False


def _weighting(series: Series, text: str) -> tuple[str, str]:
    header = series.header
    if re.search(r"t1(?!\d)", text) or (T1.search(text) and not NOT_T1.search(text)):
        return "T1", "description"  # an explicit 'T1' wins (e.g. GE's T1-FLAIR)
    if NOT_T1.search(text):
        return "other", "description"

    def number(key: str) -> float | None:
        try:
            value = header.get(key)
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    tr, te, ti = number("RepetitionTime"), number("EchoTime"), number("InversionTime")
    if tr is not None and te is not None:
        if tr <= 800 and te <= 30:
            return "T1", "TR/TE"
        if ti is not None and 300 <= ti <= 1300 and tr <= 3000 and te <= 10:
            return "T1", "TR/TE/TI (MPRAGE-like)"
        return "other", "TR/TE"
    return "unknown", ""


def assess(series: Series) -> Assessment:
    """Classify one series (see :class:`Assessment`); a header that cannot be parsed is unusable."""
    try:
        return _assess(series)
    except Exception as error:  # malformed values surface lazily in pydicom, with many types
        reason = f"unreadable header fields ({type(error).__name__})"
        return Assessment(False, "unknown", "unknown", "unknown", "unknown", "", reason)


def _assess(series: Series) -> Assessment:
    header = series.header
    text = _text(series)
    raw_type = header.get("ImageType") or []
    raw_type = str(raw_type).split("\\") if isinstance(raw_type, (str, bytes)) else raw_type
    image_type = [str(v).strip().upper() for v in raw_type]
    orientation = orientation_of(series.orientation)
    acquisition = str(header.get("MRAcquisitionType", "") or "").upper() or "unknown"
    acquisition = acquisition if acquisition in ("2D", "3D") else "unknown"
    weighting, weighting_evidence = _weighting(series, text)
    pre, post = PRE.search(text), POST.search(text)
    if pre:
        contrast, evidence = "pre", f"description '{pre.group(0).strip()}'"
    elif _contrast_agent(series):
        contrast, evidence = "post", "ContrastBolusAgent/Ingredient set"
    elif post:
        contrast, evidence = "post", f"description '{post.group(0).strip()}'"
    else:
        contrast, evidence = "unknown", ""
    if weighting_evidence:
        evidence = "; ".join(e for e in (evidence, f"weighting from {weighting_evidence}") if e)

    def unusable(reason: str) -> Assessment:
        return Assessment(False, orientation, acquisition, weighting, contrast, evidence, reason)

    modality = str(header.get("Modality", "") or "")
    sop_class = str(header.get("SOPClassUID", "") or "")
    if modality != "MR":
        return unusable(f"modality {modality or 'missing'} (not MR)")
    if sop_class.startswith(SECONDARY_CAPTURE):
        return unusable("secondary capture")
    if str(header.get("BurnedInAnnotation", "") or "").upper() == "YES":
        return unusable("burned-in annotation")
    if "LOCALIZER" in image_type or LOCALIZER.search(text):
        return unusable("localizer")
    derived = [t for t in image_type if t in DERIVED_TYPES]
    if derived:
        return unusable(f"derived image (ImageType {'/'.join(derived)})")
    if orientation == "unknown":
        return unusable("no ImageOrientationPatient")
    if series.frames < MIN_SLICES:
        return unusable(f"{series.frames} slices (< {MIN_SLICES}: not a brain volume)")
    return Assessment(True, orientation, acquisition, weighting, contrast, evidence, "")


@dataclasses.dataclass(frozen=True)
class Choice:
    """A study's pick: the chosen series index (or None), a warning, and per-series decisions."""

    chosen: int | None
    warning: str
    decisions: list[tuple[Assessment, str]]
    alternatives: tuple[int, ...] = ()  # the other candidates, best first (if conversion fails)


def _rank(assessment: Assessment, frames: int) -> tuple[int, int, int, int]:
    return (
        assessment.orientation == "sagittal",
        assessment.acquisition == "3D",
        assessment.weighting == "T1",
        frames,
    )


def choose(study: Sequence[Series], override: int | None = None) -> Choice:
    """Pick one series of a study (series in acquisition order).

    Post-contrast T1 only (``unknown`` weighting accepted when post-contrast); a series acquired
    after a post-contrast series with unknown contrast counts as post-contrast (acquisition order).
    Ranking: sagittal, then 3D, then a T1 call, then more slices. A non-sagittal pick carries a
    warning. ``override`` (a SeriesNumber) wins.
    """
    assessed = [assess(s) for s in study]
    seen_post = False
    for index, assessment in enumerate(assessed):
        if assessment.contrast == "post" and assessment.usable:
            seen_post = True
        elif assessment.contrast == "unknown" and seen_post:
            evidence = "; ".join(
                e for e in ("acquired after a post-contrast series", assessment.evidence) if e
            )
            assessed[index] = dataclasses.replace(assessment, contrast="post", evidence=evidence)
    decisions: list[tuple[Assessment, str]] = []
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
        if a.usable and a.contrast == "post" and a.weighting in ("T1", "unknown")
    ]
    if not candidates:
        return Choice(
            None,
            "no post-contrast T1 series",
            [(a, "rejected" if not a.usable else "not post-contrast T1") for a in assessed],
        )
    ranked = sorted(
        candidates, key=lambda i: (_rank(assessed[i], study[i].frames), i), reverse=True
    )
    chosen = ranked[0]
    best = assessed[chosen]
    warning = ""
    if best.orientation != "sagittal":
        warning = (
            f"no sagittal post-contrast T1; fell back to {best.orientation} {best.acquisition}"
        )
    for i, a in enumerate(assessed):
        if i == chosen:
            decisions.append((a, "selected" if not warning else "selected (fallback)"))
        elif not a.usable:
            decisions.append((a, "rejected"))
        elif i in candidates:
            decisions.append((a, "not selected (lower rank)"))
        else:
            decisions.append((a, "not post-contrast T1"))
    return Choice(chosen, warning, decisions, tuple(ranked[1:]))


def read_overrides(path: Path) -> dict[str, int]:
    """The override table (CSV/TSV ``study,series_number``) -> {study key: SeriesNumber}.

    ``study`` is a StudyInstanceUID, an accession number or a patient ID.
    """
    from sihnet.data.manifest import _read_table
    from sihnet.errors import SihnetError

    columns, rows = _read_table(Path(path))
    if not {"study", "series_number"} <= set(columns):
        raise SihnetError("--override table needs columns study,series_number")
    try:
        return {row["study"].strip(): int(row["series_number"].strip()) for row in rows}
    except ValueError:
        raise SihnetError("--override: series_number must be an integer") from None
