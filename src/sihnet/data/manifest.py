"""Cohort manifest (docs/run-folder.md contract): CSV/TSV or a BIDS root -> validated :class:`Cohort`.

Every problem (missing column, unknown label, missing file, duplicate row, a patient with two
labels, an image listed for two patients) is reported as one line naming the row, before any
training starts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from sihnet.bern import BY_NAME, DISTANCE_FIELDS, FIELDS, SIGN_FIELDS
from sihnet.errors import SihnetError
from sihnet.tables import read_table

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patient_id", "image")
DEMOGRAPHIC_COLUMNS = ("age", "sex", "site", "days_mri_to_dsm")
OPTIONAL_COLUMNS = (
    "label",
    "age",
    "sex",
    "days_mri_to_dsm",
    "site",
    "slec",
    *FIELDS,
)
# Plausible ranges of the other measurement columns (a value outside is a typing or unit error).
PLAUSIBLE = {"age": (0.0, 120.0), "days_mri_to_dsm": (-3650.0, 3650.0)}
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# A number as people write it: "3.5", "-2", "1e3"; not "3_5" (Python's float() reads it as 35).
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
FORMULA_START = ("=", "+", "-", "@")  # a cell a spreadsheet would run as a formula


@dataclasses.dataclass(frozen=True)
class Scan:
    """One manifest row.

    Attributes:
        patient_id: the grouping key of every split.
        image: absolute path of a NIfTI file or a DICOM folder.
        label: 1 fistula, 0 no fistula, None when the manifest has no label for it.
        row: line number in the manifest file (header is line 1).
        fields: the optional columns as given (text), e.g. ``site`` or the Bern columns.
    """

    patient_id: str
    image: Path
    label: int | None
    row: int
    fields: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Cohort:
    """Validated scans plus what was excluded (counted per patient)."""

    scans: tuple[Scan, ...]
    source: Path
    excluded_indeterminate: int = 0
    excluded_slec: int = 0

    @property
    def patient_ids(self) -> list[str]:
        """Patient ids in manifest order, each once."""
        return list(dict.fromkeys(scan.patient_id for scan in self.scans))

    def patient_labels(self) -> dict[str, int | None]:
        """Label per patient (all scans of a patient share it)."""
        return {scan.patient_id: scan.label for scan in self.scans}

    def demographics(self) -> dict[str, dict[str, str]]:
        """``age``, ``sex``, ``site``, ``days_mri_to_dsm`` per patient where the manifest has them."""
        out: dict[str, dict[str, str]] = {}
        for scan in self.scans:
            for column in DEMOGRAPHIC_COLUMNS:
                value = scan.fields.get(column, "").strip()
                if value:
                    out.setdefault(scan.patient_id, {}).setdefault(column, value)
        return out

    def describe(self) -> str:
        """``129 patients (129 scans); excluded: 0 indeterminate, 0 SLEC``."""
        return (
            f"{len(self.patient_ids)} patients ({len(self.scans)} scans); excluded: "
            f"{self.excluded_indeterminate} indeterminate, {self.excluded_slec} SLEC"
        )

    def scans_of(self, patient_ids: set[str]) -> list[Scan]:
        return [scan for scan in self.scans if scan.patient_id in patient_ids]

    def bern_fields(self) -> dict[str, dict[str, str]]:
        """Bern columns per patient (first non-empty value over the patient's rows); patients
        without any Bern value are left out."""
        fields: dict[str, dict[str, str]] = {}
        for scan in self.scans:
            for column in FIELDS:
                value = scan.fields.get(column, "").strip()
                if value:
                    fields.setdefault(scan.patient_id, {}).setdefault(column, value)
        return fields


class _Problems:
    """Collects row problems and raises one line: the first problem and how many more."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, row: int | None, message: str) -> None:
        where = f"row {row}: " if row is not None else ""
        self.lines.append(f"{where}{message}")

    def raise_if_any(self) -> None:
        if self.lines:
            for line in self.lines[1:]:  # every problem named, the first in the error itself
                log.error("manifest %s: %s", self.source.name, line)
            more = (
                f" (+{len(self.lines) - 1} more problems, named above)"
                if len(self.lines) > 1
                else ""
            )
            raise SihnetError(f"manifest {self.source.name}: {self.lines[0]}{more}")


def parse_label(text: str) -> int | str | None:
    """``1``/``0`` (also ``1.0``), ``indeterminate``, None for empty, ``?`` for anything else."""
    value = text.strip().lower()
    if value == "":
        return None
    if value in ("indeterminate",):
        return "indeterminate"
    try:
        number = float(value)
    except ValueError:
        return "?"
    return int(number) if number in (0.0, 1.0) else "?"


def _check_optional(row: int, fields: Mapping[str, str], problems: _Problems) -> None:
    for column in SIGN_FIELDS:
        value = fields.get(column, "").strip()
        if value and value not in ("0", "1", "0.0", "1.0"):
            problems.add(row, f"{column} must be 0, 1 or empty, got {value!r}")
    ranges = {name: BY_NAME[name].plausible_mm for name in DISTANCE_FIELDS} | PLAUSIBLE
    for column, (low, high) in ranges.items():  # type: ignore[misc]
        value = fields.get(column, "").strip()
        if value:
            if not NUMBER.fullmatch(value):
                problems.add(row, f"{column} must be a number, got {value!r}")
                continue
            number = float(value)
            if not math.isfinite(number) or (column != "days_mri_to_dsm" and number < 0):
                problems.add(row, f"{column} must be a finite non-negative number, got {value!r}")
            elif not low <= number <= high:
                problems.add(
                    row, f"{column} {value} is outside the plausible range {low:g}–{high:g}"
                )


def _bids_rows(root: Path) -> tuple[list[str], list[dict[str, str]], Path]:
    """Rows of a BIDS dataset: participants.tsv joined with ``sub-*/[ses-*/]anat/*ce-*_T1w.nii*``
    (hidden files, such as a write interrupted by a kill, are ignored)."""
    participants = root / "participants.tsv"
    columns, table = read_table(participants, "participants table")
    by_subject = {r.get("participant_id", ""): r for r in table}
    rows: list[dict[str, str]] = []
    for subject_dir in sorted(root.glob("sub-*")):
        images = sorted(
            p
            for p in subject_dir.glob("**/anat/*_T1w.nii*")
            if "_ce-" in p.name and p.name.endswith(NIFTI_SUFFIXES) and not p.name.startswith(".")
        )
        extra = by_subject.get(subject_dir.name, {})
        for image in images:
            row = {k: v for k, v in extra.items() if k != "participant_id"}
            row.update(patient_id=subject_dir.name, image=str(image.relative_to(root)))
            rows.append(row)
    if not rows:
        raise SihnetError(f"BIDS dataset {root.name}: no contrast-enhanced T1w images (ce-*)")
    names = ["patient_id", "image", *[c for c in columns if c != "participant_id"]]
    return names, rows, participants


def _table(path: Path) -> tuple[list[str], list[dict[str, str]], Path, Path]:
    """Columns, rows, the source file and the folder image paths are relative to."""
    if path.is_dir():
        if not (path / "participants.tsv").is_file():
            raise SihnetError(f"{path.name} is a folder without participants.tsv (not BIDS)")
        columns, rows, source = _bids_rows(path)
        return columns, rows, source, path
    if not path.is_file():
        raise SihnetError(f"manifest {path} does not exist")
    columns, rows = read_table(path, "manifest")
    return columns, rows, path, path.parent


def _check_identity(index: int, patient_id: str, image_text: str, problems: _Problems) -> bool:
    """A usable patient_id and image column (no control characters, no spreadsheet formula)."""
    if not patient_id:
        problems.add(index, "empty patient_id")
    elif any(ord(c) < 32 for c in patient_id):
        problems.add(index, "patient_id contains a line break or control character")
    elif patient_id[0] in FORMULA_START:
        problems.add(
            index, f"patient_id must not start with {patient_id[0]!r} (a spreadsheet formula)"
        )
    elif not image_text:
        problems.add(index, "empty image")
    else:
        return True
    return False


def _check_image(index: int, image: Path, image_text: str, root: Path, problems: _Problems) -> bool:
    """The image exists and is a regular NIfTI file or a folder (never a FIFO, device or loop)."""
    try:
        exists, is_dir, is_file = image.exists(), image.is_dir(), image.is_file()
    except OSError as error:
        problems.add(
            index, f"image cannot be read ({error.strerror or type(error).__name__}): {image_text}"
        )
        return False
    if not exists:
        problems.add(index, f"image not found: {image_text}")
    elif not (is_dir or is_file):
        problems.add(index, f"image is not a regular file or folder: {image_text}")
    elif is_file and not image.name.lower().endswith(NIFTI_SUFFIXES):
        problems.add(index, f"image must be .nii, .nii.gz or a DICOM folder: {image_text}")
    elif not os.access(image, os.R_OK):
        problems.add(index, f"image is not readable (permission denied): {image_text}")
    else:
        return True
    return False


@dataclasses.dataclass
class _Reading:
    """State while reading a manifest's rows."""

    problems: _Problems
    scans: list[Scan] = dataclasses.field(default_factory=list)
    seen_rows: dict[tuple[str, Path], int] = dataclasses.field(default_factory=dict)
    image_owner: dict[Path, tuple[str, int]] = dataclasses.field(default_factory=dict)
    patient_label: dict[str, tuple[int | None, int]] = dataclasses.field(default_factory=dict)
    indeterminate: set[str] = dataclasses.field(default_factory=set)
    slec: set[str] = dataclasses.field(default_factory=set)
    outside: list[int] = dataclasses.field(default_factory=list)

    def claim(self, index: int, patient_id: str, image: Path) -> bool:
        """One row per (patient, image); one patient per image file."""
        key = (patient_id, image)
        if key in self.seen_rows:
            self.problems.add(
                index, f"duplicate of row {self.seen_rows[key]} (same patient_id and image)"
            )
            return False
        self.seen_rows[key] = index
        owner = self.image_owner.get(image)
        if owner is not None and owner[0] != patient_id:
            self.problems.add(index, f"image also listed for another patient at row {owner[1]}")
            return False
        self.image_owner[image] = (patient_id, index)
        return True

    def label(self, index: int, patient_id: str, label: int | None) -> bool:
        """All rows of a patient carry the same label."""
        first = self.patient_label.setdefault(patient_id, (label, index))
        if first[0] != label:
            self.problems.add(index, f"patient has a different label at row {first[1]}")
            return False
        return True


def _read_row(
    index: int,
    raw: dict[str, str],
    columns: list[str],
    base: Path,
    reading: _Reading,
    require_labels: bool,
    require_images: bool = True,
) -> None:
    problems, root = reading.problems, base.resolve()
    patient_id, image_text = raw.get("patient_id", ""), raw.get("image", "")
    if not _check_identity(index, patient_id, image_text, problems):
        return
    label = parse_label(raw.get("label", ""))
    if label == "?":
        problems.add(index, f"unknown label {raw.get('label')!r} (use 1, 0 or indeterminate)")
        return
    slec_value = raw.get("slec", "").strip()
    if slec_value not in ("", "0", "1", "0.0", "1.0"):
        problems.add(index, f"slec must be 0, 1 or empty, got {slec_value!r}")
        return
    image = (base / image_text).resolve()
    if not reading.claim(index, patient_id, image) or (
        require_images and not _check_image(index, image, image_text, root, problems)
    ):
        return
    if not image.is_relative_to(root):
        reading.outside.append(index)
    fields = {c: raw.get(c, "") for c in columns if c not in ("patient_id", "image", "label")}
    _check_optional(index, fields, problems)
    if slec_value in ("1", "1.0"):
        reading.slec.add(patient_id)
    elif label == "indeterminate":
        reading.indeterminate.add(patient_id)
    elif label is None and require_labels:
        problems.add(index, "empty label (use 1, 0 or indeterminate)")
    elif reading.label(index, patient_id, label if isinstance(label, int) else None):
        reading.scans.append(
            Scan(patient_id, image, label if isinstance(label, int) else None, index, fields)
        )


def read_manifest(path: Path, require_labels: bool = True, require_images: bool = True) -> Cohort:
    """Read and validate a manifest (CSV/TSV file or BIDS root).

    Args:
        path: the manifest file; image paths are relative to its folder. A folder holding
            ``participants.tsv`` is read as a BIDS dataset.
        require_labels: every kept row must carry label 0 or 1 (training, evaluation).
        require_images: every image must exist and be readable; False leaves that to the command
            (``sihnet measure`` reads the others and says, per row, which could not be read).

    Returns:
        The cohort with ``indeterminate`` and SLEC patients excluded and counted.

    Raises:
        SihnetError: one line naming the first bad row (and how many more there are).
    """
    columns, rows, source, base = _table(Path(path))
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if require_labels and "label" not in columns:
        missing.append("label")
    if missing:
        raise SihnetError(f"manifest {source.name}: missing column(s) {', '.join(missing)}")
    if not rows:
        raise SihnetError(f"manifest {source.name} has no rows")
    reading = _Reading(_Problems(source))
    for index, raw in enumerate(rows, start=2):
        _read_row(index, raw, columns, base, reading, require_labels, require_images)
    reading.problems.raise_if_any()
    if reading.outside:
        rows_text = ", ".join(str(r) for r in reading.outside[:5])
        more = ", …" if len(reading.outside) > 5 else ""
        log.warning(
            "%d image(s) lie outside the manifest's folder tree (row %s%s)",
            len(reading.outside),
            rows_text,
            more,
        )
    # A patient with one indeterminate/SLEC row and one kept row is excluded entirely.
    excluded = reading.indeterminate | reading.slec
    kept = tuple(scan for scan in reading.scans if scan.patient_id not in excluded)
    if not kept:
        raise SihnetError(f"manifest {source.name}: no patients left after exclusions")
    return Cohort(
        scans=kept,
        source=source,
        excluded_indeterminate=len(reading.indeterminate - reading.slec),
        excluded_slec=len(reading.slec),
    )
