"""``sihnet occlusion`` end to end on a tiny trained run: files, grids, regions, bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sihnet.config import load_config
from sihnet.data.manifest import read_manifest
from sihnet.evaluation.run import run_evaluation
from sihnet.interpret.run import demo_patient, scale_to_grid, top_regions
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.training.run import run_training
from tests.test_cli import sihnet


@pytest.fixture(scope="module")
def tiny_run(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two folds, one epoch, 32^3 at 8 mm."""
    root = tmp_path_factory.mktemp("occlusion_run")
    config = load_config(
        "quick",
        overrides={
            "preprocessing": {"spacing_mm": 8.0, "size": [32, 32, 32]},
            "training": {"epochs": 1, "precision": "fp32", "selection": "last"},
            "cross_validation": {"folds": 2},
        },
    )
    paths = RunPaths(root / "run")
    run_training(config, read_manifest(tiny_cohort), paths, VolumeCache(root / "cache"))
    run_evaluation(paths)
    return root / "run"


def test_scale_to_grid() -> None:
    assert scale_to_grid((12, 13, 13), 1.0) == (12, 13, 13)
    assert scale_to_grid((12, 13, 13), 4.0) == (3, 3, 3)
    assert scale_to_grid((12, 13, 13), 40.0) == (1, 1, 1)


def test_occlusion_command_writes_viewable_outputs(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    out = tmp_path / "occ"
    result = sihnet(
        "occlusion", tiny_run, image, "--out", out, "--patch", "32", cache=tmp_path / "c"
    )
    assert result.returncode == 0, result.stderr
    assert "occlusion map:" in result.stdout
    model_input, effect = nib.load(out / "input.nii.gz"), nib.load(out / "occlusion.nii.gz")
    assert model_input.shape == effect.shape == (32, 32, 32)
    np.testing.assert_allclose(model_input.affine, effect.affine)
    assert effect.get_data_dtype() == np.float32
    original, native = nib.load(image), nib.load(out / "occlusion_native.nii.gz")
    assert native.shape == original.shape[:3]
    np.testing.assert_allclose(native.affine, original.affine, atol=1e-4)
    assert np.abs(np.asarray(effect.dataobj)).max() > 0
    record = json.loads((out / "occlusion.json").read_text())
    assert record["patch_voxels"] == [4, 4, 4] and record["stride_voxels"] == [4, 4, 4]
    assert [f["fold"] for f in record["folds"]] == [0, 1] and record["target"] == "logit"
    assert record["forwards"] <= 2 * 8**3
    assert "synth-001" not in json.dumps(record) and str(image) not in json.dumps(record)
    rows = list(csv.DictReader((out / "regions.tsv").open(), delimiter="\t"))
    assert rows and list(rows[0]) == [
        "rank",
        "sign",
        "peak",
        "x_mm",
        "y_mm",
        "z_mm",
        "volume_ml",
        "location",
    ]
    assert (out / "occlusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_fold_and_its_map_differs_from_the_other(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    image = tiny_cohort.parent / "images" / "synth-002.nii.gz"
    maps = []
    for fold in ("0", "1"):
        result = sihnet(
            "occlusion",
            tiny_run,
            image,
            "--out",
            tmp_path / fold,
            "--fold",
            fold,
            "--patch",
            "32",
            cache=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        maps.append(np.asarray(nib.load(tmp_path / fold / "occlusion.nii.gz").dataobj))
    assert not np.allclose(maps[0], maps[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fold", "7"], "--fold must be 'all' or one of [0, 1]"),
        (["--patch", "12,x,13"], "--patch must be three positive integers"),
        (["--patch", "8", "--stride", "16"], "--stride must not exceed --patch"),
        (["--target", "auc"], "--target must be"),
        (["--precision", "fp8"], "--precision must be"),
    ],
)
def test_bad_options_are_one_line(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    result = sihnet("occlusion", tiny_run, image, "--out", tmp_path / "o", *args, cache=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_tampered_weights_and_bad_image_are_refused(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    result = sihnet("occlusion", tiny_run, bad, "--out", tmp_path / "o", cache=tmp_path)
    assert result.returncode == 2 and "cannot read NIfTI" in result.stderr
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    weights = copy / "fold_0" / "best.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    result = sihnet(
        "occlusion", copy, image, "--out", tmp_path / "o2", "--fold", "0", cache=tmp_path
    )
    assert result.returncode == 2 and "SHA-256" in result.stderr
    assert not (tmp_path / "o2" / "occlusion.nii.gz").exists()


def test_top_regions_are_sorted_and_in_world_mm() -> None:
    effect = np.zeros((10, 10, 10), dtype=np.float32)
    effect[2, 3, 4], effect[7, 7, 7] = 1.0, -0.8
    image = np.ones((10, 10, 10), dtype=np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, -10, -10]
    rows = top_regions(effect, image, affine)
    assert (
        [r["rank"] for r in rows] == [1, 2]
        and rows[0]["peak"] == 1.0
        and rows[1]["peak"] == pytest.approx(-0.8)
    )
    assert (rows[0]["x_mm"], rows[0]["y_mm"], rows[0]["z_mm"]) == (-6.0, -4.0, -2.0)
    assert rows[0]["sign"] == "raises fistula score" and rows[0]["location"] == "middle-middle-left"


def test_demo_patient_is_a_held_out_fistula_case(tiny_run: Path, tiny_cohort: Path) -> None:
    patient, image, fold = demo_patient(RunPaths(tiny_run), read_manifest(tiny_cohort))
    splits = json.loads((tiny_run / "splits.json").read_text())["assignment"]
    assert splits[patient] == fold and image.is_file()
    labels = {row["patient_id"]: row["label"] for row in csv.DictReader(tiny_cohort.open())}
    assert labels[patient] == "1"


def test_predict_scores_good_images_and_names_the_bad_one(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    from tests.ingest.dicom_factory import head_volume, write_series

    images = tiny_cohort.parent / "images"
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"oops")
    dicom = tmp_path / "dicom"
    write_series(dicom, head_volume((40, 48, 44)))
    result = sihnet(
        "predict", tiny_run, images / "synth-001.nii.gz", bad, dicom, "--json", cache=tmp_path / "c"
    )
    assert result.returncode == 2 and "1 of 3 images could not be scored" in result.stderr
    records = json.loads(result.stdout)
    assert [r["image"] for r in records] == [
        "#1 synth-001.nii.gz",
        "#2 bad.nii.gz",
        "#3 (DICOM folder)",
    ]
    assert 0 <= records[0]["probability"] <= 1 and set(records[0]["folds"]) == {"0", "1"}
    assert "cannot read NIfTI" in records[1]["error"] and 0 <= records[2]["probability"] <= 1


def test_evaluate_an_external_cohort_with_the_run_models(tiny_run: Path, tmp_path: Path) -> None:
    from sihnet.synth.cohort import run_synth

    external = run_synth(tmp_path / "external", n=10, seed=11, spacing_mm=8.0, workers=1)
    result = sihnet("evaluate", tiny_run, "--manifest", external, cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert "external cohort cohort: 10 patients, AUROC" in result.stdout
    folder = tiny_run / "external" / "cohort"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n_patients"] == 10 and len(metrics["auroc_fold_models"]) == 2
    assert (
        0 <= metrics["auroc"] <= 1
        and metrics["auroc_ci95"][0] <= metrics["auroc"] <= metrics["auroc_ci95"][1]
    )
    assert metrics["operating_point"]["thresholds"] and "bern" in metrics
    rows = list(csv.DictReader((folder / "predictions.csv").open()))
    assert len(rows) == 10 and list(rows[0]) == [
        "patient_id",
        "label",
        "probability",
        "probability_fold_0",
        "probability_fold_1",
    ]
    mean = (float(rows[0]["probability_fold_0"]) + float(rows[0]["probability_fold_1"])) / 2
    assert float(rows[0]["probability"]) == pytest.approx(mean, abs=1e-5)
    assert (folder / "roc.png").is_file() and (folder / "reliability.png").is_file()
    assert (tiny_run / "metrics.json").is_file()  # the development metrics are untouched
