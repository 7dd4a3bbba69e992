"""``sihnet convert``: DICOM studies -> de-identified BIDS-style NIfTI + ``manifest.csv``.

Output layout::

    OUT/sub-<id>/anat/sub-<id>_ce-gadolinium_T1w.nii.gz  (+ .json sidecar, allowlisted fields)
    OUT/manifest.csv            patient_id,image[,label,…]   (docs/run-folder.md contract)
    OUT/participants.tsv        (BIDS; the same columns)
    OUT/dataset_description.json
    OUT/selection.tsv           every series of every study: what it is, what was decided, why
    OUT/quarantine.tsv          files not used: SHA-256 of the file, size, reason (no paths)

A patient with several studies gets ``_run-<k>`` in the file name. No header value, source path
or folder name reaches a file, a log line or an error message; source paths of quarantined files
are written only to ``--quarantine-paths``, a file the user places outside the output.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib

from sihnet.atomic import remove_stale_temporaries, write_json_atomic, write_nifti_atomic
from sihnet.data.manifest import OPTIONAL_COLUMNS, parse_label
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256
from sihnet.ingest.dcm2niix import convert_series, dcm2niix_version
from sihnet.ingest.deid import Pseudonyms, allowlisted, clean_image
from sihnet.ingest.discover import Quarantined, Series, discover
from sihnet.ingest.select import Choice, choose, uncertainty
from sihnet.outputs import check_output_file, check_output_folder, starts_with
from sihnet.tables import read_table, write_table

log = logging.getLogger(__name__)

SELECTION_COLUMNS = (
    "subject", "study", "series_number", "modality", "orientation", "acquisition", "weighting",
    "contrast", "contrast_evidence", "slices", "decision", "reason",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ConvertSummary:
    """Counts of a conversion (for the CLI and tests).

    ``uncertain``: studies converted from a series whose pick is uncertain (post-contrast only by
    acquisition order, or not sagittal).
    """

    studies: int
    converted: int
    failed: int
    quarantined: int
    uncertain: int


def _studies(series: Sequence[Series]) -> list[list[Series]]:
    groups: dict[str, list[Series]] = {}
    for item in series:
        groups.setdefault(item.study_uid, []).append(item)
    return list(groups.values())


def _override_for(study: Sequence[Series], overrides: dict[str, int]) -> int | None:
    header = study[0].header
    for key in ("StudyInstanceUID", "AccessionNumber", "PatientID"):
        value = str(header.get(key, "") or "")
        if value and value in overrides:
            return overrides[value]
    return None


def _patient(study: Sequence[Series]) -> str:
    return study[0].patient_id or f"study:{study[0].study_uid}"


def _selection_rows(
    subject: str, study_index: int, study: Sequence[Series], choice: Choice, note: str
) -> list[dict[str, str]]:
    rows = []
    for series, (assessment, decision) in zip(study, choice.decisions, strict=True):
        reason = assessment.reason or assessment.evidence
        if (decision.startswith("selected") or decision == "conversion failed") and note:
            reason = "; ".join(r for r in (reason, note) if r)
        rows.append(
            {
                "subject": subject,
                "study": str(study_index),
                "series_number": "" if series.series_number is None else str(series.series_number),
                "modality": str(series.header.get("Modality", "") or "")[:8],
                "orientation": assessment.orientation,
                "acquisition": assessment.acquisition,
                "weighting": assessment.weighting,
                "contrast": assessment.contrast,
                "contrast_evidence": assessment.contrast_evidence or "none",
                "slices": str(series.frames),
                "decision": decision,
                "reason": reason,
            }
        )
    return rows


def read_labels(path: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The ``--labels`` table: rows by original patient ID and the manifest columns it fills.

    Raises:
        SihnetError: missing columns, or a label that is not 1, 0, indeterminate or empty.
    """
    name = f"labels table {Path(path).name}"
    columns, rows = read_table(Path(path), "labels table")
    for column in ("patient_id", "label"):
        if column not in columns:
            raise SihnetError(f"{name}: missing column {column}")
    for index, row in enumerate(rows, start=2):
        if parse_label(row["label"]) == "?":
            raise SihnetError(
                f"{name}: row {index}: unknown label {row['label']!r} (use 1, 0 or indeterminate)"
            )
    return {row["patient_id"]: row for row in rows}, [c for c in OPTIONAL_COLUMNS if c in columns]


@dataclasses.dataclass
class _Conversion:
    """What a conversion accumulates: selection rows, manifest rows and counts."""

    out: Path
    label_rows: dict[str, dict[str, str]]
    label_columns: list[str]
    selection: list[dict[str, str]] = dataclasses.field(default_factory=list)
    manifest: list[dict[str, str]] = dataclasses.field(default_factory=list)
    matched: set[str] = dataclasses.field(default_factory=set)
    converted: int = 0
    failed: int = 0
    uncertain: int = 0

    def failure(self, where: str, rows: list[dict[str, str]], message: str) -> None:
        self.failed += 1
        self.selection += rows
        log.warning("%s: not converted: %s", where, message)

    def write_study(
        self, patient: str, relative: Path, image: nib.Nifti1Image, sidecar: dict[str, Any]
    ) -> None:
        """The de-identified NIfTI, its allowlisted sidecar, and the study's manifest row."""
        write_nifti_atomic(self.out / relative, clean_image(image))
        write_json_atomic(
            self.out / str(relative).replace(".nii.gz", ".json"), allowlisted(sidecar)
        )
        self.converted += 1
        source = self.label_rows.get(patient, {})
        if source:
            self.matched.add(patient)
        subject = relative.parts[0]
        row = {"patient_id": subject, "image": relative.as_posix()}
        row.update({c: source.get(c, "") for c in self.label_columns})
        self.manifest.append(row)

    def write_tables(self) -> None:
        """``manifest.csv``, ``participants.tsv`` and ``selection.tsv``."""
        columns = ["patient_id", "image", *self.label_columns]
        write_table(self.out / "manifest.csv", columns, self.manifest)
        participants: dict[str, dict[str, str]] = {}
        for row in self.manifest:
            participants.setdefault(
                row["patient_id"],
                {
                    "participant_id": row["patient_id"],
                    **{c: row.get(c, "") for c in self.label_columns},
                },
            )
        write_table(
            self.out / "participants.tsv",
            ["participant_id", *self.label_columns],
            list(participants.values()),
            delimiter="\t",
        )
        write_table(self.out / "selection.tsv", SELECTION_COLUMNS, self.selection, delimiter="\t")


def _check_places(
    dicom_dir: Path, out: Path, pseudonyms: Pseudonyms, quarantine_paths: Path | None
) -> None:
    if not dicom_dir.is_dir():
        raise SihnetError("the DICOM input is not a folder")
    if out.resolve() == dicom_dir.resolve() or dicom_dir.resolve() in out.resolve().parents:
        raise SihnetError("--out must not be inside the DICOM input folder")
    pseudonyms.check_outside(out)
    check_output_folder(out, "convert")
    if quarantine_paths is not None and out.resolve() in Path(quarantine_paths).resolve().parents:
        raise SihnetError(
            "--quarantine-paths must be outside the output folder (it holds source paths)"
        )
    if quarantine_paths is not None:
        check_output_file(quarantine_paths, "convert", earlier=starts_with("path\tsha256\treason"))


def _convert_study(
    study: Sequence[Series],
    subject: str,
    number: int,
    run_suffix: str,
    choice: Choice,
    work: _Conversion,
    scratch: Path,
) -> None:
    """Convert one study's chosen series (or the next candidate) and record what happened."""
    where = f"{subject} study {number}"
    if choice.chosen is None:
        work.failure(where, _selection_rows(subject, number, study, choice, ""), choice.warning)
        return
    choice, image, sidecar, errors = _convert_choice(study, choice, scratch)
    for error in errors:
        log.warning("%s: %s", where, error)
    if image is None or choice.chosen is None:
        rows = _selection_rows(subject, number, study, choice, "; ".join(errors))
        work.failure(where, rows, "every candidate series failed to convert")
        return
    if choice.warning:
        work.uncertain += 1
        log.warning("%s: uncertain pick: %s", where, choice.warning)
    relative = Path(subject) / "anat" / f"{subject}_ce-gadolinium{run_suffix}_T1w.nii.gz"
    work.write_study(_patient(study), relative, image, sidecar)
    note = "; ".join(n for n in (choice.warning, *errors) if n)
    work.selection += _selection_rows(subject, number, study, choice, note)
    log.info("%s: series %s converted", where, study[choice.chosen].series_number)


def run_convert(
    dicom_dir: Path,
    out: Path,
    pseudonyms: Pseudonyms,
    labels: Path | None = None,
    overrides: dict[str, int] | None = None,
    quarantine_paths: Path | None = None,
) -> ConvertSummary:
    """Discover, select, convert and de-identify every study under ``dicom_dir`` (module docstring)."""
    dicom_dir, out = Path(dicom_dir), Path(out)
    _check_places(dicom_dir, out, pseudonyms, quarantine_paths)
    label_rows, label_columns = read_labels(labels) if labels is not None else ({}, [])
    series, quarantined = discover(dicom_dir)
    studies = _studies(series)
    log.info(
        "found %d series in %d studies; %d files quarantined",
        len(series),
        len(studies),
        len(quarantined),
    )
    out.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_temporaries([out, *sorted(out.glob("sub-*/anat"))])
    if removed:
        log.info("removed %d temporary file(s) an interrupted conversion left", removed)
    studies_of: dict[str, int] = {}
    for study in studies:
        studies_of[_patient(study)] = studies_of.get(_patient(study), 0) + 1
    work = _Conversion(out, label_rows, label_columns)
    runs: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="sihnet-convert-") as scratch:
        for study in studies:
            subject = pseudonyms.of(_patient(study))
            runs[subject] = runs.get(subject, 0) + 1
            suffix = f"_run-{runs[subject]}" if studies_of[_patient(study)] > 1 else ""
            choice = choose(study, _override_for(study, overrides or {}))
            _convert_study(study, subject, runs[subject], suffix, choice, work, Path(scratch))
    pseudonyms.save()
    work.write_tables()
    _write_quarantine(out, quarantined, dicom_dir, quarantine_paths)
    write_json_atomic(out / "dataset_description.json", _description())
    if labels is not None:
        missing = len(set(label_rows) - work.matched)
        unlabelled = sum(1 for row in work.manifest if not row.get("label"))
        if missing or unlabelled:
            log.warning(
                "labels: %d labelled patients have no converted study; %d converted studies have no label",
                missing,
                unlabelled,
            )
    return ConvertSummary(
        len(studies), work.converted, work.failed, len(quarantined), work.uncertain
    )


def _convert_choice(
    study: Sequence[Series], choice: Choice, scratch: Path | None
) -> tuple[Choice, nib.Nifti1Image | None, dict[str, Any], list[str]]:
    """Convert the chosen series; if dcm2niix or the geometry check fails, the next candidate.

    Returns:
        The choice as it ended (decisions updated), the image (None if every candidate failed),
        its sidecar, and one message per failed series.
    """
    assert choice.chosen is not None
    decisions, errors = list(choice.decisions), []
    for index in (choice.chosen, *choice.alternatives):
        try:
            image, sidecar = convert_series(study[index], scratch)
        except SihnetError as error:
            errors.append(f"series {study[index].series_number}: {error}")
            decisions[index] = (decisions[index][0], "conversion failed")
            continue
        warning = choice.warning
        if index != choice.chosen:
            warning = uncertainty(decisions[index][0])
            decisions[index] = (decisions[index][0], "selected (next candidate)")
        return (
            dataclasses.replace(choice, chosen=index, decisions=decisions, warning=warning),
            image,
            sidecar,
            errors,
        )
    return dataclasses.replace(choice, chosen=None, decisions=decisions), None, {}, errors


def _write_quarantine(
    out: Path, quarantined: list[Quarantined], root: Path, paths_file: Path | None
) -> None:
    rows = [
        {"sha256": q.sha256, "size_bytes": str(q.size_bytes), "reason": q.reason}
        for q in quarantined
    ]
    write_table(out / "quarantine.tsv", ["sha256", "size_bytes", "reason"], rows, delimiter="\t")
    if paths_file is None:
        return
    by_hash = {q.sha256: q.reason for q in quarantined}
    lines = []
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(folder) / name
            if not path.is_file():
                continue
            digest = file_sha256(path)
            if digest in by_hash:
                lines.append({"path": str(path), "sha256": digest, "reason": by_hash[digest]})
    write_table(Path(paths_file), ["path", "sha256", "reason"], lines, delimiter="\t")


def _description() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "Name": "sihnet conversion (de-identified)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "GeneratedBy": [
            {"Name": "sihnet", "Version": version("sihnet")},
            {"Name": "dcm2niix", "Version": dcm2niix_version()},
        ],
    }


def dicom_folder_to_nifti(folder: Path, target: Path) -> Path:
    """The one study in a DICOM folder as a de-identified NIfTI at ``target`` (kept if it exists).

    Same discovery, selection, dcm2niix call and header cleaning as ``sihnet convert``; the
    preprocessing cache chooses ``target`` from the folder's content hash.

    Raises:
        SihnetError: no study, several studies, or no usable post-contrast T1 series.
    """
    if target.is_file():
        return target
    series, _ = discover(folder)
    studies = _studies(series)
    if not studies and any(
        f.name.lower().endswith((".nii", ".nii.gz")) for f in folder.rglob("*") if f.is_file()
    ):
        raise SihnetError(
            f"{folder.name} is a folder of NIfTI files, not a DICOM series: give the files "
            "themselves or a manifest"
        )
    if len(studies) != 1:
        raise SihnetError(
            f"DICOM folder holds {len(studies)} studies (expected 1; use 'sihnet convert')"
        )
    choice = choose(studies[0])
    if choice.chosen is None:
        raise SihnetError(f"DICOM folder: {choice.warning}")
    _, image, _, errors = _convert_choice(studies[0], choice, None)
    if image is None:
        raise SihnetError(f"DICOM folder: {'; '.join(errors)}")
    if choice.warning:
        log.warning("DICOM folder: uncertain pick: %s", choice.warning)
    write_nifti_atomic(target, clean_image(image))
    return target
