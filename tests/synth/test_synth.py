"""The synthetic cohort: reproducible, each sign does what it says, geometry and calibration hold."""

import csv
import dataclasses
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from sihnet.synth import anatomy as atlas
from sihnet.synth.cohort import cohort_patients, run_synth
from sihnet.synth.geometry import SkullBase
from sihnet.synth.measure import measure_bern_fields, measure_distances
from sihnet.synth.patient import Acquisition, Patient, Signs
from sihnet.synth.render import render, template_to_world, tissue_intensity

PLAIN = Acquisition(noise_sd=0.0, bias_sd=0.0)


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    run_synth(tmp_path / "a", n=3, seed=11, spacing_mm=8.0, workers=1)
    run_synth(tmp_path / "b", n=3, seed=11, spacing_mm=8.0, workers=1)
    run_synth(tmp_path / "c", n=3, seed=12, spacing_mm=8.0, workers=1)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["synth-001.nii.gz"] != digest(tmp_path / "c")["synth-001.nii.gz"]


def test_cohort_files_follow_the_manifest_contract(tiny_cohort: Path) -> None:
    rows = list(csv.DictReader(tiny_cohort.open()))
    assert len(rows) == 12 and sum(int(r["label"]) for r in rows) == 6
    for row in rows:
        image = nib.load(str(tiny_cohort.parent / row["image"]))
        assert image.ndim == 3 and np.isfinite(image.affine).all()
        assert float(row["mamillopontine_distance_mm"]) >= 0
    assert (tiny_cohort.parent / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("compression", [1.0, 2.5, 4.0])
def test_sag_shortens_the_mamillopontine_distance_by_the_commanded_amount(
    compression: float,
) -> None:
    normal = measure_distances(Patient(1, acquisition=PLAIN))
    sagged = measure_distances(
        Patient(1, Signs(sag_mm=2.0, midbrain_compression_mm=compression), acquisition=PLAIN)
    )
    reduction = normal["mamillopontine_distance_mm"] - sagged["mamillopontine_distance_mm"]
    assert reduction == pytest.approx(compression, abs=1.0)
    assert sagged["prepontine_cistern_mm"] < normal["prepontine_cistern_mm"]
    assert sagged["suprasellar_cistern_mm"] < normal["suprasellar_cistern_mm"]


def test_pituitary_engorgement_narrows_only_the_suprasellar_cistern() -> None:
    normal = measure_distances(Patient(1, acquisition=PLAIN))
    engorged = measure_distances(Patient(1, Signs(pituitary_mm=3.0), acquisition=PLAIN))
    assert normal["suprasellar_cistern_mm"] - engorged["suprasellar_cistern_mm"] == pytest.approx(
        3.0, abs=0.1
    )
    assert engorged["mamillopontine_distance_mm"] == pytest.approx(
        normal["mamillopontine_distance_mm"]
    )


def _regions() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Template points (1 mm grid, every 2nd voxel): dural shell, deep brain, transverse-sinus zone."""
    anatomy = atlas.load_anatomy()
    axes = [
        torch.arange(-90.0, 91.0, 2.0),
        torch.arange(-120.0, 80.0, 2.0),
        torch.arange(-60.0, 100.0, 2.0),
    ]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    depth = -atlas.sample(anatomy.inner_distance, anatomy.distance_grid, points, padding="border")
    convexity = (points[:, 2] > 20) & (points[:, 0].abs() > 25)
    shell = convexity & (depth > 0.3) & (depth < 1.5)
    skull_base = (
        (points - torch.tensor([0.0, -8.0, -36.0])).abs() < torch.tensor([22.0, 38.0, 30.0])
    ).all(-1)
    deep = (
        (depth > 15) & (atlas.sample(anatomy.brain, anatomy.brain_grid, points) > 0.5) & ~skull_base
    )
    sinus = (
        (points[:, 1] < -70)
        & (points[:, 0].abs() > 15)
        & (points[:, 0].abs() < 45)
        & ((points[:, 2] + 6).abs() < 6)
        & (depth > 0)
        & (depth < 4)
    )
    return points, torch.stack([shell, deep, sinus])


def _render_points(points: torch.Tensor, signs: Signs) -> torch.Tensor:
    return tissue_intensity(
        points, Patient(1, signs, acquisition=PLAIN), atlas.load_anatomy(), soft=0.25
    )


@pytest.mark.parametrize(
    ("signs", "raised", "unchanged"),
    [
        (Signs(dural_enhancement=1.0), 0, 1),
        (Signs(venous_engorgement=1.0), 2, 1),
    ],
)
def test_each_sign_changes_its_region_and_not_the_brain(
    signs: Signs, raised: int, unchanged: int
) -> None:
    points, masks = _regions()
    base, changed = _render_points(points, Signs()), _render_points(points, signs)
    assert changed[masks[raised]].mean() > base[masks[raised]].mean() + 0.15
    assert (changed[masks[unchanged]] - base[masks[unchanged]]).abs().max() < 1e-6


def test_subdural_collections_replace_the_outer_convexity_with_fluid() -> None:
    points, masks = _regions()
    convexity = (points[:, 2] > 40) & (points[:, 0].abs() > 40)
    base, changed = _render_points(points, Signs()), _render_points(points, Signs(subdural_mm=6.0))
    assert (changed != base)[convexity].any()
    assert (changed[masks[1]] - base[masks[1]]).abs().max() < 1e-6
    assert (
        measure_bern_fields(Patient(1, Signs(subdural_mm=6.0), acquisition=PLAIN))[
            "subdural_fluid_collection"
        ]
        == 1
    )


def test_the_affine_places_the_pituitary_where_the_template_says() -> None:
    rng = np.random.default_rng(0)
    patient = dataclasses.replace(cohort_patients(6, seed=5)[1], signs=Signs(pituitary_mm=2.0))
    patient = dataclasses.replace(
        patient,
        acquisition=dataclasses.replace(
            patient.acquisition,
            two_d=False,
            noise_sd=0.0,
            orientation=str(rng.choice(["LPS", "PIR", "RAS"])),
        ),
    )
    data, affine = render(patient, spacing_mm=1.5)
    centre = SkullBase.of_patient(patient).pituitary_centre
    centre_world = template_to_world(patient, centre[None])[0]
    voxel = np.round(np.linalg.inv(affine) @ np.append(centre_world, 1.0))[:3].astype(int)
    gland = data[tuple(voxel)] / patient.acquisition.intensity_scale
    around = (
        data[tuple(np.clip(voxel + np.array([0, 0, 12]), 0, np.array(data.shape) - 1))]
        / patient.acquisition.intensity_scale
    )
    assert gland > 0.9 and gland > around


def test_the_default_cohort_keeps_the_papers_share_of_fistulas() -> None:
    patients = cohort_patients(129, seed=0)
    labels = [p.label for p in patients]
    assert sum(labels) == 66
    normal_looking = sum(p.normal_appearing for p in patients if p.label == 1) / 66
    assert 0.1 <= normal_looking <= 0.3


def test_no_shortcut_header_fields_and_global_intensity_do_not_give_the_label() -> None:
    """What a model could read without looking at the anatomy - voxel size, grid, orientation,
    and the intensity of the whole image - predicts the label no better than 0.65 out of fold."""
    from nibabel import orientations
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    patients = cohort_patients(160, seed=31)
    features, labels = [], []
    for patient in patients:
        data, affine = render(patient, spacing_mm=8.0)
        voxels = data[data > 0].astype(np.float64)
        zooms = np.linalg.norm(affine[:3, :3], axis=0)
        codes = orientations.io_orientation(affine).ravel()
        intensity = [voxels.mean(), np.median(voxels), voxels.std(), np.percentile(voxels, 99)]
        features.append([*zooms, *data.shape, *codes, *intensity])
        labels.append(patient.label)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_predict(model, np.array(features), labels, cv=folds, method="predict_proba")
    auroc = roc_auc_score(labels, scores[:, 1])
    print(f"header and global intensity: AUROC {auroc:.3f}")
    assert auroc <= 0.65


def test_a_run_on_a_whole_synthetic_cohort_carries_its_ceiling(
    tiny_cohort: Path, tiny_run: Path
) -> None:
    """The cohort's ceiling reaches the run's metrics.json (beside its AUROC) only when the
    manifest holds exactly the cohort's patients."""
    import json

    from sihnet.synth.cohort import cohort_ceiling

    ids = [r["patient_id"] for r in csv.DictReader(tiny_cohort.open())]
    ceiling = cohort_ceiling(tiny_cohort, ids)
    assert ceiling is not None and ceiling.n_patients == 12
    assert cohort_ceiling(tiny_cohort, ids[1:]) is None  # a subset has another ceiling
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["ceiling"] == ceiling.model_dump()
