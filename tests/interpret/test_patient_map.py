"""``sihnet occlusion`` end to end on a tiny trained run: files, grids, regions, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sihnet.data.manifest import read_manifest
from sihnet.interpret.patient_map import demo_patient, scale_to_grid, top_regions
from sihnet.paths import RunPaths
from tests.helpers import copy_run, one_line_error, sihnet


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
    from sihnet.config import OcclusionConfig
    from sihnet.interpret.patient_map import run_occlusion
    from sihnet.preprocessing.cache import VolumeCache

    image, cache = tiny_cohort.parent / "images" / "synth-002.nii.gz", VolumeCache(tmp_path / "c")
    maps = []
    for fold in (0, 1):
        settings = OcclusionConfig(patch_1mm=(32, 32, 32), fold=fold)
        record = run_occlusion(tiny_run, image, tmp_path / str(fold), settings, cache=cache)
        assert [f["fold"] for f in record.folds] == [fold]
        maps.append(np.asarray(nib.load(tmp_path / str(fold) / "occlusion.nii.gz").dataobj))
    assert not np.allclose(maps[0], maps[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fold", "7"], "--fold must be one of the finished folds [0, 1], not 7"),
        (["--fold", "x"], "--fold must be 'all' or a fold number"),
        (["--patch", "12,x,13"], "--patch must be three positive integers"),
        (["--patch", "8", "--stride", "16"], "stride [16, 16, 16] must not exceed the patch"),
        (["--target", "auc"], "--target must be"),
        (["--precision", "fp8"], "--precision must be"),
        (["--device", "tpu"], "--device must be"),
        (["--device", "cuda:7"], "this machine has 0 CUDA device(s)"),
        (["--batch-size", "0"], "batch size must be at least 1"),
    ],
)
def test_bad_options_are_one_line(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    result = sihnet("occlusion", tiny_run, image, "--out", tmp_path / "o", *args, cache=tmp_path)
    assert message in one_line_error(result)


def test_tampered_weights_and_bad_image_are_refused(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    result = sihnet("occlusion", tiny_run, bad, "--out", tmp_path / "o", cache=tmp_path)
    assert result.returncode == 2 and "cannot read NIfTI" in result.stderr
    copy = tmp_path / "run"
    copy_run(tiny_run, copy)
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


def test_a_larger_patch_than_the_image_occludes_it_whole(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    result = sihnet(
        "occlusion", tiny_run, image, "--out", tmp_path / "o", "--patch", "400", cache=tmp_path
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "o" / "occlusion.json").read_text())
    assert record["forwards"] == 2 and record["patch_voxels"] == [32, 32, 32]


def test_out_must_be_a_folder_of_occlusion_outputs(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_error(
        sihnet("occlusion", tiny_run, image, "--out", tmp_path / "file", cache=tmp_path)
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert "holds other files" in one_line_error(
        sihnet("occlusion", tiny_run, image, "--out", tmp_path / "mine", cache=tmp_path)
    )
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_failed_map_leaves_the_earlier_map_whole(
    tiny_run: Path, tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sihnet.interpret.patient_map as occlusion_run
    from sihnet.config import OcclusionConfig
    from sihnet.preprocessing.cache import VolumeCache

    images, cache = tiny_cohort.parent / "images", VolumeCache(tmp_path / "c")
    out, settings = tmp_path / "occ", OcclusionConfig(patch_1mm=(32, 32, 32))
    occlusion_run.run_occlusion(tiny_run, images / "synth-001.nii.gz", out, settings, cache=cache)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = occlusion_run.occlusion_map

    def killed_midway(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt  # the user stopped patient B's map during the second fold

    monkeypatch.setattr(occlusion_run, "occlusion_map", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        occlusion_run.run_occlusion(
            tiny_run, images / "synth-002.nii.gz", out, settings, cache=cache
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".occ")] == []
