"""A scan whose head was masked away is said, never measured: skull-stripped (everything outside
the brain one value), or defaced or cropped through the skull base; the whole head is read."""

from __future__ import annotations

import numpy as np
import pytest

from sihnet.preprocessing.registration import align_to_template, template
from sihnet.reader.masked import masked_reason
from sihnet.reader.profiles import Scan
from sihnet.synth.cohort import cohort_patients
from sihnet.synth.render import render


@pytest.fixture(scope="module")
def head() -> tuple[Scan, object]:
    (patient,) = cohort_patients(1, seed=35)
    data, affine = render(patient, 2.5)
    scan = Scan(data.astype(np.float32), affine)
    return scan, align_to_template(scan.volume, affine, check_mirror=False)


def _template_coordinates(scan: Scan, alignment: object) -> np.ndarray:
    """Every voxel's template mm (I, J, K, 3), through the inverse alignment."""
    index = np.indices(scan.volume.shape).reshape(3, -1).T.astype(np.float64)
    world = index @ scan.affine[:3, :3].T + scan.affine[:3, 3]
    a = alignment  # world = scale * R @ mni + t
    mni = (world - np.asarray(a.translation)) @ a.rotation_matrix / a.scale  # type: ignore[attr-defined]
    return mni.reshape(*scan.volume.shape, 3)


def test_a_whole_head_is_not_masked(head: tuple[Scan, object]) -> None:
    scan, alignment = head
    assert masked_reason(scan, alignment) == ""  # type: ignore[arg-type]


def test_a_skull_stripped_scan_is_said(head: tuple[Scan, object]) -> None:
    from scipy import ndimage

    scan, alignment = head
    _, mask, affine = template()
    inverse = np.linalg.inv(affine)
    mni = _template_coordinates(scan, alignment)
    voxels = mni @ inverse[:3, :3].T + inverse[:3, 3]
    brain = ndimage.map_coordinates(mask.astype(np.float32), voxels.reshape(-1, 3).T, order=0)
    stripped = np.where(brain.reshape(scan.volume.shape) > 0, scan.volume, 0.0)
    reason = masked_reason(Scan(stripped.astype(np.float32), scan.affine), alignment)  # type: ignore[arg-type]
    assert reason == "skull-stripped: the dura and the cisterns are masked"


def test_a_scan_cropped_through_the_skull_base_is_said(head: tuple[Scan, object]) -> None:
    from sihnet.reader.reading import read_scan

    scan, alignment = head
    mni = _template_coordinates(scan, alignment)
    cropped = np.where(mni[..., 2] > -12.0, scan.volume, 0.0).astype(np.float32)
    reason = masked_reason(Scan(cropped, scan.affine), alignment)  # type: ignore[arg-type]
    assert reason.startswith("masked at the skull base")
    reading = read_scan(cropped, scan.affine, alignment)  # type: ignore[arg-type]
    assert reading.problem == f"not measured: {reason}" and reading.items == {}
