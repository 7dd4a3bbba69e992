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
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial

from sihnet.hashing import file_sha256

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD), length 0
MOSAIC_IMAGES_TAG = 0x0019100A  # Siemens NumberOfImagesInMosaic (private, CSA group 0019)
# The only attributes discovery and selection read: pydicom skips the values of every other element
# (Siemens CSA blobs, Philips private sequences), several times faster on real exports.
_SELECTION_KEYWORDS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
    "PatientID", "AccessionNumber", "SeriesNumber", "InstanceNumber", "EchoNumbers",
    "SeriesDescription", "ProtocolName", "ImageType", "MRAcquisitionType", "ScanningSequence",
    "SequenceVariant", "SequenceName", "PulseSequenceName", "EchoPulseSequence",
    "EchoPlanarPulseSequence", "AcquisitionContrast", "ComplexImageComponent",
    "RepetitionTime", "EchoTime", "InversionTime", "DiffusionBValue", "ContrastBolusAgent",
    "ContrastBolusIngredient", "ContrastBolusAgentSequence", "ContrastBolusUsageSequence",
    "BurnedInAnnotation", "ImageOrientationPatient", "ImagePositionPatient", "Rows", "Columns",
    "BitsAllocated", "SamplesPerPixel", "NumberOfFrames", "AcquisitionTime", "SeriesTime",
    "ContentTime", "AcquisitionDateTime", "Manufacturer", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
]  # fmt: skip
SELECTION_TAGS: list[int] = [
    *(int(tag_for_keyword(k) or 0) for k in _SELECTION_KEYWORDS),
    MOSAIC_IMAGES_TAG,
    0x0019109C,  # GE pulse sequence name (private)
    0x20011020,  # Philips scanning technique (private)
]


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
        echoes: distinct EchoNumbers over the files (a field map's magnitude pair has 2).
        mosaic_images: slices per file of a Siemens mosaic (0 when not a mosaic).
        multiframe: an enhanced/multi-frame export (kept apart from a single-frame export of the
            same series, which would otherwise double the slices).
    """

    study_uid: str
    series_uid: str
    files: list[Path]
    header: Dataset
    positions: np.ndarray
    orientation: np.ndarray | None
    echoes: int = 1
    mosaic_images: int = 0
    multiframe: bool = False

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
        """Slices: per file (classic), per frame (enhanced), or per mosaic tile (Siemens mosaic)."""
        if self.mosaic_images:
            return self.mosaic_images * len(self.files)
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


def _expected_pixel_bytes(dataset: Dataset) -> int | None:
    """Bytes of uncompressed pixel data the header promises (even-padded), or None if unknown."""
    rows, columns = dataset.get("Rows"), dataset.get("Columns")
    bits = dataset.get("BitsAllocated")
    if not rows or not columns or not bits:
        return None
    try:
        frames = int(dataset.get("NumberOfFrames") or 1)
        samples = int(dataset.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError):
        return -1
    expected = int(rows) * int(columns) * frames * samples * int(bits) // 8
    return expected + expected % 2


def _syntax(dataset: Dataset) -> str:
    meta = getattr(dataset, "file_meta", None)
    return str(getattr(meta, "TransferSyntaxUID", "")) if meta is not None else ""


def _pixels_truncated(dataset: Dataset, path: Path, offset: int) -> bool:
    """True when an uncompressed file ends before its pixel data does (``offset``: where the
    header reading stopped, at the pixel data)."""
    expected, syntax = _expected_pixel_bytes(dataset), _syntax(dataset)
    if syntax not in UNCOMPRESSED or expected is None:
        return False
    return expected < 0 or os.path.getsize(path) - offset < expected + _pixel_header(syntax)


def _pixel_header(syntax: str) -> int:
    """Bytes of the PixelData element's tag and length: implicit VR 8, explicit VR (OB/OW) 12."""
    return 8 if syntax == "1.2.840.10008.1.2" else 12


def _ends_with_whole_pixels(path: Path, dataset: Dataset) -> bool:
    """True when the file visibly ends with all of its pixel data: the PixelData tag sits exactly
    where the promised bytes start (uncompressed), or the encapsulated fragments' sequence
    delimiter ends the file (compressed)."""
    size, syntax = os.path.getsize(path), _syntax(dataset)
    expected = _expected_pixel_bytes(dataset)
    with open(path, "rb") as handle:
        if syntax in UNCOMPRESSED:
            header = _pixel_header(syntax)
            if syntax == "1.2.840.10008.1.2.2" or expected is None or expected < 0:
                return False
            if size < expected + header:
                return False
            handle.seek(size - expected - header)
            return handle.read(4) == PIXEL_DATA_TAG
        handle.seek(max(0, size - 8))
        return bool(syntax) and handle.read(8) == SEQUENCE_END


def _past_selection_groups(tag: Any, vr: Any, length: int) -> bool:
    return bool(tag.group > 0x0028)  # a single-frame file's selection fields all lie before


def _read(path: Path, tags: list[int] | None) -> tuple[Dataset, int | None]:
    """Read a header; returns it and the offset of its pixel data (None when the fast path
    stopped before the vendors' private groups and the file's end proved the pixels whole).

    The fast path reads up to group 0028 only: real exports carry large private groups after it
    (Philips' undefined-length private sequences cost milliseconds per file to parse, even
    with ``specific_tags``). Multi-frame files, whose positions live in the functional groups at
    (5200,xxxx), and files whose end does not prove the pixel data are read to the pixel data.
    """
    if tags is not None:
        with open(path, "rb") as handle:
            quick = read_partial(handle, _past_selection_groups, specific_tags=tags)
        multiframe = _export_kind(quick) or "PerFrameFunctionalGroupsSequence" in quick
        if not multiframe and quick.get("Rows") and _ends_with_whole_pixels(path, quick):
            return quick, None
    with open(path, "rb") as handle:
        dataset = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=tags)
        return dataset, handle.tell()


def read_header(path: Path, tags: list[int] | None = SELECTION_TAGS) -> Dataset | str:
    """The header of one file (no pixel data; only ``tags`` when given), or why it cannot be used."""
    try:
        dataset, offset = _read(path, tags)
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
    if offset is None:
        return dataset
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


def _export_kind(header: Dataset) -> bool:
    """True for a multi-frame file (enhanced MR, or any NumberOfFrames > 1)."""
    try:
        return int(header.get("NumberOfFrames") or 1) > 1
    except (TypeError, ValueError):
        return False


def _mosaic_images(header: Dataset) -> int:
    """Slices per file of a Siemens mosaic (ImageType MOSAIC), from NumberOfImagesInMosaic."""
    image_type = header.get("ImageType") or []
    values = str(image_type).split("\\") if isinstance(image_type, str) else list(image_type)
    if "MOSAIC" not in [str(v).strip().upper() for v in values]:
        return 0
    element = header.get(MOSAIC_IMAGES_TAG)
    value = element.value if element is not None else None
    if isinstance(value, bytes) and len(value) >= 2:  # implicit VR: the private US arrives raw
        return int.from_bytes(value[:2], "little")
    try:
        return int(value) if value not in (None, "") else 1
    except (TypeError, ValueError):
        return 1


def _order(item: tuple[Path, Dataset]) -> tuple[int, str]:
    number = item[1].get("InstanceNumber")
    try:
        return (int(number), item[0].name)
    except (TypeError, ValueError):
        return (0, item[0].name)


def _series_of(
    study: str, uid: str, multiframe: bool, members: list[tuple[Path, Dataset]]
) -> Series:
    members.sort(key=_order)
    positions = [p for _, header in members for p in _positions(header)]
    echoes = {str(header.get("EchoNumbers", "") or "") for _, header in members}
    return Series(
        study_uid=study,
        series_uid=uid,
        files=[path for path, _ in members],
        header=members[0][1],
        positions=np.asarray(positions, dtype=np.float64).reshape(-1, 3),
        orientation=_orientation(members[0][1]),
        echoes=max(1, len(echoes - {""})),
        mosaic_images=_mosaic_images(members[0][1]),
        multiframe=multiframe,
    )


def discover(
    root: Path, tags: list[int] | None = SELECTION_TAGS
) -> tuple[list[Series], list[Quarantined]]:
    """Group every readable image file under ``root`` into series; quarantine the rest.

    A single-frame and a multi-frame export of one series stay two series; a second file with an
    SOPInstanceUID already seen (a copy) is quarantined.

    Args:
        tags: attributes read per file (default: those selection needs); None reads whole headers.

    Returns:
        ``(series, quarantined)``; series sorted by study then acquisition time.
    """
    groups: dict[tuple[str, str, bool], list[tuple[Path, Dataset]]] = {}
    quarantined: list[Quarantined] = []
    instances: set[str] = set()
    for path in _files(Path(root)):
        header = read_header(path, tags)
        if isinstance(header, str):
            quarantined.append(_quarantine(path, header))
            continue
        instance = str(header.get("SOPInstanceUID", "") or "")
        if instance and instance in instances:
            quarantined.append(_quarantine(path, "copy of another file (same SOPInstanceUID)"))
            continue
        instances.add(instance)
        key = (str(header.StudyInstanceUID), str(header.SeriesInstanceUID), _export_kind(header))
        groups.setdefault(key, []).append((path, header))
    series: list[Series] = []
    for (study, uid, multiframe), members in groups.items():
        try:
            series.append(_series_of(study, uid, multiframe, members))
        except Exception as error:  # malformed geometry values (pydicom converts lazily)
            reason = f"unreadable geometry fields ({type(error).__name__})"
            quarantined += [_quarantine(p, reason) for p, _ in members]
    series.sort(key=lambda s: (s.study_uid, s.time, s.series_number or 0, s.multiframe))
    return series, quarantined
