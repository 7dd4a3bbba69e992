"""Careless and hostile use of the report, the exported model, ``--plan`` and the Bern values: each
row is one line on stderr, exit 2, the file named, and nothing in the run or model folder changed."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helpers import copy_run, one_line_error, sihnet


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def run(tiny_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    copy_run(tiny_run, copy)
    return copy


@pytest.fixture(scope="module")
def model(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "model"
    result = sihnet("export", tiny_run, "--out", folder, cache=folder.parent / "cache")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize(
    "target", ["metrics.json", "fold_0/best.safetensors", "splits.json", "config.yaml", "new.html"]
)
def test_report_never_writes_over_a_run_file(run: Path, target: str) -> None:
    before = folder_hashes(run)
    line = one_line_error(sihnet("report", run, "--out", run / target, cache=run.parent / "c"))
    assert "inside the run folder run" in line and Path(target).name in line
    assert folder_hashes(run) == before


def test_report_never_overwrites_a_file_it_did_not_write(run: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my notes</p>")
    line = one_line_error(sihnet("report", run, "--out", notes, cache=tmp_path / "c"))
    assert "exists and is not an earlier 'sihnet report' output" in line
    assert notes.read_text() == "<p>my notes</p>"
    page = tmp_path / "page.html"
    assert sihnet("report", run, "--out", page, cache=tmp_path / "c").returncode == 0
    assert sihnet("report", run, "--out", page, cache=tmp_path / "c").returncode == 0  # its own


def test_the_other_writers_refuse_a_run_folder(
    run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    before = folder_hashes(run)
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    cases = [
        (["export", run, "--out", run / "fold_0" / "m"], "inside the run folder"),
        (["occlusion", run, image, "--out", run / "fold_0" / "map"], "inside the run folder"),
        (["occlusion", run, image, "--out", run / "fold_1"], "inside the run folder"),
        (["bern", tiny_cohort, "--out", run / "bern.csv"], "inside the run folder"),
        (["synth", "--out", run / "fold_0", "--n", "2"], "inside the run folder"),
        (["train", tiny_cohort, "--out", run / "fold_0" / "again"], "inside the sihnet folder"),
        (["bern", tiny_cohort, "--out", tiny_cohort], "not an earlier 'sihnet bern' output"),
    ]
    for args, message in cases:
        assert message in one_line_error(sihnet(*args, cache=tmp_path / "c")), args
    assert folder_hashes(run) == before


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda m: _edit_yaml(m / "config.yaml", "preprocessing", "spacing_mm", 4.0), "config.yaml"),
        (lambda m: _edit_yaml(m / "config.yaml", "preprocessing", "upper_percentile", 99.0), "config.yaml"),
        (lambda m: _edit_json(m / "fold_0" / "summary.json", "precision", "bf16"), "fold_0/summary.json"),
        (lambda m: _edit_json(m / "reference.json", "note", "x"), "reference.json"),
        (lambda m: _edit_json(m / "operating_points.json", "youden", {"threshold": 0.5}), "operating_points.json"),
        (lambda m: (m / "reference.json").unlink(), "reference.json"),
    ],
)  # fmt: skip
def test_an_edited_exported_model_is_refused(
    model: Path, tiny_cohort: Path, tmp_path: Path, edit: Callable[[Path], None], named: str
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    edit(copy)
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    line = one_line_error(sihnet("predict", copy, image, cache=tmp_path / "c"))
    assert named in line and "refused" in line


def test_another_runs_fold_copied_into_a_model_is_refused(
    model: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    for name in ("best.safetensors", "summary.json"):  # fold 1's model passed off as fold 0
        shutil.copy(copy / "fold_1" / name, copy / "fold_0" / name)
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    assert "fold_0/" in one_line_error(sihnet("predict", copy, image, cache=tmp_path / "c"))


def test_the_untouched_model_predicts_the_run_and_prints_its_identity(
    model: Path, tiny_run: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    a = json.loads(sihnet("predict", tiny_run, image, "--json", cache=tmp_path / "a").stdout)[0]
    b = json.loads(sihnet("predict", model, image, "--json", cache=tmp_path / "b").stdout)[0]
    assert b["probability"] == pytest.approx(a["probability"], abs=1e-6)
    assert (
        b["model_sha256"]
        == a["model_sha256"]
        == json.loads((model / "model.json").read_text())["model_sha256"]
    )


@pytest.mark.parametrize("threshold", ['"high"', "NaN", "7.5", None])
def test_bad_operating_points_are_refused_naming_the_file(
    model: Path, tiny_cohort: Path, tmp_path: Path, threshold: str | None
) -> None:
    from sihnet.errors import SihnetError
    from sihnet.inference.ensemble import read_thresholds
    from sihnet.paths import RunPaths

    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    points = copy / "operating_points.json"
    if threshold is None:
        points.unlink()
        image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
        assert "operating_points.json" in one_line_error(
            sihnet("predict", copy, image, cache=tmp_path / "c")
        )
        return
    points.write_text(f'{{"youden": {{"threshold": {threshold}}}}}')
    with pytest.raises(
        SihnetError, match=r"model/operating_points.json is damaged \(youden.threshold"
    ):
        read_thresholds(RunPaths(copy))


def test_json_output_is_strict_json() -> None:
    from sihnet.atomic import strict_json

    text = strict_json([{"probability": float("nan"), "sd": float("inf"), "n": 1}])
    assert json.loads(text) == [{"probability": None, "sd": None, "n": 1}]
    assert "NaN" not in text and "Infinity" not in text


def test_a_partial_run_exports_with_the_flag(run: Path, tmp_path: Path) -> None:
    shutil.rmtree(run / "fold_1")
    assert sihnet("evaluate", run, cache=tmp_path / "c").returncode == 0
    result = sihnet(
        "export", run, "--out", tmp_path / "m", "--allow-missing-folds", cache=tmp_path / "c"
    )
    assert result.returncode == 0, result.stderr
    assert "n/a" in (tmp_path / "m" / "MODEL_CARD.md").read_text()  # one fold: no SD


def _edit_yaml(path: Path, section: str, key: str, value: object) -> None:
    data = yaml.safe_load(path.read_text())
    data[section][key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _edit_json(path: Path, key: str, value: object) -> None:
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("metrics.json", '{"folds_evaluated": [0, 1], "auroc_po'),
        ("metrics.json", '{"folds_evaluated": "all"}'),
        ("fold_0/history.csv", "epoch,loss,val_auroc,inner_auroc,lr,seconds\n0,abc,0.5,,0.001,1\n"),
        ("fold_0/history.csv", b"\x00\xff\xfe binary"),
        ("occlusion/occlusion.json", None),
    ],
)
def test_report_names_a_damaged_run_file(run: Path, name: str, content: str | bytes | None) -> None:
    if content is None:  # an occlusion record whose regions are not a list
        (run / "occlusion").mkdir()
        record = {"target": "logit", "grid": {"shape": [32, 32, 32], "spacing_mm": 8.0},
                  "patch_voxels": [2, 2, 2], "stride_voxels": [2, 2, 2], "folds": [], "regions": "x"}  # fmt: skip
        (run / name).write_text(json.dumps(record))
    elif isinstance(content, bytes):
        (run / name).write_bytes(content)
    else:
        (run / name).write_text(content)
    before = folder_hashes(run)
    line = one_line_error(sihnet("report", run, cache=run.parent / "c"))
    assert Path(name).name in line and "damaged" in line
    assert folder_hashes(run) == before and not (run / "report.html").exists()


def test_compare_with_the_run_itself_or_its_copy_is_refused(run: Path, tmp_path: Path) -> None:
    line = one_line_error(sihnet("evaluate", run, "--compare-with", run, cache=tmp_path / "c"))
    assert "is the run itself" in line
    copy_run(run, tmp_path / "copy")
    result = sihnet("evaluate", run, "--compare-with", tmp_path / "copy", cache=tmp_path / "c")
    assert "identical out-of-fold probabilities" in one_line_error(result)
    assert "site-packages" not in result.stderr


def test_an_unwritable_report_names_the_users_file(run: Path, tmp_path: Path) -> None:
    line = one_line_error(sihnet("report", run, "--out", "/proc/r.html", cache=tmp_path / "c"))
    assert (
        "r.html" in line and ".tmp" not in line and "-" + str(__import__("os").getpid()) not in line
    )


def test_a_hostile_site_is_inert_in_the_model_card(run: Path, tmp_path: Path) -> None:
    cohort = json.loads((run / "cohort.json").read_text())
    for index, patient in enumerate(sorted(cohort["demographics"])):
        site = "<img src=y onerror=alert(1)>|x" if index % 2 else "b"
        cohort["demographics"][patient]["site"] = site
    (run / "cohort.json").write_text(json.dumps(cohort))
    assert sihnet("export", run, "--out", tmp_path / "m", cache=tmp_path / "c").returncode == 0
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "<img" not in card and "&lt;img src=y onerror=alert\\(1\\)&gt;\\|x" in card


def test_the_reports_commands_are_shown_as_typed_with_file_names(run: Path, tmp_path: Path) -> None:
    with (run / "train.log").open("a") as log:
        log.write(
            "2026-01-01T00:00:00+00:00 sihnet train /data/DOE/m.csv --out=/abs/R --cache-dir=/data/X\n"
        )
    assert sihnet("report", run, cache=tmp_path / "c").returncode == 0
    page = (run / "report.html").read_text()
    assert "sihnet train m.csv --out=R --cache-dir=X" in page and "/data/DOE" not in page


def test_an_implausible_distance_names_its_row(tiny_cohort: Path, tmp_path: Path) -> None:
    from sihnet.data.manifest import read_manifest
    from sihnet.errors import SihnetError

    rows = list(csv.DictReader(tiny_cohort.open()))
    rows[3]["prepontine_cistern_mm"] = "1e9"
    for row in rows:
        row["image"] = str(tiny_cohort.parent / row["image"])
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(
        SihnetError, match=r"row 5: prepontine_cistern_mm 1e9 is outside the plausible range 0–30"
    ):
        read_manifest(manifest)


@pytest.mark.parametrize(
    "args",
    [["evaluate", "{m}"], ["export", "{m}", "--out", "{t}/x"], ["report", "{m}"]],
    ids=["evaluate", "export", "report"],
)
def test_a_model_folder_where_a_run_is_needed_is_named_as_such(
    model: Path, tmp_path: Path, args: list[str]
) -> None:
    """Issue 31 row 12: the advice was "run 'sihnet evaluate' first" or a missing fold file."""
    before = folder_hashes(model)
    filled = [a.format(m=model, t=tmp_path) for a in args]
    line = one_line_error(sihnet(*filled, cache=tmp_path / "c"))
    assert "is an exported model folder" in line and "needs the run folder" in line
    assert folder_hashes(model) == before


def test_training_into_a_model_folder_writes_nothing(
    model: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    """Issue 31 row 6: it wrote cohort.json and splits.json (patient IDs) into the shared folder."""
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    before = folder_hashes(copy)
    line = one_line_error(sihnet("train", tiny_cohort, "--out", copy, cache=tmp_path / "c"))
    assert "is an exported model folder" in line
    assert folder_hashes(copy) == before


def test_missing_weights_name_their_fold(run: Path, tmp_path: Path) -> None:
    """Issue 31 row 14: "cannot write or read best.safetensors" named no fold."""
    (run / "fold_1" / "best.safetensors").unlink()
    line = one_line_error(sihnet("export", run, "--out", tmp_path / "m", cache=tmp_path / "c"))
    assert "fold 1: its weights (fold_1/best.safetensors) are missing" in line


def test_a_dead_exports_staging_folder_is_removed(run: Path, tmp_path: Path) -> None:
    """Issue 31 row 16: kill -9 mid-export left a hidden staging folder no later export removed."""
    stale = tmp_path / ".m.staging-999999"  # no process has this id
    (stale / "models").mkdir(parents=True)
    (stale / "models" / "fold_0.safetensors").write_bytes(b"\0" * 1024)
    result = sihnet("export", run, "--out", tmp_path / "m", cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and (tmp_path / "m" / "model.json").is_file()
