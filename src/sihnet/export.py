"""``sihnet export RUN --out MODEL_DIR``: a portable model to hand to another hospital.

The folder is a minimal run folder, so ``predict``, ``occlusion`` and ``evaluate --manifest`` take
it wherever they take a run::

    MODEL_DIR/config.yaml               preprocessing and inference settings (the run's)
    MODEL_DIR/fold_K/best.safetensors   every fold's weights; fold_K/summary.json holds its SHA-256
    MODEL_DIR/operating_points.json     thresholds fixed on the out-of-fold predictions
    MODEL_DIR/reference.json            the training images' ranges (predict's input checks)
    MODEL_DIR/model.json                sihnet version, folds, the model's SHA-256
    MODEL_DIR/MODEL_CARD.md             Mitchell et al.'s model card sections, with the run's numbers
    MODEL_DIR/configs/metadata.json     MONAI-bundle-style metadata (inputs, outputs, intended use)

Nothing that names a patient leaves the run: no predictions, splits, histories or cohort file.
"""

from __future__ import annotations

import os
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from sihnet.atomic import write_json_atomic, write_text_atomic
from sihnet.ensemble import available_folds, model_identity, read_thresholds
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256
from sihnet.outputs import check_output_folder
from sihnet.paths import RunPaths
from sihnet.report.model_card import model_card_text, subgroup_aurocs
from sihnet.schemas import MetricsFile, read_json_as
from sihnet.tables import read_rows
from sihnet.training.records import FoldSummary

NOTICE = "research use only; not a medical device; not for clinical decisions"


def bundle_metadata(config: Any, model_sha256: str) -> dict[str, Any]:
    """``configs/metadata.json`` in the MONAI bundle's layout (name, version, task, I/O, use)."""
    import monai
    import torch

    size = list(config.preprocessing.size)
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "name": "sihnet",
        "version": version("sihnet"),
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"sihnet": version("sihnet"), "nibabel": version("nibabel")},
        "task": "Classification of a spinal CSF-venous fistula from one brain contrast-enhanced T1 MRI",
        "description": "Fold ensemble of MONAI DenseNet-121 (3D, 1 channel, 2 classes), SIHnet (AJNR 2024)",
        "intended_use": NOTICE,
        "model_sha256": model_sha256,
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "MR",
                    "num_channels": 1,
                    "spatial_shape": size,
                    "dtype": "float32",
                    "value_range": [0, None],
                    "is_patch_data": False,
                    "channel_def": {"0": "contrast-enhanced T1, RAS canvas at "
                                    f"{config.preprocessing.spacing_mm} mm, head's "
                                    f"{config.preprocessing.upper_percentile}th percentile = 1"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classes",
                    "num_channels": 2,
                    "spatial_shape": [2],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_onehot": True,
                    "channel_def": {"0": "no CSF-venous fistula", "1": "CSF-venous fistula"},
                }
            },
        },
    }  # fmt: skip


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
        if file_sha256(paths.best_weights(k)) != summary.weights_sha256:
            raise SihnetError(f"fold {k}: weights do not match the SHA-256 recorded in the run")
        target = RunPaths(staging)
        target.fold_dir(k).mkdir(parents=True)
        shutil.copyfile(paths.best_weights(k), target.best_weights(k))
        shutil.copyfile(paths.fold_summary(k), target.fold_summary(k))
        summaries.append(summary)
    return summaries


def run_export(run: Path, out: Path, allow_missing_folds: bool = False) -> Path:
    """Write the model folder (module docstring) through a staging folder renamed at the end.

    Raises:
        SihnetError: folds missing (unless allowed), tampered weights, no out-of-fold
            predictions, or ``out`` not a new or empty folder.
    """
    paths, out = RunPaths(Path(run)), Path(out)
    config = paths.read_config()
    _check_out(out, paths.root)
    folds = available_folds(
        paths, config.cross_validation.folds, require_all=not allow_missing_folds
    )
    if not paths.metrics.is_file() or not paths.oof_predictions.is_file():
        raise SihnetError(
            f"{paths.root.name} has no metrics.json / oof_predictions.csv: run 'sihnet evaluate' first"
        )
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copyfile(paths.config, staging / "config.yaml")
        summaries = _copy_folds(paths, staging, folds)
        if paths.reference.is_file():
            shutil.copyfile(paths.reference, staging / "reference.json")
        thresholds = read_thresholds(paths)
        write_json_atomic(staging / "operating_points.json", thresholds)
        model_sha256, files = model_identity(
            RunPaths(staging), [s.fold for s in summaries], thresholds
        )
        write_json_atomic(staging / "model.json", {
            "sihnet_version": version("sihnet"), "folds": folds, "model_sha256": model_sha256,
            "files": files, "exported_from_run": paths.root.name, "notice": NOTICE,
        })  # fmt: skip
        write_json_atomic(
            staging / "configs" / "metadata.json", bundle_metadata(config, model_sha256)
        )
        metrics = read_json_as(paths.metrics, MetricsFile)
        subgroups = subgroup_aurocs(read_rows(paths.oof_predictions), paths.read_cohort())
        card = model_card_text(config, metrics, paths.read_cohort(), subgroups, model_sha256)
        write_text_atomic(staging / "MODEL_CARD.md", card)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
