"""``sihnet measure``: read the Bern items of each scan of a manifest or a list of images.

Writes into ``OUT``::

    measurements.csv        one row per scan: the six items, the Bern score, the continuous
                            measures, the alignment's quality, "not measured: why"
    readings/<name>.json    everything the reader read (schema ``sihnet.schemas.Reading``)
    pictures/<name>.png     the mid-sagittal measurement picture
    markups/<name>.mrk.json the landmarks and distances for 3D Slicer
    measure.json            the names this command wrote (a rerun replaces exactly those)

``<name>`` is the manifest's ``patient_id`` made file-safe and unique (``_2``... for a patient's
further scans), or ``scan_<position>`` for images named on the command line: never a file or DICOM
folder name. A folder holding anything an earlier ``sihnet measure`` did not write is refused
before a scan is read. Readings are cached by image content (``reading/`` in the volume cache).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from sihnet.atomic import write_json_atomic
from sihnet.bern import FIELDS
from sihnet.errors import SihnetError
from sihnet.hashing import text_sha256
from sihnet.ingest.resolve import convert_dicom_inputs
from sihnet.outputs import check_output_folder
from sihnet.paths import MeasurePaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.reader.image import load_scan, read_image
from sihnet.reader.markups import markups_of
from sihnet.reader.picture import write_picture
from sihnet.reader.profiles import Scan
from sihnet.reader.reading import SIGN_MEASURES, why_not_measured
from sihnet.schemas import MeasureRecord, Reading, read_json
from sihnet.tables import write_table

log = logging.getLogger(__name__)

COLUMNS = (
    "name",
    "patient_id",
    "problem",
    "not_measured",
    *FIELDS,
    "bern_score",
    "bern_score_min",
    "bern_score_max",
    *SIGN_MEASURES,
    "alignment_correlation",
)


@dataclasses.dataclass(frozen=True)
class MeasureSummary:
    """What ``run_measure`` wrote: the table, and how many scans were read or not."""

    table: Path
    read: int
    not_measured: int
    failed: int


def _row(name: str, patient: str, reading: Reading) -> dict[str, object]:
    row: dict[str, object] = {"name": name, "patient_id": patient, "problem": reading.problem}
    row["not_measured"] = why_not_measured(reading)
    for field in FIELDS:
        value = reading.items.get(field)
        row[field] = "" if value is None else value
    complete = (
        reading.bern_score_min is not None and reading.bern_score_min == reading.bern_score_max
    )
    row["bern_score"] = reading.bern_score_min if complete else ""
    row["bern_score_min"] = "" if reading.bern_score_min is None else reading.bern_score_min
    row["bern_score_max"] = "" if reading.bern_score_max is None else reading.bern_score_max
    for measure in SIGN_MEASURES:
        value = reading.measures[measure].value if measure in reading.measures else None
        row[measure] = "" if value is None else round(value, 3)
    row["alignment_correlation"] = (
        "" if reading.alignment_correlation is None else round(reading.alignment_correlation, 3)
    )
    return row


NAME_LENGTH = 64  # an output name's longest (a patient id may be longer than a file name can be)


def _names(patients: Sequence[str]) -> list[str]:
    """Unique, file-safe output names: the patient id with unsafe characters replaced, no leading
    dot (no hidden files, never ``..``), cut to ``NAME_LENGTH`` with a hash of the whole id when
    longer, and ``_2``, ``_3``... until unused (ids ``x``, ``x``, ``x_2`` give three names)."""
    used: set[str] = set()
    names = []
    for patient in patients:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", patient).lstrip(".") or "scan"
        if len(safe) > NAME_LENGTH:
            safe = f"{safe[: NAME_LENGTH - 9]}_{text_sha256(patient)[:8]}"
        name, k = safe, 2
        while name.lower() in used:  # case-insensitive file systems too
            name, k = f"{safe}_{k}", k + 1
        used.add(name.lower())
        names.append(name)
    return names


def _prepare(out: Path, names: list[str]) -> MeasurePaths:
    """The output folder, ready: refused when it holds files no earlier ``sihnet measure`` wrote
    or cannot be written (before any scan is read); an earlier measure's outputs removed (only
    the files its ``measure.json`` names), and this run's names recorded.

    Raises:
        SihnetError: one line naming the folder or the file.
    """
    paths = MeasurePaths(out)
    check_output_folder(out, "measure")
    if out.exists() and not out.is_dir():
        raise SihnetError(f"--out {out.name} is a file; give a folder")
    earlier: list[str] = []
    if paths.record.is_file():
        earlier = read_json(paths.record, MeasureRecord).names
    elif out.is_dir() and any(out.iterdir()):
        raise SihnetError(
            f"--out {out.name} holds files that no earlier 'sihnet measure' wrote; "
            "give a new or empty folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in earlier:
            for stale in paths.outputs(name):
                stale.unlink(missing_ok=True)
        paths.table.unlink(missing_ok=True)
        for name in names:
            for planned in paths.outputs(name):
                if planned.exists():
                    raise SihnetError(
                        f"--out {out.name}: {planned.parent.name}/{planned.name} was not written "
                        "by an earlier 'sihnet measure'; give a new or empty folder"
                    )
        record = MeasureRecord(command="sihnet measure", names=names)
        write_json_atomic(paths.record, record.model_dump(mode="json"))
    except OSError as error:
        raise SihnetError(f"--out {out.name} cannot be written ({error.strerror})") from None
    return paths


def run_measure(scans: Sequence[tuple[str, Path]], out: Path, cache: VolumeCache) -> MeasureSummary:
    """Read every ``(patient_id or "", image)`` and write ``OUT`` (module docstring); a scan that
    cannot be read is one line in the log and a row saying why, and the others are read. The table
    is written whatever happens to one scan's files."""
    patients = [p or f"scan_{i + 1}" for i, (p, _) in enumerate(scans)]
    names = _names(patients)
    paths = _prepare(Path(out), names)
    convert_dicom_inputs([image for _, image in scans], cache)
    rows: list[dict[str, object]] = []
    failed = not_measured = 0
    try:
        for number, (name, (patient, image)) in enumerate(zip(names, scans, strict=True), 1):
            log.info("measuring %d of %d: %s", number, len(scans), name)
            try:
                scan = load_scan(image, cache)
                reading = read_image(image, cache, scan)
            except SihnetError as error:
                log.error("%s: %s", name, error)
                rows.append({"name": name, "patient_id": patient, "problem": f"not read: {error}"})
                failed += 1
                continue
            row = _row(name, patient, reading)
            if reading.problem:
                log.warning("%s: %s", name, reading.problem)
                not_measured += 1
            else:
                try:
                    _write_outputs(paths, name, reading, scan)
                except OSError as error:
                    log.error("%s: its files could not be written (%s)", name, error.strerror)
                    row["problem"] = f"not written: {error.strerror}"
                    failed += 1
            rows.append(row)
    finally:
        write_table(paths.table, COLUMNS, rows)
    return MeasureSummary(paths.table, len(rows) - failed - not_measured, not_measured, failed)


def _write_outputs(paths: MeasurePaths, name: str, reading: Reading, scan: Scan) -> None:
    write_json_atomic(paths.reading(name), reading.model_dump(mode="json"))
    write_json_atomic(paths.markups(name), markups_of(reading))
    write_picture(paths.picture(name), scan, reading)
