"""One series to NIfTI with dcm2niix (the binary shipped in its PyPI wheel), every flag explicit.

A user's ``~/.dcm2nii.ini`` cannot change the result: ``-g i`` makes dcm2niix ignore its defaults
file, ``HOME`` points to an empty folder, and every option is passed. The series' files are
linked under neutral names into a private folder, so no source path or header value reaches a
file name. The NIfTI affine is checked against ImagePositionPatient/ImageOrientationPatient.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydantic import BaseModel, ConfigDict

from sihnet.errors import SihnetError
from sihnet.ingest.discover import Series

FLAGS = [
    "-g", "i",  # ignore ~/.dcm2nii.ini (reset defaults)
    "-a", "n",  # files of a series may sit anywhere
    "-b", "y",  # BIDS sidecar
    "-ba", "y",  # anonymised sidecar (we keep an allowlist on top)
    "-c", "",  # nothing in aux_file
    "-d", "0",  # the linked folder only
    "-e", "n",  # NIfTI
    "-f", "image",  # neutral output name
    "-i", "n",  # selection is ours
    "-l", "o",  # original integer scaling
    "-m", "2",  # merge 2D slices: auto
    "-p", "y",  # Philips precise float
    "-s", "n",
    "-v", "0",
    "-w", "1",  # overwrite
    "-x", "n",  # no cropping
    "-z", "n",  # uncompressed; sihnet writes the final .nii.gz
    "--big-endian", "o",
    "--progress", "n",
]  # fmt: skip

EXIT_CODES = {
    1: "dcm2niix found no DICOM images it could convert",
    2: "dcm2niix found no DICOM images",
    3: "dcm2niix could not read the series",
    4: "dcm2niix could not read the series",
    5: "dcm2niix could not write the NIfTI",
    6: "dcm2niix reported a missing input or output folder",
    7: "dcm2niix could not write to the output folder",
    8: "dcm2niix converted some but not all images",
    9: "dcm2niix: rename error",
    10: "dcm2niix: incompatible option",
}


class Dcm2niixSidecar(BaseModel):
    """dcm2niix's BIDS sidecar of one series (a JSON object of header fields; ``sihnet convert``
    keeps only its allowlisted fields)."""

    model_config = ConfigDict(extra="allow")


def dcm2niix_binary() -> str:
    """Path of the dcm2niix executable from the ``dcm2niix`` wheel."""
    import dcm2niix

    return str(dcm2niix.bin)


def dcm2niix_version() -> str:
    """The wheel's dcm2niix version line, e.g. ``v1.0.20260724``."""
    result = subprocess.run(
        [dcm2niix_binary(), "--version"], capture_output=True, text=True, timeout=60
    )
    words = (result.stdout + result.stderr).split()
    return next((w for w in words if w.startswith("v1.")), "unknown")


def run_dcm2niix(files: list[Path], workdir: Path) -> tuple[Path, dict[str, Any]]:
    """Convert one series' files; returns the NIfTI and its sidecar (not yet de-identified).

    Raises:
        SihnetError: dcm2niix failed (its exit code as words) or did not make exactly one volume.
    """
    source, output = workdir / "in", workdir / "out"
    source.mkdir(parents=True)
    output.mkdir()
    for index, path in enumerate(files):
        os.symlink(Path(path).resolve(), source / f"{index:06d}.dcm")
    home = workdir / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    command = [dcm2niix_binary(), *FLAGS, "-o", str(output), str(source)]
    try:
        result = subprocess.run(command, capture_output=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        raise SihnetError("dcm2niix did not finish within 10 minutes") from None
    if result.returncode != 0:
        raise SihnetError(
            EXIT_CODES.get(result.returncode, f"dcm2niix failed (exit code {result.returncode})")
        )
    volumes = sorted(output.glob("*.nii"))
    if len(volumes) != 1:
        raise SihnetError(f"dcm2niix made {len(volumes)} volumes from one series (expected 1)")
    sidecar_path = volumes[0].with_suffix(".json")
    sidecar = (
        Dcm2niixSidecar.model_validate(json.loads(sidecar_path.read_text())).model_dump()
        if sidecar_path.is_file()
        else {}
    )
    return volumes[0], sidecar


def check_geometry(image: Any, series: Series) -> None:
    """The NIfTI's corner voxels must sit where the first and last slices' DICOM positions are.

    ImagePositionPatient is the centre of the first voxel of a slice in LPS mm; the NIfTI affine
    maps voxel centres to RAS mm. Tolerance: half the smallest voxel size (at least 0.05 mm).

    Raises:
        SihnetError: the positions disagree, or the volume is not 3D.
    """
    shape = image.shape
    if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
        raise SihnetError(
            f"converted series is {len(shape)}D with shape {tuple(shape)} (expected one 3D volume)"
        )
    if len(series.positions) == 0 or series.orientation is None:
        return
    affine = np.asarray(image.affine, dtype=np.float64)
    corners = np.array(
        [[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)]
    )
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    normal = np.cross(series.orientation[:3], series.orientation[3:])
    order = np.argsort(series.positions @ normal)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    tolerance = max(0.5 * float(spacing.min()), 0.05)
    for index in (order[0], order[-1]):
        lps = series.positions[index]
        ras = np.array([-lps[0], -lps[1], lps[2]])
        if np.linalg.norm(world - ras, axis=1).min() > tolerance:
            raise SihnetError(
                "converted volume's affine disagrees with ImagePositionPatient/ImageOrientationPatient"
            )


def convert_series(
    series: Series, scratch: Path | None = None
) -> tuple[nib.Nifti1Image, dict[str, Any]]:
    """dcm2niix + geometry check for one series; dcm2niix's output kept voxel for voxel.

    The image holds dcm2niix's stored values (e.g. int16) with its slope and intercept set in the
    header, so saving it writes the same stored values and scaling (loading scaled data as float
    and saving it under an int16 header would make nibabel choose a new slope: a lossy
    re-quantisation of e.g. Philips data). Read voxel values from the saved file.

    Returns:
        ``(image, sidecar)``: a nibabel image (header not yet cleaned) and dcm2niix's sidecar.
    """
    with tempfile.TemporaryDirectory(dir=scratch, prefix="sihnet-dcm-") as temp:
        path, sidecar = run_dcm2niix(series.files, Path(temp))
        loaded: Any = nib.load(str(path))
        stored = np.asarray(loaded.dataobj.get_unscaled())
        image = nib.Nifti1Image(stored, loaded.affine, loaded.header)
        image.header.set_slope_inter(loaded.dataobj.slope, loaded.dataobj.inter)
    check_geometry(image, series)
    return image, sidecar
