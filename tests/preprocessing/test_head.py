"""The registration holds on the fields of view of clinical scans: a head with 100 mm of neck below
it, and a head cut off above the vertex, align where the head alone does."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from sihnet.preprocessing.head import head_mask, head_starts
from sihnet.preprocessing.registration import align_to_template, template
from sihnet.synth.cohort import cohort_patients
from sihnet.synth.render import render

SPACING_MM = 2.0
LANDMARKS = np.array([[0.0, -7.0, -17.6], [0.0, -12.8, -30.0], [0.0, 4.0, -17.3]])


@pytest.fixture(scope="module")
def head() -> tuple[np.ndarray, np.ndarray]:
    (patient,) = cohort_patients(1, seed=34)
    data, affine = render(patient, SPACING_MM)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data.astype(np.float32), affine))
    return np.asarray(canonical.dataobj, dtype=np.float32), canonical.affine  # RAS: k upwards


def _with_neck(volume: np.ndarray, affine: np.ndarray, mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The head with ``mm`` of neck below it: a soft-tissue cylinder (muscle, a ring of fat) under
    the head's lower end, in a field of view extended downwards (the array's third axis is the
    synthetic head's vertical)."""
    assert np.allclose(affine[:3, :3], np.diag([SPACING_MM] * 3))
    extra = int(mm / SPACING_MM)
    shape = (volume.shape[0], volume.shape[1], volume.shape[2] + extra)
    necked = np.zeros(shape, dtype=np.float32)
    necked[:, :, extra:] = volume
    level = float(np.percentile(volume[volume > volume.mean()], 50))
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    centre = np.array([shape[0] / 2, shape[1] * 0.45])
    radius = np.hypot(i - centre[0], j - centre[1]) * SPACING_MM
    section = np.where(radius < 50.0, 0.7 * level, 0.0) + np.where(
        (radius >= 50.0) & (radius < 58.0), 1.1 * level, 0.0
    )
    necked[:, :, : extra + 4] = np.maximum(necked[:, :, : extra + 4], section[..., None])
    moved = affine.copy()
    moved[2, 3] -= extra * SPACING_MM
    return necked, moved


def _error(alignment: object, reference: object) -> float:
    return float(
        np.linalg.norm(
            alignment.to_world(LANDMARKS) - reference.to_world(LANDMARKS),  # type: ignore[attr-defined]
            axis=1,
        ).max()
    )


def test_a_head_with_its_neck_aligns_where_the_head_alone_does(
    head: tuple[np.ndarray, np.ndarray],
) -> None:
    volume, affine = head
    alone = align_to_template(volume, affine, check_mirror=False)
    necked = align_to_template(*_with_neck(volume, affine, 120.0), check_mirror=False)
    assert alone.problem == "" and necked.problem == "", (alone.problem, necked.problem)
    assert _error(necked, alone) < 3.0


def test_a_head_cut_above_the_vertex_aligns(head: tuple[np.ndarray, np.ndarray]) -> None:
    volume, affine = head
    alone = align_to_template(volume, affine, check_mirror=False)
    top = int(np.argwhere(volume > 0.2 * volume.max())[:, 2].max())
    cut = volume[:, :, : top - int(25 / SPACING_MM)]
    partial = align_to_template(cut, affine, check_mirror=False)
    assert partial.problem == "" and _error(partial, alone) < 3.0


def test_the_starts_put_the_brain_under_the_top_of_the_head(
    head: tuple[np.ndarray, np.ndarray],
) -> None:
    volume, affine = head
    scaled = np.minimum(volume / np.percentile(volume[volume > volume.mean()], 80), 1.0)
    assert head_mask(scaled).sum() > 0.2 * volume.size
    data, _, template_affine = template()
    alone = align_to_template(volume, affine, check_mirror=False)
    (shift,) = head_starts(scaled, affine, data > 0.05, template_affine)
    assert np.linalg.norm(shift - np.asarray(alone.translation)) < 15.0  # within the capture range
    cut = scaled[:, :, : int(0.8 * scaled.shape[2])]
    assert len(head_starts(cut, affine, data > 0.05, template_affine)) == 3  # no vertex: 3 heights
