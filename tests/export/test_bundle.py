"""The exported model as a MONAI bundle and as ONNX: a second hospital runs it with MONAI's bundle
runner or onnxruntime and gets sihnet's numbers; a tampered weight file is refused by both."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import one_line_error, sihnet


@pytest.fixture(scope="module")
def model(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundle") / "model"
    result = sihnet("export", tiny_run, "--out", folder, "--onnx", cache=folder.parent / "c")
    assert result.returncode == 0, result.stderr
    return folder


def bundle_run(
    model: Path, image: Path, out: Path, cache: Path
) -> subprocess.CompletedProcess[str]:
    """MONAI's own runner, as a hospital's team would call it."""
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(model / "configs" / "inference.json"),
        "--meta_file", str(model / "configs" / "metadata.json"),
        "--image", str(image), "--output_dir", str(out),
    ]  # fmt: skip
    environment = {"SIHNET_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
def test_monai_runs_the_bundle_and_gets_predicts_probability(
    model: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    for name in ("configs/metadata.json", "configs/inference.json", "models/fold_0.safetensors",
                 "models/fold_1.safetensors", "docs/README.md", "LICENSE"):  # fmt: skip
        assert (model / name).is_file(), name
    patient = tmp_path / "DOE^JANE_19610401"  # a folder named after the patient (issue 31, row 17)
    patient.mkdir()
    image = Path(
        shutil.copy(tiny_cohort.parent / "images" / "synth-004.nii.gz", patient / "t1.nii.gz")
    )
    result = bundle_run(model, image, tmp_path / "out", tmp_path / "c1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DOE^JANE" not in result.stdout + result.stderr  # MONAI's input summary is not logged
    from_bundle = json.loads((tmp_path / "out" / "predictions.json").read_text())
    expected = json.loads(sihnet("predict", model, image, "--json", cache=tmp_path / "c2").stdout)[
        0
    ]
    assert from_bundle["probability"] == pytest.approx(expected["probability"], abs=1e-5)
    assert from_bundle["fold_probabilities"].keys() == expected["fold_probabilities"].keys()
    assert from_bundle["model_sha256"] == expected["model_sha256"]
    metadata = json.loads((model / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["type"] == "probabilities"


def test_monais_verify_net_in_out_passes(model: Path) -> None:
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def", meta_file=str(model / "configs" / "metadata.json"),
        config_file=str(model / "configs" / "inference.json"), device="cpu",
        bundle_root=str(model),
    )  # fmt: skip


def test_a_tampered_bundle_weight_is_refused_by_both(
    model: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    weights = copy / "models" / "fold_0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4:] = b"\0\0\0\1"
    weights.unlink()  # a new file, not the hard link's shared bytes
    weights.write_bytes(bytes(data))
    image = tiny_cohort.parent / "images" / "synth-004.nii.gz"
    line = one_line_error(sihnet("predict", copy, image, cache=tmp_path / "c"))
    assert "models/fold_0.safetensors was changed after the export" in line
    refused = bundle_run(copy, image, tmp_path / "out", tmp_path / "c")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "models/fold_0.safetensors was changed after the export" in refused.stderr
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_onnxruntime_gives_pytorchs_logits(model: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    import onnxruntime

    from sihnet.inference.ensemble import load_fold_model
    from sihnet.paths import RunPaths
    from sihnet.preprocessing.cache import VolumeCache, read_cached

    config = RunPaths(model).read_config()
    cache = VolumeCache(tmp_path / "c")
    images = [tiny_cohort.parent / "images" / f"synth-00{i}.nii.gz" for i in (1, 2)]
    canvas = np.stack([read_cached(cache.get(i, config.preprocessing)).image for i in images])
    for fold in (0, 1):
        session = onnxruntime.InferenceSession(
            str(model / "onnx" / f"fold_{fold}.onnx"), providers=["CPUExecutionProvider"]
        )
        (logits,) = session.run(None, {"image": canvas.astype(np.float32)})  # a batch of two
        network = load_fold_model(RunPaths(model), fold, torch.device("cpu"), config)
        with torch.inference_mode():
            expected = network(torch.from_numpy(canvas)).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert "onnxruntime" in (model / "MODEL_CARD.md").read_text()


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
def test_the_bundles_output_step_overwrites_nothing_it_must_not(
    model: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    """Issue 31, rows 2 and 10: a user's own predictions.json, the model folder itself and a
    read-only default place are refused in one line, nothing written."""
    image = tiny_cohort.parent / "images" / "synth-004.nii.gz"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "predictions.json").write_text('{"my": "results"}\n')
    result = bundle_run(model, image, mine, tmp_path / "c")
    assert (
        result.returncode != 0 and (mine / "predictions.json").read_text() == '{"my": "results"}\n'
    )
    assert "exists and is not an earlier 'sihnet bundle' output" in result.stderr
    assert "Traceback" not in result.stderr
    before = sorted(p.name for p in model.rglob("*"))
    result = bundle_run(model, image, model, tmp_path / "c")
    assert result.returncode != 0 and "inside the model folder" in result.stderr
    assert sorted(p.name for p in model.rglob("*")) == before


def test_every_file_of_the_model_is_its_identity(
    model: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    """Issue 31 row 3: model.json did not cover the bundle's configs, the model card or added
    files; an inference.json pointing at another model made the bundle score that one."""
    image = tiny_cohort.parent / "images" / "synth-004.nii.gz"
    for change in ("added", "card removed", "inference.json"):
        copy = tmp_path / change.replace(" ", "_") / "model"
        shutil.copytree(model, copy)
        if change == "added":
            (copy / "notes.txt").write_text("a file nobody exported\n")
        elif change == "card removed":
            (copy / "MODEL_CARD.md").unlink()
        else:
            config = json.loads((copy / "configs" / "inference.json").read_text())
            config["bundle_root"] = str(model)  # another, intact model folder
            (copy / "configs" / "inference.json").write_text(json.dumps(config))
        line = one_line_error(sihnet("predict", copy, image, cache=tmp_path / "c"))
        assert "refused" in line, change
        if change == "inference.json":
            result = bundle_run(copy, image, tmp_path / "out", tmp_path / "c")
            assert result.returncode != 0 and "points at another model folder" in result.stderr
            assert not (tmp_path / "out" / "predictions.json").exists()
