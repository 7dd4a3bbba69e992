"""Synthetic DICOM series written with pydicom: any plane, single- or multi-frame, scaled or not,
with the private data scanners add — for tests, benchmarks, and checking a de-identification
pipeline. Every identifying field carries the marker ``ZQXJ`` (and dates in 1902), so a check can
prove that none of them reaches an output."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

MR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
CT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
SENTINEL = "ZQXJ"  # in every identifying field: must never reach an output
PHI = {
    "PatientName": f"DOE^{SENTINEL}NAME",
    "PatientID": f"{SENTINEL}ID001",
    "PatientBirthDate": "19020304",
    "PatientAddress": f"{SENTINEL} STREET 1",
    "OtherPatientIDs": f"{SENTINEL}OTHER",
    "StudyDate": "19020305",
    "SeriesDate": "19020305",
    "AcquisitionDate": "19020305",
    "ContentDate": "19020305",
    "InstitutionName": f"{SENTINEL} HOSPITAL",
    "InstitutionAddress": f"{SENTINEL} AVENUE",
    "ReferringPhysicianName": f"{SENTINEL}^REF",
    "PerformingPhysicianName": f"{SENTINEL}^PERF",
    "OperatorsName": f"{SENTINEL}^OP",
    "AccessionNumber": f"{SENTINEL}ACC",
    "StudyID": f"{SENTINEL}SID",
    "StationName": f"{SENTINEL}STN",
    "DeviceSerialNumber": f"{SENTINEL}SER",
    "StudyDescription": f"{SENTINEL} BRAIN",
}
SENTINELS = (SENTINEL, "19020304", "19020305", "1902-03-0")
PLANES = {  # row and column cosines in LPS
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    plane: str = "sagittal",
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    description: str = "T1 MPRAGE sag post KM",
    series_number: int = 5,
    study_uid: str | None = None,
    modality: str = "MR",
    acquisition: str = "3D",
    contrast_agent: str | None = "Gadobutrol",
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    time: str = "101500",
    tr_te: tuple[float, float] = (2000.0, 2.5),
    phi: dict[str, str] | None = None,
    origin: tuple[float, float, float] = (-80.0, -110.0, 90.0),
    rescale: tuple[float, float] | None = None,
    extra: dict[str, object] | None = None,
    series_uid: str | None = None,
) -> list[Path]:
    """Write ``volume`` (slices, rows, columns) as one series of single-frame files.

    ``spacing`` is (slice, row, column) in mm. ``rescale`` = (slope, intercept): signed int16
    stored values with RescaleSlope/RescaleIntercept (as Philips and many scanners export).
    ``extra``: further attributes by keyword (ScanningSequence, SequenceName, EchoNumbers, …).
    Returns the written files in slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row, column = (np.asarray(v) for v in PLANES[plane])
    data = np.clip(volume, 0, None)
    if rescale is None:
        data = (data / max(float(data.max()), 1e-6) * 1000).astype(np.uint16)
    else:  # the full signed range, so every stored value matters
        data = (data / max(float(data.max()), 1e-6) * 30000 - 2000).astype(np.int16)
    template = Dataset()
    for keyword, value in {**PHI, **(phi or {})}.items():
        setattr(template, keyword, value)
    template.Modality, template.Manufacturer = modality, "SIEMENS"
    template.StudyInstanceUID = study_uid or generate_uid()
    template.SeriesInstanceUID = series_uid or generate_uid()
    template.FrameOfReferenceUID = generate_uid()
    template.SeriesNumber = series_number
    template.SeriesDescription = template.ProtocolName = description
    template.ImageType = list(image_type)
    template.SeriesTime = template.AcquisitionTime = template.ContentTime = time
    if modality == "MR":
        template.MRAcquisitionType, template.MagneticFieldStrength = acquisition, 3
        template.RepetitionTime, template.EchoTime = tr_te
    if contrast_agent:
        template.ContrastBolusAgent = contrast_agent
    _geometry_and_pixels(template, row, column, spacing, data.shape[1:], rescale)
    for name, setting in (extra or {}).items():
        setattr(template, name, setting)
    normal = np.cross(row, column)
    files = []
    for k in range(data.shape[0]):
        position = np.asarray(origin) + k * spacing[0] * normal
        files.append(_write_slice(folder / f"IM{k + 1:05d}.dcm", template, k, position, data[k]))
    return files


def _geometry_and_pixels(
    ds: Dataset,
    row: np.ndarray,
    column: np.ndarray,
    spacing: tuple[float, float, float],
    shape: tuple[int, ...],
    rescale: tuple[float, float] | None,
) -> None:
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *column)]
    ds.PixelSpacing = [f"{spacing[1]:.4f}", f"{spacing[2]:.4f}"]
    ds.SliceThickness = f"{spacing[0]:.4f}"
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0 if rescale is None else 1
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:.6g}", f"{rescale[1]:.6g}"
        ds.RescaleType = "US"


def _write_slice(
    path: Path, template: Dataset, index: int, position: np.ndarray, pixels: np.ndarray
) -> Path:
    """One single-frame file: the series template plus this slice's UID, number, position."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_STORAGE if template.Modality == "MR" else CT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = copy.deepcopy(template)
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def head_volume(shape: tuple[int, int, int] = (40, 48, 44), seed: int = 0) -> np.ndarray:
    """A smooth ellipsoidal 'head' with texture: float32 (slices, rows, columns)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grid))
    return ((radius < 0.85) * (1.0 + 0.2 * rng.standard_normal(shape))).astype(np.float32).clip(0)


ENHANCED_MR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")


def write_multiframe(
    path: Path,
    volume: np.ndarray,
    *,
    series_uid: str,
    study_uid: str,
    description: str = "t1_mprage_sag post",
    series_number: int = 5,
    plane: str = "sagittal",
) -> Path:
    """Write ``volume`` (frames, rows, columns) as one enhanced-MR multi-frame file (1 mm voxels),
    with positions and orientation in the functional groups."""
    row, column = (np.asarray(v) for v in PLANES[plane])
    normal = np.cross(row, column)
    data = (np.clip(volume, 0, None) / max(float(volume.max()), 1e-6) * 1000).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR_STORAGE, meta.MediaStorageSOPInstanceUID
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "MR", study_uid, series_uid
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = series_number, 1, description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.MRAcquisitionType, ds.AcquisitionContrast = "3D", "T1"
    ds.ContrastBolusAgent = "Gadobutrol"
    ds.AcquisitionDateTime = "19020305101500"
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *column)]
    measures.PixelSpacing, measures.SliceThickness = ["1.0", "1.0"], "1.0"
    shared = Dataset()
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in range(data.shape[0]):
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = [
            f"{v:.4f}" for v in np.array([-80.0, -110.0, 90.0]) + k * normal
        ]
        frame.PlanePositionSequence = [position]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.NumberOfFrames = data.shape[0]
    ds.Rows, ds.Columns = data.shape[1], data.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = data.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def bloat_headers(files: list[Path], vendor: str) -> None:
    """Add the private data real scanners write to each file's header (values are noise):
    ``siemens`` CSA blobs (12 + 90 kB), ``philips`` undefined-length private sequences."""
    import pydicom

    rng = np.random.default_rng(0)
    csa_image, csa_series = rng.bytes(12_000), rng.bytes(90_000)
    for path in files:
        ds = pydicom.dcmread(path)
        if vendor == "siemens":
            ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
            ds.add_new(0x00291010, "OB", csa_image)
            ds.add_new(0x00291020, "OB", csa_series)
        else:
            ds.add_new(0x20050010, "LO", "Philips MR Imaging DD 001")
            items = []
            for _ in range(4):
                item = Dataset()
                for element in range(0x1000, 0x1000 + 120):
                    item.add_new(0x20050000 | element, "DS", f"{rng.random():.6f}")
                inner = Dataset()
                for element in range(0x1000, 0x1000 + 40):
                    inner.add_new(0x20010000 | element, "DS", "1.5")
                item.add_new(0x2005140E, "SQ", [inner])
                item[0x2005140E].is_undefined_length = True
                items.append(item)
            ds.add_new(0x2005140F, "SQ", items)
            ds[0x2005140F].is_undefined_length = True  # as Philips writes them
        ds.save_as(path)
