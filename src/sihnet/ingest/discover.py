"""Walk a folder tree of DICOM files, read headers only, group by study and series.

Files that are not DICOM, are DICOMDIR indexes, or are damaged (unreadable header, pixel data
shorter than the header promises) go to quarantine with a reason; the rest goes on. Nothing
read here is logged: identifiers stay in memory (pseudonyms and label matching need them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from sihnet.hashing import file_sha256

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


@dataclasses.dataclass(frozen=True)
class Quarantined:
    """A file that was not used: its content hash (find it with ``sha256sum``), size and why."""

    sha256: str
    size_bytes: int
    reason: str


@dataclasses.dataclass
class Series:
    """One DICOM series: its files and the header fields selection needs (first file's, in memory).

    Attributes:
        files: the series' files in acquisition order (instance number, then position).
        header: the first file's header (no pixel data).
        positions: ImagePositionPatient per file (classic) or per frame (enhanced), LPS mm (N, 3).
        orientation: ImageOrientationPatient (row and column cosines, LPS), (6,), or None.
    """

    study_uid: str
    series_uid: str
    files: list[Path]
    header: Dataset
    positions: np.ndarray
    orientation: np.ndarray | None

    @property
    def patient_id(self) -> str:
        return str(self.header.get("PatientID", "") or "")

    @property
    def series_number(self) -> int | None:
        value = self.header.get("SeriesNumber")
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    @property
    def frames(self) -> int:
        """Slices (classic) or frames (enhanced multi-frame)."""
        return len(self.positions) if len(self.positions) else len(self.files)

    @property
    def time(self) -> str:
        """Acquisition time of day as text for ordering within a study (HHMMSS.frac), or ''."""
        for key in ("AcquisitionTime", "SeriesTime", "ContentTime"):
            value = self.header.get(key)
            if value:
                return str(value)
        value = self.header.get("AcquisitionDateTime")
        return str(value)[8:] if value else ""


def _first(dataset: Dataset, *path: str) -> Any:
    """``dataset.A[0].B[0].C`` for a path of sequence keywords ending in an attribute, or None."""
    current: Any = dataset
    for keyword in path[:-1]:
        sequence = current.get(keyword)
        if not sequence:
            return None
        current = sequence[0]
    return current.get(path[-1])


def _floats(value: Any, count: int) -> np.ndarray | None:
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (count,) and np.isfinite(array).all() else None


def _orientation(dataset: Dataset) -> np.ndarray | None:
    for path in (
        ("ImageOrientationPatient",),
        ("SharedFunctionalGroupsSequence", "PlaneOrientationSequence", "ImageOrientationPatient"),
        ("PerFrameFunctionalGroupsSequence", "PlaneOrientationSequence", "ImageOrientationPatient"),
    ):
        value = _first(dataset, *path)
        if value is not None:
            return _floats(value, 6)
    return None


def _positions(dataset: Dataset) -> list[np.ndarray]:
    frames = dataset.get("PerFrameFunctionalGroupsSequence")
    if frames:
        found = [
            _floats(_first(f, "PlanePositionSequence", "ImagePositionPatient") or [], 3)
            for f in frames
        ]
        return [p for p in found if p is not None]
    position = _floats(dataset.get("ImagePositionPatient") or [], 3)
    return [position] if position is not None else []


def _pixels_truncated(dataset: Dataset, path: Path, offset: int) -> bool:
    """True when an uncompressed file ends before its pixel data does."""
    syntax = (
        str(getattr(dataset.file_meta, "TransferSyntaxUID", ""))
        if hasattr(dataset, "file_meta")
        else ""
    )
    rows, columns = dataset.get("Rows"), dataset.get("Columns")
    bits = dataset.get("BitsAllocated")
    if syntax not in UNCOMPRESSED or not rows or not columns or not bits:
        return False
    try:
        frames = int(dataset.get("NumberOfFrames") or 1)
        samples = int(dataset.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError):
        return True
    expected = int(rows) * int(columns) * frames * samples * int(bits) // 8
    return os.path.getsize(path) - offset < expected + 8


def read_header(path: Path) -> Dataset | str:
    """The header of one file (no pixel data), or the reason it cannot be used."""
    try:
        with open(path, "rb") as handle:
            dataset = pydicom.dcmread(handle, stop_before_pixels=True)
            offset = handle.tell()
    except InvalidDicomError:
        with open(path, "rb") as handle:
            magic = handle.read(2)
        return (
            "gzip-compressed file (decompress it first)"
            if magic == b"\x1f\x8b"
            else "not a DICOM file"
        )
    except Exception as error:  # pydicom raises many types on damaged files
        return f"damaged DICOM header ({type(error).__name__})"
    if str(getattr(dataset.get("file_meta"), "MediaStorageSOPClassUID", "")) == DICOMDIR_CLASS or (
        hasattr(dataset, "file_meta")
        and str(dataset.file_meta.get("MediaStorageSOPClassUID", "")) == DICOMDIR_CLASS
    ):
        return "DICOMDIR index (not an image)"
    if "SeriesInstanceUID" not in dataset or "StudyInstanceUID" not in dataset:
        return "DICOM file without study/series UIDs"
    if "PixelData" not in dataset and offset >= os.path.getsize(path):
        if dataset.get("Rows"):
            return "truncated DICOM file (no pixel data)"
        return "DICOM file without an image"
    if _pixels_truncated(dataset, path, offset):
        return "truncated DICOM file (pixel data shorter than the header says)"
    return dataset


def _files(root: Path) -> Iterable[Path]:
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file() and not name.startswith("."):
                yield path


def _quarantine(path: Path, reason: str) -> Quarantined:
    try:
        return Quarantined(file_sha256(path), path.stat().st_size, reason)
    except OSError as error:  # unreadable: no hash to give, and never the path
        return Quarantined("", 0, f"unreadable file ({type(error).__name__})")


def discover(root: Path) -> tuple[list[Series], list[Quarantined]]:
    """Group every readable image file under ``root`` into series; quarantine the rest.

    Returns:
        ``(series, quarantined)``; series sorted by study then acquisition time.
    """
    groups: dict[tuple[str, str], list[tuple[Path, Dataset]]] = {}
    quarantined: list[Quarantined] = []
    for path in _files(Path(root)):
        header = read_header(path)
        if isinstance(header, str):
            quarantined.append(_quarantine(path, header))
            continue
        key = (str(header.StudyInstanceUID), str(header.SeriesInstanceUID))
        groups.setdefault(key, []).append((path, header))
    series: list[Series] = []
    for (study, uid), members in groups.items():

        def order(item: tuple[Path, Dataset]) -> tuple[int, str]:
            number = item[1].get("InstanceNumber")
            try:
                return (int(number), item[0].name)
            except (TypeError, ValueError):
                return (0, item[0].name)

        members.sort(key=order)
        try:
            positions = [p for _, header in members for p in _positions(header)]
            orientation = _orientation(members[0][1])
        except Exception as error:  # malformed geometry values (pydicom converts lazily)
            reason = f"unreadable geometry fields ({type(error).__name__})"
            quarantined += [_quarantine(p, reason) for p, _ in members]
            continue
        series.append(
            Series(
                study_uid=study,
                series_uid=uid,
                files=[path for path, _ in members],
                header=members[0][1],
                positions=np.asarray(positions, dtype=np.float64).reshape(-1, 3),
                orientation=orientation,
            )
        )
    series.sort(key=lambda s: (s.study_uid, s.time, s.series_number or 0))
    return series, quarantined
