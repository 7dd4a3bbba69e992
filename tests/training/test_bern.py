"""Multi-task training with the Bern heads: off changes nothing, on writes the Bern outputs, no
Bern values means the heads are off, and predict and evaluate read them."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from sihnet.bern import FIELDS, SIGN_FIELDS
from sihnet.config import OcclusionConfig, load_config
from sihnet.data.manifest import read_manifest
from sihnet.errors import SihnetError
from sihnet.evaluation.compare import compare_runs
from sihnet.evaluation.run_metrics import run_evaluation
from sihnet.inference.predict import run_predict
from sihnet.interpret.patient_map import run_occlusion
from sihnet.models.weights import load_weights
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.training.cross_validation import run_training
from tests.helpers import TINY_CONFIG

BERN = FIELDS


def _rewrite(
    manifest: Path, out: Path, change: dict[str, str] | None = None, drop: bool = False
) -> Path:
    """The manifest with the Bern columns dropped, or one cell changed ({column: value} on row 1)."""
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in rows[0] if not (drop and c in BERN)]
    for row in rows:
        row["image"] = str((manifest.parent / row["image"]).resolve())
    rows[0].update(change or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return out


def _train(manifest: Path, root: Path, heads: bool) -> RunPaths:
    paths = RunPaths(root / "run")
    config = load_config("quick", overrides={**TINY_CONFIG, "bern_heads": {"enabled": heads}})
    run_training(config, read_manifest(manifest), paths, VolumeCache(root.parent / "cache"))
    return paths


def test_heads_off_or_without_bern_values_train_the_paper_network_unchanged(
    tiny_cohort: Path, tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``tiny_run`` has the Bern columns and the heads off; here the heads are on and the manifest
    has no Bern values: the heads are left off (said), and training is bit-identical."""
    manifest = _rewrite(tiny_cohort, tmp_path / "m.csv", drop=True)
    with caplog.at_level(logging.WARNING):
        paths = _train(manifest, tmp_path, heads=True)
    assert "no Bern values among the training patients; Bern heads off" in caplog.text
    for fold in (0, 1):
        weights = load_weights(RunPaths(tiny_run).best_weights(fold))
        assert "bern_head.weight" not in weights  # the paper's network
        other = load_weights(paths.best_weights(fold))
        assert set(weights) == set(other) and all(weights[k].equal(other[k]) for k in weights)
        assert not paths.fold_bern_predictions(fold).exists()
    assert "auto_bern" not in run_evaluation(paths).as_json()


def test_heads_on_write_predict_and_compare(
    tiny_cohort: Path, tiny_run: Path, tmp_path: Path
) -> None:
    single = RunPaths(tiny_run)
    multi = _train(tiny_cohort, tmp_path / "multi", heads=True)
    assert "bern_head.weight" in load_weights(multi.best_weights(0))
    metrics = run_evaluation(multi).as_json()
    section = metrics["auto_bern"]
    assert section["n_patients"] == 12 and set(section["signs"]) == set(SIGN_FIELDS)
    assert set(section["distances"]["suprasellar_cistern_mm"]) >= {"mae_mm", "bias_mm", "icc_2_1"}
    with open(multi.oof_bern_predictions) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and 0 <= int(rows[0]["auto_bern"]) <= 9
    image = read_manifest(tiny_cohort).scans[0].image
    record = run_predict(multi.root, [image], cache=VolumeCache(tmp_path / "cache"))[0]
    assert set(record["bern"]["components"]) == set(BERN) and "auto_bern_score" in record["bern"]
    assert "bern" not in run_predict(single.root, [image], cache=VolumeCache(tmp_path / "cache"))[0]
    target = OcclusionConfig(patch_1mm=(32, 32, 32), target="suprasellar_cistern_mm", fold=0)
    cache = VolumeCache(tmp_path / "cache")
    record = run_occlusion(multi.root, image, tmp_path / "map", target, cache=cache)
    assert record.target == "suprasellar_cistern_mm" and 0 < record.folds[0]["base_score"] < 30
    with pytest.raises(SihnetError, match="needs a model trained with the Bern heads"):
        run_occlusion(single.root, image, tmp_path / "map2", target, cache=cache)
    result = compare_runs(multi, single)
    assert result["n_patients"] == 12 and -1 <= result["difference"] <= 1
    assert (
        json.loads((multi.root / "comparison.json").read_text())["delong_p"] == result["delong_p"]
    )


@pytest.mark.parametrize("value", ["-2", "wide", "inf"])
def test_an_out_of_range_distance_is_one_clear_line(
    tiny_cohort: Path, tmp_path: Path, value: str
) -> None:
    manifest = _rewrite(tiny_cohort, tmp_path / "m.csv", {"suprasellar_cistern_mm": value})
    with pytest.raises(
        SihnetError,
        match=r"row \d+: suprasellar_cistern_mm must be a (finite non-negative )?number",
    ):
        read_manifest(manifest)
