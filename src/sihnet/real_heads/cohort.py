"""``run_real_synth``: a cohort of real healthy heads with SIH added (:mod:`sihnet.real_heads.sih`),
written as a synthetic cohort is (``cohort.csv``, ``truth.csv``, ``ceiling.json``,
``montage.png``), so that the reader's benchmark, training and evaluation take it unchanged."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from sihnet import progress
from sihnet.atomic import write_nifti_atomic
from sihnet.bern import bern_score
from sihnet.errors import SihnetError
from sihnet.preprocessing.cache import VolumeCache
from sihnet.preprocessing.volume import voxel_spacing
from sihnet.real_heads import sih
from sihnet.synth.cohort import (
    MANIFEST,
    MONTAGE,
    TRUTH_PREFIX,
    cohort_patients,
    manifest_row,
    prepare_output,
    write_cohort_tables,
    write_montage,
)
from sihnet.synth.measure import measure_bern_fields
from sihnet.synth.patient import Patient

log = logging.getLogger(__name__)


def head_files(folder: Path) -> list[Path]:
    """The NIfTI scans in ``folder`` (``*.nii``, ``*.nii.gz``), sorted by name.

    Raises:
        SihnetError: not a folder, or none in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SihnetError(f"--heads {folder.name} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    if not files:
        raise SihnetError(f"--heads {folder.name} holds no NIfTI scan (*.nii, *.nii.gz)")
    return files


def _heads(paths: list[Path], cache: VolumeCache) -> list[sih.SourceHead]:
    """The source heads the reader can read (each one it cannot is logged with why and skipped).

    Raises:
        SihnetError: none of them can be used.
    """
    heads = []
    for path in paths:
        try:
            heads.append(sih.source_head(path, cache))
        except SihnetError as error:
            log.warning("source head skipped: %s", error)
    if not heads:
        raise SihnetError("no source head could be read (each one's reason is logged above)")
    return heads


def _one(
    out: Path,
    pid: str,
    head: sih.SourceHead,
    patient: Patient,
    spacing_mm: float | None,
    seed: list[int],
    reader: tuple[float, np.random.Generator],
) -> tuple[Patient, dict[str, float | int], dict[str, Any], dict[str, Any]]:
    """Make and write one patient's study (``out/images/PID.nii.gz``).

    Args:
        reader: the manifest's reader noise (mm) and its random source (also age and sex).

    Returns:
        (the patient as imaged, its exact Bern fields, its truth row, its manifest row).
    """
    field, diencephalon, pons = sih.sag_of(head, patient.signs)
    shown = Patient(
        patient.label,
        sih.applied_signs(patient.signs, diencephalon),
        normal_appearing=patient.normal_appearing,
    )
    volume = sih.painted(head, shown.signs)
    if field is not None:
        volume = field.warp(volume, head.affine)
    spacing = spacing_mm or float(voxel_spacing(head.affine).min())
    data, affine = sih.acquired(volume, head.affine, spacing, np.random.default_rng(seed))
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    file = out / "images" / f"{pid}.nii.gz"
    write_nifti_atomic(file, image)
    distances = sih.distances_after(head, field)
    exact = measure_bern_fields(shown, distances=distances)
    truth = {
        "patient_id": pid,
        "label": shown.label,
        "normal_appearing": int(shown.normal_appearing),
        "source_head": head.name,
        "diencephalon_shift_mm": round(diencephalon, 3),
        "pons_shift_mm": round(pons, 3),
        **{f"source_{k}": round(v, 3) for k, v in head.distances.items()},
        **{k: round(float(v), 4) for k, v in vars(shown.signs).items()},
        "spacing_mm": spacing,
        **{f"{TRUTH_PREFIX}{k}": v for k, v in exact.items()},
        f"{TRUTH_PREFIX}score": bern_score(exact),
    }
    return shown, exact, truth, manifest_row(out, pid, file, shown, reader, distances)


def run_real_synth(
    out: Path,
    heads: list[Path],
    cache: VolumeCache,
    n: int = 129,
    seed: int = 0,
    spacing_mm: float | None = None,
    reader_noise_mm: float = 0.0,
) -> Path:
    """Write a cohort of real heads with SIH added to ``out``.

    Args:
        heads: healthy head scans (NIfTI); the patients are spread over those the reader reads.
        cache: where the heads' readings and alignments are kept.
        n: patients (66/129 with a fistula, as :func:`sihnet.synth.cohort.run_synth`).
        seed: the same seed and heads give identical files.
        spacing_mm: the studies' voxel size (isotropic), mm; None: each head's own finest.
        reader_noise_mm: measurement noise of the Bern distances in ``cohort.csv``.

    Returns:
        The manifest path ``out/cohort.csv``.
    """
    out = prepare_output(out, n, spacing_mm)
    sources = _heads(sorted(heads), cache)
    patients = cohort_patients(n, seed)
    order = np.random.default_rng([seed, 17]).permutation(np.arange(n) % len(sources))
    job, started = progress.active(), time.perf_counter()
    reader = (reader_noise_mm, np.random.default_rng([seed, n, 7]))
    made = []
    for i, (patient, which) in enumerate(zip(patients, order, strict=True)):
        made.append(
            _one(out, f"real-{i + 1:03d}", sources[which], patient, spacing_mm, [seed, i], reader)
        )
        if job is not None:
            job.update("synthesis", i + 1, n)
    log.info("made %d studies in %.1f s", n, time.perf_counter() - started)
    imaged, fields, truth, manifest = (list(column) for column in zip(*made, strict=True))
    write_cohort_tables(out, manifest, truth, imaged, fields)
    write_montage(
        out / MONTAGE,
        [(r["patient_id"], int(r["label"]), out / r["image"]) for r in manifest[:8]],
    )
    return out / MANIFEST
