"""SIH added to a healthy head (sihnet.real_heads.sih): its inner table found, the layers painted along
it, the sag limited by the head's cisterns, the truth the field's exact change. The source head
here is a rendered healthy phantom, whose inner table the generator knows; the real heads are in
``benchmarks/real_heads.py`` and ``benchmarks/reader_benchmark.py --cohorts ra1``."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from sihnet.preprocessing.cache import VolumeCache
from sihnet.real_heads import sih
from sihnet.synth import anatomy
from sihnet.synth.patient import Acquisition, Baseline, Patient, Signs
from sihnet.synth.render import render
from sihnet.synth.sag_field import MAX_SQUEEZE


def write_healthy_head(path: Path, spacing_mm: float = 2.0) -> Path:
    """A healthy phantom head in the template's own position (world = template mm)."""
    patient = Patient(
        0,
        Signs(),
        Baseline(
            suprasellar_cistern_mm=6.0, prepontine_cistern_mm=6.5, mamillopontine_distance_mm=8.0
        ),
        Acquisition(noise_sd=0.01),
    )
    data, affine = render(patient, spacing_mm)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> sih.SourceHead:
    folder = tmp_path_factory.mktemp("real_head")
    path = write_healthy_head(folder / "healthy.nii.gz")
    return sih.source_head(path, VolumeCache(folder / "cache"))


def true_depth(head: sih.SourceHead, index: np.ndarray) -> np.ndarray:
    """The generator's own depth under the inner table at voxels (N, 3) of the phantom."""
    world = index @ head.affine[:3, :3].T + head.affine[:3, 3]
    fields = anatomy.load_anatomy()
    inner = anatomy.sample(
        fields.inner_distance, fields.distance_grid, torch.from_numpy(world).float(), "border"
    )
    return -inner.numpy()


def test_the_inner_table_is_found_where_the_generator_put_it(head: sih.SourceHead) -> None:
    """Over the convexity (template z > 10 mm) the depth found is within 2 mm of the truth on
    average, and never off by a whole dura's band for most voxels."""
    near = np.argwhere(np.abs(head.depth) < 6.0)
    world = near @ head.affine[:3, :3].T + head.affine[:3, 3]
    convexity = near[world[:, 2] > 10.0]
    error = head.depth[tuple(convexity.T)] - true_depth(head, convexity)
    assert np.median(np.abs(error)) < 1.5, np.median(np.abs(error))
    assert np.mean(np.abs(error) < 3.0) > 0.8


def test_pachymeningeal_enhancement_brightens_the_band_under_the_inner_table(
    head: sih.SourceHead,
) -> None:
    band = (head.depth > 0.5) & (head.depth < 2.5)
    world = np.argwhere(band) @ head.affine[:3, :3].T + head.affine[:3, 3]
    convexity = tuple(np.argwhere(band)[world[:, 2] > 20.0].T)
    healthy = sih.painted(head, Signs())[convexity].mean()
    sick = sih.painted(head, Signs(dural_enhancement=1.0))[convexity].mean()
    assert sick > 1.3 * healthy
    deep = head.depth > 25.0  # the brain's interior is never painted
    assert np.array_equal(sih.painted(head, Signs(dural_enhancement=1.0))[deep], head.volume[deep])


def test_the_sag_is_limited_by_the_heads_cisterns_and_its_truth_is_the_fields_change(
    head: sih.SourceHead,
) -> None:
    none, _, _ = sih.sag_of(head, Signs())
    assert none is None
    assert sih.distances_after(head, None) == pytest.approx(head.distances, abs=1e-3)
    strong = Signs(sag_mm=3.5, midbrain_compression_mm=4.5)
    field, diencephalon, pons = sih.sag_of(head, strong)
    assert field is not None
    gap = abs((np.subtract(*head.ends["suprasellar"])) @ head.vertical)
    assert diencephalon == pytest.approx(sih.SQUEEZE_MARGIN * MAX_SQUEEZE * gap, rel=1e-6) or (
        diencephalon == pytest.approx(8.0)
    )
    assert pons == pytest.approx(1.75)
    after = sih.distances_after(head, field)
    for name in after:
        assert after[name] < head.distances[name]  # every cistern narrower
    assert head.distances["suprasellar_cistern_mm"] - after["suprasellar_cistern_mm"] == (
        pytest.approx(diencephalon, abs=0.1)
    )
    imaged = sih.applied_signs(strong, diencephalon)
    assert imaged.pituitary_mm == 0.0
    assert imaged.sag_mm + imaged.midbrain_compression_mm == pytest.approx(diencephalon)


def test_the_acquisition_keeps_the_world_and_the_seed_decides(head: sih.SourceHead) -> None:
    a, affine_a = sih.acquired(head.volume, head.affine, 2.5, np.random.default_rng(3))
    b, affine_b = sih.acquired(head.volume, head.affine, 2.5, np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(affine_a, affine_b)
    assert a.dtype == np.int16
    assert np.sqrt((affine_a[:3, :3] ** 2).sum(0)) == pytest.approx([2.5] * 3)
    centre = head.affine[:3, :3] @ ((np.array(head.volume.shape) - 1) / 2) + head.affine[:3, 3]
    new_centre = affine_a[:3, :3] @ ((np.array(a.shape) - 1) / 2) + affine_a[:3, 3]
    assert new_centre == pytest.approx(centre, abs=1e-6)
