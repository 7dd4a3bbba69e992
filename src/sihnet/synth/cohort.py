"""``run_synth``: write a synthetic cohort (NIfTI files, ``cohort.csv``, ``truth.csv``,
``ceiling.json``, ``montage.png``)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from sihnet import progress
from sihnet.atomic import write_atomic, write_json_atomic, write_nifti_atomic
from sihnet.bern import FIELDS, bern_score
from sihnet.errors import SihnetError
from sihnet.outputs import check_output_folder
from sihnet.schemas import CeilingFile, CohortReaders, read_json
from sihnet.synth.ceiling import cohort_readers, generator_ceiling
from sihnet.synth.measure import measure_bern_fields
from sihnet.synth.patient import Patient, sample_patient
from sihnet.tables import read_rows, write_table

log = logging.getLogger(__name__)

PAPER_COHORT = (129, 66)  # patients, with fistula
MANIFEST, TRUTH, CEILING, MONTAGE = "cohort.csv", "truth.csv", "ceiling.json", "montage.png"
TRUTH_PREFIX = "bern_"  # truth.csv's ground-truth Bern columns: bern_<item>, bern_score
MANIFEST_COLUMNS = (
    "patient_id",
    "image",
    "label",
    "age",
    "sex",
    "site",
    *FIELDS,
)


def cohort_ceiling(manifest: Path, patient_ids: Iterable[str]) -> CohortReaders | None:
    """The ceiling of a synthetic cohort's own patients (``ceiling.json`` beside its manifest:
    the ideal reader and the ground-truth Bern score), when the manifest holds exactly the
    cohort's patients; None for any other manifest (a subset has another ceiling).

    Raises:
        SihnetError: the cohort's ceiling.json is damaged.
    """
    folder = Path(manifest).parent
    if not ((folder / CEILING).is_file() and (folder / TRUTH).is_file()):
        return None
    if {r["patient_id"] for r in read_rows(folder / TRUTH)} != set(patient_ids):
        return None
    return read_json(folder / CEILING, CeilingFile).cohort


def prepare_output(out: Path, n: int, spacing_mm: float | None) -> Path:
    """``out`` made ready for a cohort of ``n`` patients at ``spacing_mm`` (``out/images``
    created).

    Raises:
        SihnetError: fewer than two patients, a voxel size outside 0.25-8 mm, or ``out`` holds
            something else than a cohort.
    """
    if n < 2:
        raise SihnetError("--n must be at least 2")
    if spacing_mm is not None and not 0.25 <= spacing_mm <= 8:
        raise SihnetError("--spacing must be between 0.25 and 8 mm")
    out = Path(out)
    check_output_folder(out, "synth")
    if out.is_dir() and any(out.iterdir()) and not (out / TRUTH).is_file():
        raise SihnetError(
            f"--out {out.name} is not empty and not an earlier synthetic cohort; give a new folder"
        )
    (out / "images").mkdir(parents=True, exist_ok=True)
    return out


def cohort_patients(n: int, seed: int) -> list[Patient]:
    """Draw ``n`` patients, ``round(n * 66 / 129)`` with a fistula, in shuffled order."""
    rng = np.random.default_rng(seed)
    positives = round(n * PAPER_COHORT[1] / PAPER_COHORT[0])
    labels = rng.permutation(np.array([1] * positives + [0] * (n - positives)))
    return [
        sample_patient(np.random.default_rng([seed, i]), int(label))
        for i, label in enumerate(labels)
    ]


def _render_one(job: tuple[Patient, float, Path, int]) -> float:
    """Worker: render one study and write it atomically; returns seconds."""
    import torch

    from sihnet.synth.render import render

    patient, spacing, path, threads = job
    torch.set_num_threads(threads)
    started = time.perf_counter()
    data, affine = render(patient, spacing)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    write_nifti_atomic(path, image)
    return time.perf_counter() - started


def _truth_row(patient_id: str, patient: Patient, bern: dict[str, float | int]) -> dict[str, Any]:
    """Every parameter of the patient, and its ground-truth Bern fields (``bern_<item>``) and
    score (``bern_score``)."""
    row: dict[str, Any] = {
        "patient_id": patient_id,
        "label": patient.label,
        "normal_appearing": int(patient.normal_appearing),
    }
    for group in (patient.signs, patient.baseline, patient.acquisition):
        for key, value in dataclasses.asdict(group).items():
            row[key] = (
                ";".join(f"{v:.3f}" for v in value)
                if isinstance(value, tuple)
                else (f"{value:.4f}" if isinstance(value, float) else value)
            )
    row.update({f"{TRUTH_PREFIX}{name}": value for name, value in bern.items()})
    row[f"{TRUTH_PREFIX}score"] = bern_score(bern)
    return row


def write_montage(path: Path, images: list[tuple[str, int, Path]]) -> None:
    """Mid-sagittal slices (canonical RAS orientation) of the given studies, labelled."""
    from matplotlib.figure import Figure

    columns = max(1, (len(images) + 1) // 2)
    figure = Figure(figsize=(2.6 * columns, 5.6))
    axes = figure.subplots(2, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (patient_id, label, file) in zip(axes.flat, images, strict=False):
        image = nib.as_closest_canonical(nib.load(str(file)))
        data = np.asarray(image.dataobj, dtype=np.float32)
        zooms = image.header.get_zooms()
        axis.imshow(
            data[data.shape[0] // 2].T,
            origin="lower",
            cmap="gray",
            vmin=0,
            vmax=float(np.percentile(data, 99.7)),
            aspect=zooms[2] / zooms[1],
        )
        axis.set_title(f"{patient_id}  {'fistula' if label else 'no fistula'}", fontsize=8)
    figure.tight_layout()
    write_atomic(path, lambda temp: figure.savefig(temp, format="png", dpi=90))


def _render_all(jobs: list[tuple[Patient, float, Path, int]], workers: int) -> None:
    started = time.perf_counter()
    job = progress.active()
    seconds: list[float] = []
    with contextlib.ExitStack() as stack:
        if workers == 1:
            rendered: Iterator[float] = map(_render_one, jobs)
        else:
            pool = stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=workers, mp_context=multiprocessing.get_context("spawn")
                )
            )
            rendered = pool.map(_render_one, jobs)
        for spent in rendered:
            seconds.append(spent)
            if job is not None:
                job.update("synthesis", len(seconds), len(jobs))
    log.info(
        "rendered %d studies in %.1f s (%.2f s each on %d workers)",
        len(jobs),
        time.perf_counter() - started,
        float(np.mean(seconds)),
        workers,
    )


def manifest_row(
    out: Path,
    pid: str,
    file: Path,
    patient: Patient,
    reader: tuple[float, np.random.Generator],
    distances: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One ``cohort.csv`` row: image, label, demographics and the Bern fields as a reader with
    ``reader``'s noise (mm) measures them, drawn from its random source (also age and sex);
    ``distances`` where the truth is not the generator's geometry (:mod:`sihnet.real_heads`)."""
    noise_mm, rng = reader
    return {
        "patient_id": pid,
        "image": file.relative_to(out).as_posix(),
        "label": patient.label,
        "age": int(np.clip(rng.normal(54, 14), 18, 90)),
        "sex": "F" if rng.random() < 0.62 else "M",
        "site": "synthetic" if distances is None else "real",
        **measure_bern_fields(patient, noise_mm, rng, distances=distances),
    }


def write_cohort_tables(
    out: Path,
    manifest: list[dict[str, Any]],
    truth: list[dict[str, Any]],
    patients: list[Patient],
    fields: list[dict[str, float | int]],
) -> None:
    """``cohort.csv``, ``truth.csv`` and ``ceiling.json`` (the generator's and these patients'
    readers, from their exact Bern ``fields``)."""
    write_table(out / MANIFEST, MANIFEST_COLUMNS, manifest)
    write_table(out / TRUTH, list(truth[0]), truth)
    ceiling = CeilingFile(generator=generator_ceiling(), cohort=cohort_readers(patients, fields))
    write_json_atomic(out / CEILING, ceiling.model_dump())


def run_synth(
    out: Path,
    n: int = 129,
    seed: int = 0,
    spacing_mm: float = 1.0,
    reader_noise_mm: float = 0.0,
    workers: int | None = None,
) -> Path:
    """Write a synthetic cohort to ``out``.

    Args:
        out: output folder (created).
        n: number of patients (the paper: 129, of whom 66 with fistula; the ratio is kept).
        seed: the same seed gives byte-identical files.
        spacing_mm: in-plane voxel size (3D acquisitions: isotropic), mm.
        reader_noise_mm: measurement noise of the Bern distances in ``cohort.csv`` (0 = exact).
        workers: parallel processes (default: up to the number of cores, 1 for small cohorts).

    Returns:
        The manifest path ``out/cohort.csv``.
    """
    out = prepare_output(out, n, spacing_mm)
    patients = cohort_patients(n, seed)
    ids = [f"synth-{i + 1:03d}" for i in range(n)]
    files = [out / "images" / f"{pid}.nii.gz" for pid in ids]
    workers = workers or (min(os.cpu_count() or 1, 4) if n >= 8 else 1)
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [(p, spacing_mm, f, threads) for p, f in zip(patients, files, strict=True)]
    _render_all(jobs, workers)
    reader = (reader_noise_mm, np.random.default_rng([seed, n, 7]))
    rows = [manifest_row(out, *job, reader) for job in zip(ids, files, patients, strict=True)]
    bern = [measure_bern_fields(p) for p in patients]
    truth = [_truth_row(pid, p, b) for pid, p, b in zip(ids, patients, bern, strict=True)]
    write_cohort_tables(out, rows, truth, patients, bern)
    shown = [
        (pid, p.label, f) for pid, p, f in zip(ids, patients, files, strict=True) if p.label == 1
    ][:4]
    shown += [
        (pid, p.label, f) for pid, p, f in zip(ids, patients, files, strict=True) if p.label == 0
    ][:4]
    write_montage(out / MONTAGE, shown)
    return out / MANIFEST
