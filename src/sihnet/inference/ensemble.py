"""A trained run's fold models: loaded without pickle, checked against their SHA-256, applied
through :class:`~sihnet.inference.Inference` (``predict``, ``evaluate --manifest``, ``occlusion``)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sihnet.config import ExperimentConfig, InferenceConfig
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256, text_sha256
from sihnet.inference import Inference
from sihnet.models.bern_heads import has_bern_head
from sihnet.models.densenet import build_model
from sihnet.models.measured import EditedModelError, MeasuredModel, combine
from sihnet.models.weights import load_weights
from sihnet.paths import RunPaths
from sihnet.schemas import (
    FoldSummary,
    ModelRecord,
    OperatingPoints,
    ReferenceFile,
    read_json,
    read_json_as,
)

log = logging.getLogger(__name__)


def available_folds(
    paths: RunPaths, n_folds: int, fold: int | None = None, require_all: bool = False
) -> list[int]:
    """The finished folds to use: ``fold`` alone, or all of them.

    A run missing folds is used with a warning, or refused with ``require_all``.

    Raises:
        SihnetError: no finished fold, ``fold`` not finished, or folds missing with ``require_all``.
    """
    finished = paths.finished_folds(n_folds)
    if not finished:
        raise SihnetError(f"{paths.root.name}: no finished fold (train first)")
    if fold is not None:
        if fold not in finished:
            raise SihnetError(f"--fold must be one of the finished folds {finished}, not {fold}")
        return [fold]
    missing = sorted(set(range(n_folds)) - set(finished))
    if missing:
        message = f"{paths.root.name}: fold(s) {missing} of {n_folds} not finished"
        if require_all:
            raise SihnetError(f"{message} (all folds are required)")
        log.warning("%s; using the %d finished fold model(s)", message, len(finished))
    return finished


def read_reference(paths: RunPaths) -> dict[str, dict[str, float]] | None:
    """The training images' ranges (``reference.json``), or None for a run without them."""
    if not paths.reference.is_file():
        return None
    return read_json(paths.reference, ReferenceFile).quantities


def read_thresholds(paths: RunPaths) -> dict[str, dict[str, float]]:
    """The fixed operating thresholds (``operating_points.json``: fitted by ``sihnet evaluate`` on
    the out-of-fold predictions, or an exported model's), or none."""
    if not paths.operating_points.is_file():
        return {}
    return read_json_as(paths.operating_points, OperatingPoints)


def identity_files(paths: RunPaths, folds: list[int]) -> list[Path]:
    """The files whose content changes a prediction: the configuration (preprocessing, inference),
    each fold's weights and summary (its precision), the reference statistics (the warnings), and
    in an exported model the MONAI bundle's weights and the ONNX graphs."""
    files = [
        paths.config,
        *(f for k in folds for f in (paths.best_weights(k), paths.fold_summary(k))),
        *(paths.fold_measured_model(k) for k in folds if paths.fold_measured_model(k).is_file()),
    ]
    if paths.reference.is_file():
        files.append(paths.reference)
    extra = [f for k in folds for f in (paths.exported_weights(k), paths.onnx_graph(k))]
    files += [f for f in extra if f.is_file()]  # an exported model's bundle and ONNX files
    return files


def model_identity(
    paths: RunPaths,
    folds: list[int],
    thresholds: dict[str, dict[str, float]],
    every_file: bool = False,
) -> tuple[str, dict[str, str]]:
    """One SHA-256 for a model, over what changes a prediction (:func:`identity_files` and the
    operating thresholds), and the per-file hashes (names relative to the folder). The copies an
    exported model carries for other runtimes (``models/``, ``onnx/``) are hashed and checked but
    not part of the identity: a run and its export print the same model SHA-256.

    Args:
        every_file: hash every file of the folder but ``model.json`` and the results of
            ``sihnet evaluate MODEL --manifest`` (``external/``, the model card's own recipe: they
            are results of the model, not part of it) - an exported model: its bundle configs,
            model card and licence too, so that an added, missing or edited file is refused."""
    files = identity_files(paths, folds)
    if every_file:
        results = paths.external_root
        files = sorted(
            {
                *files,
                *(
                    p
                    for p in paths.root.rglob("*")
                    if p.is_file() and p != paths.model_record and results not in p.parents
                ),
            }
        )
    hashes = {str(f.relative_to(paths.root)): file_sha256(f) for f in files}
    hashes["operating thresholds"] = text_sha256(json.dumps(thresholds, sort_keys=True))
    core_files = {str(f.relative_to(paths.root)) for f in identity_files(paths, folds)}
    core = sorted(
        (k, v)
        for k, v in hashes.items()
        if (k in core_files or k == "operating thresholds")
        and not k.startswith(("models/", "onnx/"))
    )
    return text_sha256("\n".join(f"{k}:{v}" for k, v in core)), hashes


def verify_exported(
    paths: RunPaths, folds: list[int], thresholds: dict[str, dict[str, float]]
) -> str:
    """Check an exported model folder against its ``model.json``; returns the model's identity.

    Raises:
        SihnetError: a file edited, removed or added since the export (named), or a damaged
            ``model.json``.
    """
    where = f"{paths.root.name}/{paths.model_record.name}"
    try:
        record = ModelRecord.model_validate_json(paths.model_record.read_bytes())
        expected, identity = record.files, record.model_sha256
    except (OSError, ValueError):
        raise SihnetError(
            f"{where} is damaged or from an older sihnet (export the run again)"
        ) from None
    found, hashes = model_identity(paths, folds, thresholds, every_file=True)
    for name in sorted(set(expected) | set(hashes)):
        if name not in expected:
            raise SihnetError(
                f"{paths.root.name}/{name} is not part of this exported model; refused"
            )
        if name not in hashes:
            raise SihnetError(
                f"{paths.root.name}/{name} is missing from this exported model; refused"
            )
        if hashes[name] != expected[name]:
            shown = paths.operating_points.name if name == "operating thresholds" else name
            raise SihnetError(
                f"{paths.root.name}/{shown} was changed after the export (its SHA-256 differs "
                f"from {paths.model_record.name}); refused"
            )
    if found != identity:
        raise SihnetError(f"{where}: the model's SHA-256 does not match its files; refused")
    return identity


def read_measured_models(
    paths: RunPaths, config: ExperimentConfig, folds: list[int]
) -> dict[int, MeasuredModel]:
    """The folds' measured models of a ``measured`` run ({} for a run without them).

    Raises:
        SihnetError: a fold's model missing or damaged (named).
    """
    if not config.measured.enabled:
        return {}
    models = {}
    for k in folds:
        path = paths.fold_measured_model(k)
        try:
            models[k] = MeasuredModel.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise SihnetError(f"fold {k}: {path.name} is missing (train the run again)") from None
        except EditedModelError:
            raise SihnetError(
                f"fold {k}: {path.name} was changed after training (its content does not match "
                "its SHA-256); refused"
            ) from None
        except (OSError, ValueError, KeyError, TypeError):
            raise SihnetError(f"fold {k}: {path.name} is damaged") from None
    return models


def check_weights_present(paths: RunPaths, fold: int) -> None:
    """A finished fold's weights must be there.

    Raises:
        SihnetError: naming the fold and how to get its weights back.
    """
    weights = paths.best_weights(fold)
    if not weights.is_file():
        raise SihnetError(
            f"fold {fold}: its weights ({weights.parent.name}/{weights.name}) are missing; train the fold "
            f"again (sihnet train ... --fold {fold}) or restore the file"
        )


def load_fold_model(
    paths: RunPaths, fold: int, device: torch.device, config: ExperimentConfig | None = None
) -> torch.nn.Module:
    """The selected model of ``fold`` in eval mode on ``device``.

    Raises:
        SihnetError: missing or tampered weights (SHA-256 differs from the fold summary), or
            weights that are not a DenseNet-121's float tensors.
    """
    summary = FoldSummary.read(paths.fold_summary(fold))
    check_weights_present(paths, fold)
    state = load_weights(paths.best_weights(fold), expected_sha256=summary.weights_sha256)
    bad = sorted(
        k
        for k, v in state.items()
        if not (v.is_floating_point() or k.endswith("num_batches_tracked"))
    )
    if bad:
        raise SihnetError(f"fold {fold}: weights hold non-float tensors ({bad[0]}); refused")
    views = config.preprocessing.views if config is not None else ()
    model = build_model(bern_heads=has_bern_head(set(state)), views=views)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise SihnetError(
            f"fold {fold}: weights do not fit the DenseNet-121 of this version"
        ) from None
    return model.to(device).eval()


@dataclasses.dataclass
class FoldEnsemble:
    """The fold models of a run, with the settings they are applied in.

    Attributes:
        config: the run's configuration; models: fold -> model in eval mode;
        inferences: fold -> device and precision (the precision each fold was validated in,
            unless overridden); summaries: per fold.
    """

    config: ExperimentConfig
    models: dict[int, torch.nn.Module]
    inferences: dict[int, Inference]
    summaries: dict[int, FoldSummary]
    reference: dict[str, dict[str, float]] | None = None
    thresholds: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    model_sha256: str = ""  # the model's identity (:func:`model_identity`)
    measured: dict[int, MeasuredModel] = dataclasses.field(default_factory=dict)

    @property
    def inference(self) -> Inference:
        """The first fold's device and precision (folds differ only after a precision fallback)."""
        return self.inferences[min(self.inferences)]

    @property
    def precision(self) -> str:
        """The precision(s) the folds are applied in, e.g. ``fp32`` or ``bf16/fp32``."""
        return "/".join(sorted({i.precision for i in self.inferences.values()}))

    @property
    def folds_total(self) -> int:
        return self.config.cross_validation.folds

    @classmethod
    def load(
        cls,
        run: Path,
        fold: int | None = None,
        settings: InferenceConfig = InferenceConfig(),
        require_all: bool = False,
    ) -> FoldEnsemble:
        """Load a run's finished fold models (or one of them)."""
        paths = RunPaths(Path(run))
        config = paths.read_config()
        folds = available_folds(paths, config.cross_validation.folds, fold, require_all)
        thresholds = read_thresholds(paths)
        if paths.model_record.is_file():  # an exported model: one identity, checked file by file
            everything = paths.finished_folds(config.cross_validation.folds)
            identity = verify_exported(paths, everything, thresholds)
        else:
            finished = paths.finished_folds(config.cross_validation.folds)
            identity = model_identity(paths, finished, thresholds)[0]
        summaries = {k: FoldSummary.read(paths.fold_summary(k)) for k in folds}
        device = settings.device or config.training.device
        inferences = {
            k: Inference.resolve(device, settings.precision or summary.precision)  # type: ignore[arg-type]
            for k, summary in summaries.items()
        }
        trained = {s.precision for s in summaries.values()}
        applied = {i.precision for i in inferences.values()}
        if any(inferences[k].precision != s.precision for k, s in summaries.items()):
            log.warning(
                "the fold models were validated in %s; they are applied in %s here, so "
                "probabilities may differ from the run's out-of-fold ones in the 3rd decimal",
                "/".join(sorted(trained)),
                "/".join(sorted(applied)),
            )
        models = {k: load_fold_model(paths, k, inferences[k].device, config) for k in folds}
        reference = read_reference(paths)
        measured = read_measured_models(paths, config, folds)
        return cls(config, models, inferences, summaries, reference, thresholds, identity, measured)

    def fused(
        self, network: dict[int, float], measures: dict[str, float | None]
    ) -> dict[str, dict[int, float]]:
        """Per fold: the fused probability, the network's and the measured model's, for a run
        with measured models (:mod:`sihnet.models.measured`)."""
        out: dict[str, dict[int, float]] = {"probability": {}, "network": {}, "measured": {}}
        for k, p in network.items():
            logits = self.measured[k].logits([measures])
            scores = combine(np.array([p]), logits, self.config.measured.fusion)
            for name, column in scores.items():
                out[name.removeprefix("probability_")][k] = float(column[0])
        return out

    def probabilities(self, image: Any) -> dict[int, float]:
        """Fistula probability of one preprocessed volume (1, X, Y, Z) per fold model.

        Raises:
            SihnetError: a model gives a non-finite output (damaged weights).
        """
        out = {
            k: float(self.inferences[k].probabilities(m, [image])[0])
            for k, m in self.models.items()
        }
        bad = [k for k, p in out.items() if not np.isfinite(p)]
        if bad:
            raise SihnetError(f"fold {bad[0]}'s model gives a non-finite output (damaged weights?)")
        return out
