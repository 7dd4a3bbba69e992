"""``sihnet export RUN --out MODEL_DIR``: a portable model to hand to another hospital.

The folder is a minimal run folder, so ``predict``, ``occlusion`` and ``evaluate --manifest`` take
it wherever they take a run::

    MODEL_DIR/config.yaml               preprocessing and inference settings (the run's)
    MODEL_DIR/fold_K/best.safetensors   every fold's weights; fold_K/summary.json holds its SHA-256
    MODEL_DIR/operating_points.json     thresholds fixed on the out-of-fold predictions
    MODEL_DIR/reference.json            the training images' ranges (predict's input checks)
    MODEL_DIR/model.json                sihnet version, folds, the model's SHA-256
    MODEL_DIR/MODEL_CARD.md             Mitchell et al.'s model card sections, with the run's numbers
    MODEL_DIR/configs/, models/, docs/README.md, LICENSE   a MONAI bundle (:mod:`sihnet.export.bundle`)
    MODEL_DIR/onnx/fold_K.onnx          with ``--onnx`` (:mod:`sihnet.export.onnx`)

Nothing that names a patient leaves the run: no predictions, splits, histories or cohort file.
"""

from __future__ import annotations

import logging
import os
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sihnet.atomic import write_json_atomic, write_text_atomic
from sihnet.errors import SihnetError
from sihnet.export import bundle
from sihnet.hashing import file_sha256
from sihnet.inference.ensemble import (
    available_folds,
    check_weights_present,
    load_fold_model,
    model_identity,
    read_thresholds,
)
from sihnet.outputs import check_output_folder
from sihnet.paths import RunPaths
from sihnet.report.model_card import model_card_text, subgroup_aurocs
from sihnet.schemas import FoldSummary, MetricsFile, ModelRecord, PredictionTable, read_json_as

log = logging.getLogger(__name__)
NOTICE = "research use only; not a medical device; not for clinical decisions"


def _write_onnx(folder: Path, config: Any, folds: list[int]) -> None:
    """``onnx/fold_K.onnx`` of every exported fold (weights read back from the staged folder)."""
    import torch

    from sihnet.export.onnx import export_fold

    for k in folds:
        network = load_fold_model(RunPaths(folder), k, torch.device("cpu"), config)
        export_fold(network, config, RunPaths(folder).onnx_graph(k))


def _check_out(out: Path, run: Path) -> None:
    if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
        raise SihnetError("--out must not be inside the run folder")
    check_output_folder(out, "export")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SihnetError(f"--out {out.name} exists and is not an empty folder")


def _copy_folds(paths: RunPaths, staging: Path, folds: list[int]) -> list[FoldSummary]:
    summaries = []
    for k in folds:
        summary = FoldSummary.read(paths.fold_summary(k))
        check_weights_present(paths, k)
        if file_sha256(paths.best_weights(k)) != summary.weights_sha256:
            raise SihnetError(f"fold {k}: weights do not match the SHA-256 recorded in the run")
        target = RunPaths(staging)
        target.fold_dir(k).mkdir(parents=True)
        shutil.copyfile(paths.best_weights(k), target.best_weights(k))
        shutil.copyfile(paths.fold_summary(k), target.fold_summary(k))
        if paths.fold_measured_model(k).is_file():
            shutil.copyfile(paths.fold_measured_model(k), target.fold_measured_model(k))
        summaries.append(summary)
    return summaries


def _remove_dead_staging(out: Path) -> None:
    """Remove the staging folders of exports to ``out`` whose process is gone (a kill -9)."""
    for staging in out.parent.glob(f".{out.name}.staging-*"):
        pid = staging.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
            log.info("removed the staging folder of an export that did not finish")
        except PermissionError:
            continue  # another user's live process


def run_export(run: Path, out: Path, allow_missing_folds: bool = False, onnx: bool = False) -> Path:
    """Write the model folder (module docstring) through a staging folder renamed at the end.

    Raises:
        SihnetError: folds missing (unless allowed), tampered weights, no out-of-fold
            predictions, or ``out`` not a new or empty folder.
    """
    paths, out = RunPaths(Path(run)), Path(out)
    paths.require_run("export")
    config = paths.read_config()
    _check_out(out, paths.root)
    folds = available_folds(
        paths, config.cross_validation.folds, require_all=not allow_missing_folds
    )
    if not paths.metrics.is_file() or not paths.oof_predictions.is_file():
        raise SihnetError(
            f"{paths.root.name} has no {paths.metrics.name} / {paths.oof_predictions.name}: run "
            "'sihnet evaluate' first"
        )
    _remove_dead_staging(out)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        staged = RunPaths(staging)
        shutil.copyfile(paths.config, staged.config)
        summaries = _copy_folds(paths, staging, folds)
        if paths.reference.is_file():
            shutil.copyfile(paths.reference, staged.reference)
        thresholds = read_thresholds(paths)
        write_json_atomic(staged.operating_points, thresholds)
        exported = [s.fold for s in summaries]
        bundle.write_bundle_files(staging, exported)
        if onnx:
            _write_onnx(staging, config, exported)
        model_sha256, _ = model_identity(staged, exported, thresholds)
        bundle.write_metadata(staging, config, model_sha256)
        metrics = read_json_as(paths.metrics, MetricsFile)
        subgroups = subgroup_aurocs(
            PredictionTable.read(paths.oof_predictions), paths.read_cohort()
        )
        card = model_card_text(config, metrics, paths.read_cohort(), subgroups, model_sha256, onnx)
        write_text_atomic(staged.model_card, card)
        write_text_atomic(staged.bundle_readme, card)
        # model.json last: it covers every other file of the folder (issue 31 row 3)
        _, files = model_identity(staged, exported, thresholds, every_file=True)
        record = ModelRecord(
            sihnet_version=version("sihnet"), folds=folds, model_sha256=model_sha256,
            files=files, exported_from_run=paths.root.name, notice=NOTICE,
        )  # fmt: skip
        write_json_atomic(staged.model_record, record.model_dump())
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
