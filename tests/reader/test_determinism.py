"""The same scan, the same reading: ``sihnet measure`` run twice with empty caches, once on one
thread (and, on an AVX-512 machine, numpy and OpenBLAS held to their AVX2 kernels: the other CPU
class) and once with every thread, writes the same table and the same readings (issue 37)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sihnet.synth.cohort import cohort_patients
from sihnet.synth.render import render

ONE_THREAD = {
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def _avx2_kernels() -> dict[str, str]:
    """Environment that holds numpy and OpenBLAS to AVX2 on an AVX-512 machine ({} elsewhere)."""
    from numpy._core._multiarray_umath import __cpu_features__

    if not __cpu_features__.get("AVX512F"):
        return {}
    return {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"}


def _measure(images: list[Path], out: Path, extra: dict[str, str], drop: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in drop} | extra
    code = (
        "import sys; from sihnet.cli import main; "
        f"sys.exit(main(['measure', *{[str(i) for i in images]!r}, '--out', {str(out / 'out')!r}, "
        f"'--cache-dir', {str(out / 'cache')!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _readings(out: Path) -> dict[str, dict[str, object]]:
    readings = {}
    for path in sorted((out / "out" / "readings").glob("*.json")):
        reading = json.loads(path.read_text())
        reading.pop("seconds")  # how long it took is the one thing allowed to differ
        readings[path.name] = reading
    return readings


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
def test_two_reads_with_empty_caches_on_one_and_on_all_threads_are_identical(
    tmp_path: Path,
) -> None:
    images = []
    for i, patient in enumerate(cohort_patients(2, seed=37)):
        data, affine = render(patient, 2.5)
        images.append(tmp_path / f"head_{i}.nii.gz")
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(images[-1]))
    threads = ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    _measure(images, tmp_path / "one", ONE_THREAD | _avx2_kernels(), drop=threads)
    _measure(images, tmp_path / "all", {}, drop=threads)
    one, every = tmp_path / "one", tmp_path / "all"
    table = (one / "out" / "measurements.csv").read_text()
    assert table == (every / "out" / "measurements.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 2 and all(r["problem"] == "" for r in rows)  # both heads were read
    first, second = _readings(one), _readings(every)
    assert len(first) == 2 and first == second  # landmarks and levels to the last bit


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
def test_the_alignment_does_not_depend_on_itks_thread_count() -> None:
    """In one process with ITK on two threads: the same scan aligned twice gives the same
    alignment, and the caller's thread count is given back."""
    import SimpleITK as sitk

    from sihnet.preprocessing.registration import align_to_template

    (patient,) = cohort_patients(1, seed=38)
    data, affine = render(patient, 3.0)
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    try:
        first = align_to_template(data.astype(np.float32), affine, check_mirror=False)
        second = align_to_template(data.astype(np.float32), affine, check_mirror=False)
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 2
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert first == second
