"""Build DICOM series with pydicom for tests: any plane, PHI sentinels in every identifying field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SENTINEL = "ZQXJ"  # appears in every PHI field (and the test folder name); must never reach output
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
) -> list[Path]:
    """Write ``volume`` (slices, rows, columns) as one series of single-frame files.

    ``spacing`` is (slice, row, column) in mm. Returns the written files in slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row, column = (np.asarray(v) for v in PLANES[plane])
    normal = np.cross(row, column)
    series_uid, study_uid = generate_uid(), study_uid or generate_uid()
    frame_uid = generate_uid()
    data = np.clip(volume, 0, None)
    data = (data / max(float(data.max()), 1e-6) * 1000).astype(np.uint16)
    files = []
    for k in range(data.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_STORAGE if modality == "MR" else CT_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = (
            meta.MediaStorageSOPClassUID,
            meta.MediaStorageSOPInstanceUID,
        )
        for keyword, value in {**PHI, **(phi or {})}.items():
            setattr(ds, keyword, value)
        ds.Modality = modality
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
            study_uid,
            series_uid,
            frame_uid,
        )
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.SeriesDescription = description
        ds.ProtocolName = description
        ds.ImageType = list(image_type)
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
        ds.Manufacturer = "SIEMENS"
        if modality == "MR":
            ds.MRAcquisitionType = acquisition
            ds.RepetitionTime, ds.EchoTime = tr_te
            ds.MagneticFieldStrength = 3
        if contrast_agent:
            ds.ContrastBolusAgent = contrast_agent
        position = np.asarray(origin) + k * spacing[0] * normal
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *column)]
        ds.PixelSpacing = [f"{spacing[1]:.4f}", f"{spacing[2]:.4f}"]
        ds.SliceThickness = f"{spacing[0]:.4f}"
        ds.Rows, ds.Columns = data.shape[1], data.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = data[k].tobytes()
        path = folder / f"IM{k + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def head_volume(shape: tuple[int, int, int] = (40, 48, 44), seed: int = 0) -> np.ndarray:
    """A smooth ellipsoidal 'head' with texture: float32 (slices, rows, columns)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grid))
    return ((radius < 0.85) * (1.0 + 0.2 * rng.standard_normal(shape))).astype(np.float32).clip(0)
