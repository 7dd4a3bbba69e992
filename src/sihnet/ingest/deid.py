"""De-identification: pseudonyms, a sidecar allowlist, and NIfTI headers without free text."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import nibabel as nib

from sihnet.errors import SihnetError
from sihnet.tables import read_table, write_table

# Acquisition fields of dcm2niix's BIDS sidecar that carry no identity (no names, dates, places,
# free-text descriptions, serial numbers).
SIDECAR_ALLOWLIST = (
    "Modality",
    "MagneticFieldStrength",
    "Manufacturer",
    "ManufacturersModelName",
    "MRAcquisitionType",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "ImageType",
    "SliceThickness",
    "SpacingBetweenSlices",
    "EchoTime",
    "RepetitionTime",
    "InversionTime",
    "FlipAngle",
    "PixelBandwidth",
    "EchoTrainLength",
    "PercentPhaseFOV",
    "AcquisitionMatrixPE",
    "ReconMatrixPE",
    "ParallelReductionFactorInPlane",
    "ImageOrientationPatientDICOM",
    "InPlanePhaseEncodingDirectionDICOM",
    "ConversionSoftware",
    "ConversionSoftwareVersion",
)
TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name", "data_type")


def allowlisted(sidecar: dict[str, Any]) -> dict[str, Any]:
    """Only the :data:`SIDECAR_ALLOWLIST` fields of a sidecar, with plain (non-text-blob) values."""
    kept: dict[str, Any] = {}
    for key in SIDECAR_ALLOWLIST:
        value = sidecar.get(key)
        if (
            isinstance(value, (int, float))
            or (isinstance(value, str) and len(value) <= 64)
            or (isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value))
        ):
            kept[key] = value
    return kept


def clean_image(image: Any) -> nib.Nifti1Image:
    """A copy of a NIfTI image whose header text fields are empty and extensions dropped."""
    header = image.header.copy()
    for field in TEXT_FIELDS:
        if field in header:
            header[field] = b""
    header.extensions.clear()
    clean = nib.Nifti1Image(image.dataobj, image.affine, header)
    clean.header.set_slope_inter(*image.header.get_slope_inter())  # the constructor resets them
    clean.set_qform(image.affine, code=1)
    clean.set_sform(image.affine, code=1)
    return clean


class Pseudonyms:
    """Patient ID -> ``sub-<label>``: a keyed hash (HMAC-SHA-256 with the user's secret) or a table.

    The table (CSV ``original_id,pseudonym``) is read, extended with new patients (``sub-0001`` …)
    and written back; it must live outside the output folder.
    """

    def __init__(self, key: bytes | None = None, table: Path | None = None) -> None:
        if (key is None) == (table is None):
            raise SihnetError(
                "give exactly one of a pseudonym key (--key-file / SIHNET_PSEUDONYM_KEY) or --mapping"
            )
        if key is not None and len(key.strip()) < 8:
            raise SihnetError("the pseudonym key must have at least 8 characters")
        self.key, self.table = (key.strip() if key else None), table
        self.mapping: dict[str, str] = {}
        self.changed = False
        if table is not None and table.is_file():
            columns, rows = read_table(table, "mapping table")
            if not {"original_id", "pseudonym"} <= set(columns):
                raise SihnetError(f"mapping table {table.name} needs columns original_id,pseudonym")
            for row in rows:
                self.mapping[row["original_id"]] = row["pseudonym"].removeprefix("sub-")

    @classmethod
    def from_options(cls, key_file: Path | None, mapping: Path | None) -> Pseudonyms:
        """From ``--key-file`` (else ``$SIHNET_PSEUDONYM_KEY`` when no ``--mapping``) or ``--mapping``."""
        key: bytes | None = None
        if key_file is not None:
            if not Path(key_file).is_file():
                raise SihnetError("--key-file does not exist")
            key = Path(key_file).read_bytes()
        elif mapping is None and os.environ.get("SIHNET_PSEUDONYM_KEY"):
            key = os.environ["SIHNET_PSEUDONYM_KEY"].encode()
        return cls(key, mapping)

    def check_outside(self, out: Path) -> None:
        """The mapping table must not be written into the de-identified output."""
        if self.table is not None and Path(out).resolve() in Path(self.table).resolve().parents:
            raise SihnetError("the mapping table must be kept outside the output folder")

    def of(self, original: str) -> str:
        """The pseudonym (``sub-…``) of an original patient identifier."""
        if self.key is not None:
            return "sub-" + hmac.new(self.key, original.encode(), hashlib.sha256).hexdigest()[:12]
        if original not in self.mapping:
            used = {v for v in self.mapping.values()}
            number = len(self.mapping) + 1
            while f"{number:04d}" in used:
                number += 1
            self.mapping[original] = f"{number:04d}"
            self.changed = True
        return "sub-" + self.mapping[original]

    def save(self) -> None:
        """Write the mapping table back (atomically) when new patients were added."""
        if self.table is None or not self.changed:
            return
        rows = [
            {"original_id": original, "pseudonym": f"sub-{label}"}
            for original, label in sorted(self.mapping.items(), key=lambda item: item[1])
        ]
        write_table(self.table, ["original_id", "pseudonym"], rows)
