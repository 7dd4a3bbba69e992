"""``sihnet measure``: read the Bern items of each scan of a manifest or a list of images.

Writes into ``OUT``::

    measurements.csv        one row per scan: the six items, the Bern score, the continuous
                            measures, the alignment's quality, "not measured: why"
    readings/<name>.json    everything the reader read (schema ``sihnet.schemas.Reading``)
    pictures/<name>.png     the mid-sagittal measurement picture
    markups/<name>.mrk.json the landmarks and distances for 3D Slicer

``<name>`` is the manifest's ``patient_id`` (with ``_2``... for a patient's further scans), or
``scan_<position>`` for images named on the command line: never a file or DICOM folder name.
Readings are cached by image content (``reading/`` in the volume cache).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sihnet.atomic import write_json_atomic
from sihnet.bern import FIELDS
from sihnet.errors import SihnetError
from sihnet.hashing import text_sha256
from sihnet.outputs import check_output_folder
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache, check_input
from sihnet.preprocessing.volume import load_volume
from sihnet.reader.markups import markups_of
from sihnet.reader.picture import write_picture
from sihnet.reader.profiles import Scan
from sihnet.reader.reading import READER_VERSION, SIGN_MEASURES, read_scan
from sihnet.schemas import Reading
from sihnet.tables import write_table

log = logging.getLogger(__name__)

COLUMNS = (
    "name",
    "patient_id",
    "problem",
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


def reading_of(image: Path, cache: VolumeCache) -> tuple[Reading, Scan | None]:
    """The reading of one scan, from the cache when its content was read before.

    Returns:
        ``(reading, scan)``; the scan is None when the reading came from the cache.

    Raises:
        SihnetError: the image cannot be read at all (one line naming its file).
    """
    check_input(Path(image))
    key = text_sha256(f"{cache.content_hash(image)}|reader v{READER_VERSION}")
    record = cache.root / "reading" / key[:2] / f"{key}.json"
    if record.is_file():
        try:
            return Reading.model_validate(json.loads(record.read_text())), None
        except (OSError, ValueError):
            log.warning("a damaged reading record was recomputed")
    volume, affine = load_volume(cache.nifti_of(image))
    reading = read_scan(volume, affine, cache.alignment(image))
    write_json_atomic(record, reading.model_dump(mode="json"))
    return reading, Scan(np.asarray(volume, dtype=np.float32), affine)


def _row(name: str, patient: str, reading: Reading) -> dict[str, object]:
    row: dict[str, object] = {"name": name, "patient_id": patient, "problem": reading.problem}
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


def _names(patients: Sequence[str]) -> list[str]:
    """File-safe output names: the patient id, ``_2``, ``_3``... for further scans."""
    seen: dict[str, int] = {}
    names = []
    for patient in patients:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", patient) or "scan"
        seen[safe] = seen.get(safe, 0) + 1
        names.append(safe if seen[safe] == 1 else f"{safe}_{seen[safe]}")
    return names


def run_measure(scans: Sequence[tuple[str, Path]], out: Path, cache: VolumeCache) -> MeasureSummary:
    """Read every ``(patient_id or "", image)`` and write ``OUT`` (module docstring); a scan that
    cannot be read is one line in the log and a row saying why, and the others are read."""
    out = Path(out)
    check_output_folder(out, "measure")
    patients = [p or f"scan_{i + 1}" for i, (p, _) in enumerate(scans)]
    rows: list[dict[str, object]] = []
    failed = not_measured = 0
    for name, (patient, image) in zip(_names(patients), scans, strict=True):
        try:
            reading, scan = reading_of(image, cache)
        except SihnetError as error:
            log.error("%s: %s", name, error)
            rows.append({"name": name, "patient_id": patient, "problem": f"not read: {error}"})
            failed += 1
            continue
        if reading.problem:
            log.warning("%s: %s", name, reading.problem)
            not_measured += 1
        else:
            _write_outputs(out, name, image, reading, scan, cache)
        rows.append(_row(name, patient, reading))
    table = RunPaths(out).measurements  # the name a measured run's table has too
    write_table(table, COLUMNS, rows)
    return MeasureSummary(table, len(rows) - failed - not_measured, not_measured, failed)


def _write_outputs(
    out: Path, name: str, image: Path, reading: Reading, scan: Scan | None, cache: VolumeCache
) -> None:
    write_json_atomic(out / "readings" / f"{name}.json", reading.model_dump(mode="json"))
    write_json_atomic(out / "markups" / f"{name}.mrk.json", markups_of(reading))
    if scan is None:
        volume, affine = load_volume(cache.nifti_of(image))
        scan = Scan(np.asarray(volume, dtype=np.float32), affine)
    rotation = cache.alignment(image).rotation_matrix
    write_picture(out / "pictures" / f"{name}.png", scan, reading, rotation)
