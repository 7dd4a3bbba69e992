"""``sihnet convert``: DICOM studies -> de-identified BIDS-style NIfTI + ``manifest.csv``.

Output layout::

    OUT/sub-<id>/anat/sub-<id>_ce-gadolinium_T1w.nii.gz  (+ .json sidecar, allowlisted fields)
    OUT/manifest.csv            patient_id,image[,label,…]   (DESIGN.md contract)
    OUT/participants.tsv        (BIDS; the same columns)
    OUT/dataset_description.json
    OUT/selection.tsv           every series of every study: what it is, what was decided, why
    OUT/quarantine.tsv          files not used: SHA-256 of the file, size, reason (no paths)

A patient with several studies gets ``_run-<k>`` in the file name. No header value, source path
or folder name reaches a file, a log line or an error message; source paths of quarantined files
are written only to ``--quarantine-paths``, a file the user places outside the output.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib

from sihnet.atomic import write_atomic, write_json_atomic, write_text_atomic
from sihnet.data.manifest import OPTIONAL_COLUMNS, _read_table
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256
from sihnet.ingest.dcm2niix import convert_series, dcm2niix_version
from sihnet.ingest.deid import Pseudonyms, allowlisted, clean_image
from sihnet.ingest.discover import Quarantined, Series, discover
from sihnet.ingest.select import Choice, choose, uncertainty

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


def save_image(path: Path, image: nib.Nifti1Image) -> None:
    """Write a cleaned NIfTI atomically (``.nii.gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda temp: nib.save(image, str(temp)), suffix=".nii.gz")


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


def _tsv(rows: Sequence[dict[str, str]], columns: Sequence[str], delimiter: str = "\t") -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), delimiter=delimiter, lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _read_labels(path: Path | None) -> tuple[dict[str, dict[str, str]], list[str]]:
    if path is None:
        return {}, []
    columns, rows = _read_table(Path(path))
    if "patient_id" not in columns:
        raise SihnetError(f"labels table {Path(path).name}: missing column patient_id")
    if "label" not in columns:
        raise SihnetError(f"labels table {Path(path).name}: missing column label")
    kept = [c for c in OPTIONAL_COLUMNS if c in columns]
    return {row["patient_id"]: row for row in rows}, kept


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
    if not dicom_dir.is_dir():
        raise SihnetError("the DICOM input is not a folder")
    if out.resolve() == dicom_dir.resolve() or dicom_dir.resolve() in out.resolve().parents:
        raise SihnetError("--out must not be inside the DICOM input folder")
    pseudonyms.check_outside(out)
    if quarantine_paths is not None and out.resolve() in Path(quarantine_paths).resolve().parents:
        raise SihnetError(
            "--quarantine-paths must be outside the output folder (it holds source paths)"
        )
    label_rows, label_columns = _read_labels(labels)
    overrides = overrides or {}
    series, quarantined = discover(dicom_dir)
    studies = _studies(series)
    log.info(
        "found %d series in %d studies; %d files quarantined",
        len(series),
        len(studies),
        len(quarantined),
    )
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, int] = {}
    subjects_per_patient: dict[str, int] = {}
    for study in studies:
        patient = study[0].patient_id or f"study:{study[0].study_uid}"
        subjects_per_patient[patient] = subjects_per_patient.get(patient, 0) + 1
    selection: list[dict[str, str]] = []
    manifest: list[dict[str, str]] = []
    converted = failed = uncertain = 0
    matched_labels: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="sihnet-convert-") as scratch:
        for study in studies:
            patient = study[0].patient_id or f"study:{study[0].study_uid}"
            subject = pseudonyms.of(patient)
            runs[subject] = runs.get(subject, 0) + 1
            choice = choose(study, _override_for(study, overrides))
            note = choice.warning
            if choice.chosen is None:
                failed += 1
                log.warning(
                    "%s study %d: not converted: %s", subject, runs[subject], choice.warning
                )
                selection += _selection_rows(subject, runs[subject], study, choice, "")
                continue
            converted_series = _convert_choice(study, choice, Path(scratch))
            choice, image, sidecar, errors = converted_series
            for error in errors:
                log.warning("%s study %d: %s", subject, runs[subject], error)
            if image is None:
                failed += 1
                selection += _selection_rows(
                    subject, runs[subject], study, choice, "; ".join(errors)
                )
                continue
            assert choice.chosen is not None
            chosen = study[choice.chosen]
            note = "; ".join(n for n in (choice.warning, *errors) if n)
            if choice.warning:
                uncertain += 1
                log.warning(
                    "%s study %d: uncertain pick: %s", subject, runs[subject], choice.warning
                )
            run = f"_run-{runs[subject]}" if subjects_per_patient[patient] > 1 else ""
            relative = Path(subject) / "anat" / f"{subject}_ce-gadolinium{run}_T1w.nii.gz"
            save_image(out / relative, clean_image(image))
            write_json_atomic(out / str(relative).replace(".nii.gz", ".json"), allowlisted(sidecar))
            converted += 1
            selection += _selection_rows(subject, runs[subject], study, choice, note)
            row = {"patient_id": subject, "image": relative.as_posix()}
            if labels is not None:
                source = label_rows.get(patient, {})
                if source:
                    matched_labels.add(patient)
                row.update({c: source.get(c, "") for c in label_columns})
            manifest.append(row)
            log.info(
                "%s study %d: series %s converted", subject, runs[subject], chosen.series_number
            )
    pseudonyms.save()
    columns = ["patient_id", "image", *label_columns]
    write_text_atomic(out / "manifest.csv", _tsv(manifest, columns, delimiter=","))
    participants: dict[str, dict[str, str]] = {}
    for row in manifest:
        participants.setdefault(
            row["patient_id"],
            {"participant_id": row["patient_id"], **{c: row.get(c, "") for c in label_columns}},
        )
    write_text_atomic(
        out / "participants.tsv",
        _tsv(list(participants.values()), ["participant_id", *label_columns]),
    )
    write_text_atomic(out / "selection.tsv", _tsv(selection, SELECTION_COLUMNS))
    _write_quarantine(out, quarantined, dicom_dir, quarantine_paths)
    write_json_atomic(out / "dataset_description.json", _description())
    if labels is not None:
        missing = len(set(label_rows) - matched_labels)
        unlabelled = sum(1 for row in manifest if not row.get("label"))
        if missing or unlabelled:
            log.warning(
                "labels: %d labelled patients have no converted study; %d converted studies have no label",
                missing,
                unlabelled,
            )
    return ConvertSummary(len(studies), converted, failed, len(quarantined), uncertain)


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
    write_text_atomic(out / "quarantine.tsv", _tsv(rows, ["sha256", "size_bytes", "reason"]))
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
    write_text_atomic(Path(paths_file), _tsv(lines, ["path", "sha256", "reason"]))


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


def dicom_folder_key(folder: Path) -> str:
    """Cache key of a DICOM folder: SHA-256 over its files' relative paths, sizes and mtimes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def dicom_folder_to_nifti(folder: Path, cache_root: Path | None = None) -> Path:
    """The one study in a DICOM folder as a de-identified NIfTI, converted once and cached.

    Same discovery, selection, dcm2niix call and header cleaning as ``sihnet convert``.

    Raises:
        SihnetError: no study, several studies, or no usable post-contrast T1 series.
    """
    from sihnet.preprocessing.cache import default_cache_dir

    root = Path(cache_root or default_cache_dir()) / "dicom"
    target = root / f"{dicom_folder_key(folder)}.nii.gz"
    if target.is_file():
        return target
    series, _ = discover(folder)
    studies = _studies(series)
    if len(studies) != 1:
        raise SihnetError(
            f"DICOM folder holds {len(studies)} studies (expected 1; use 'sihnet convert')"
        )
    choice = choose(studies[0])
    if choice.chosen is None:
        raise SihnetError(f"DICOM folder: {choice.warning}")
    if choice.warning:
        log.warning("DICOM folder: %s", choice.warning)
    _, image, _, errors = _convert_choice(studies[0], choice, None)
    if image is None:
        raise SihnetError(f"DICOM folder: {'; '.join(errors)}")
    save_image(target, clean_image(image))
    return target
