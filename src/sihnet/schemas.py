"""Typed schemas of the JSON files a command reads back (pydantic), and the one reader that checks
them: a truncated, mistyped or hand-edited file is one line naming it, never a traceback deep
inside the report or predict.

Only what sihnet reads is constrained; other keys are kept (``extra="allow"``) so that files
written by a newer version still load.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sihnet.errors import SihnetError

Model = TypeVar("Model", bound=BaseModel)
Probability = float  # checked to lie in [0, 1] where used


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class OperatingPoint(_Lenient):
    """A fixed decision threshold on the fistula probability (``operating_points.json``)."""

    threshold: float = Field(ge=0.0, le=1.0)

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("threshold must be a finite number")
        return value


class OperatingPoints(pydantic.RootModel[dict[str, OperatingPoint]]):
    """``operating_points.json``: rule name → its threshold (and the figures beside it)."""


class Region(_Lenient):
    """One region of ``occlusion.json``."""

    rank: int
    sign: str
    peak: float
    x_mm: float
    y_mm: float
    z_mm: float
    volume_ml: float
    location: str


class Grid(_Lenient):
    shape: list[int]
    spacing_mm: float


class OcclusionFile(_Lenient):
    """``occlusion.json`` as the report reads it."""

    target: str
    grid: Grid
    patch_voxels: list[int]
    stride_voxels: list[int]
    folds: list[dict[str, Any]]
    regions: list[Region] = []


class MetricsFile(_Lenient):
    """A run's ``metrics.json`` as the report and export read it (the keys every run has are
    required: a renamed one is refused; the sections are kept as written)."""

    folds_evaluated: list[int]
    auroc_folds: list[float | None] = []
    auroc_mean: float | None = None
    auroc_std: float | None = None
    auroc_pooled: float | None
    auroc_pooled_ci95: list[float | None] = []
    n_patients: int | None = None


class ExternalMetricsFile(_Lenient):
    """An external cohort's ``metrics.json`` (``RUN/external/<name>/``) as the report reads it."""

    cohort: str
    n_patients: int
    n_positive: int
    auroc: float | None
    auroc_ci95: list[float | None] = []


class ReferenceFile(_Lenient):
    """``reference.json``: per quantity the training images' range."""

    quantities: dict[str, dict[str, float]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitsFile(_Strict):
    """``splits.json``: the patient-level folds, made once and reused by every job of the run."""

    folds: int = Field(ge=2)
    splitter: str
    seed: int
    assignment: dict[str, int]


class CohortFile(_Strict):
    """``cohort.json``: the patients a run used — labels, Bern fields, demographics and exclusion
    counts (no image paths); tied to the manifest by its SHA-256."""

    manifest_sha256: str
    labels: dict[str, int | None]
    excluded_indeterminate: int = 0
    excluded_slec: int = 0
    n_scans: int = 0
    bern: dict[str, Any] = {}
    demographics: dict[str, Any] = {}


class ImageIdentities(_Strict):
    """``image_identities.json``: the training images' identities (voxels and geometry; no paths)."""

    identities: list[str]


class ModelRecord(_Strict):
    """An exported model's ``model.json``: its identity and the SHA-256 of every other file."""

    sihnet_version: str
    folds: list[int]
    model_sha256: str
    files: dict[str, str]
    exported_from_run: str
    notice: str


class Readers(_Strict):
    """AUROCs of the readers of a synthetic population (``ceiling.json``)."""

    ideal_reader_auroc: float
    bern_truth_auroc: float
    sign_auroc: dict[str, float]
    bern_item_auroc: dict[str, float]


class DistanceSpread(_Strict):
    mean: float
    sd: float
    share_at_or_below_threshold: float


class GeneratorCeiling(Readers):
    """The generator's readers by Monte Carlo, and its controls' ground-truth distances."""

    draws_per_class: int
    control_distances_mm: dict[str, DistanceSpread]


class CohortReaders(Readers):
    """The same readers on one drawn cohort's own patients."""

    n_patients: int


class CeilingFile(_Strict):
    """``ceiling.json`` beside a synthetic cohort's ``truth.csv``."""

    generator: GeneratorCeiling
    cohort: CohortReaders


Point = tuple[float, float, float]


class ReadDistance(_Strict):
    """One distance the reader measured: mm (None: not measured), its two ends in world mm."""

    mm: float | None = None
    start: Point | None = None
    end: Point | None = None
    reason: str = ""


class ReadMeasure(_Strict):
    """One continuous measure of a sign: its value (None: not measured) and unit."""

    value: float | None = None
    unit: str = ""
    reason: str = ""


class Reading(_Strict):
    """What the automatic Bern reader read on one scan (``sihnet.reader``; cached as JSON).

    Attributes:
        problem: "not measured: why" when nothing could be read, else "".
        items: the six Bern items (signs 0/1, distances mm; None: not measured).
        bern_score_min, bern_score_max: the score (equal when every item was read).
        distances, measures: the quantities behind the items.
        landmarks: the template landmarks carried into the scan, world mm.
        rotation: (3, 3) the alignment's rotation (template axes in the scan's world), for the
            picture's plane; None when nothing was read.
    """

    version: int
    problem: str = ""
    items: dict[str, float | None] = {}
    bern_score_min: int | None = None
    bern_score_max: int | None = None
    distances: dict[str, ReadDistance] = {}
    measures: dict[str, ReadMeasure] = {}
    landmarks: dict[str, Point] = {}
    rotation: tuple[Point, Point, Point] | None = None
    alignment_correlation: float | None = None
    warp_information: tuple[float, float] | None = (
        None  # before, after the refinement (ITK: lower fits better)
    )
    white_matter_level: float | None = None
    csf_level: float | None = None
    seconds: float = 0.0


class MeasureRecord(_Strict):
    """What one ``sihnet measure`` wrote into its folder (``OUT/measure.json``): a rerun removes
    exactly these outputs before it writes its own, and never a file it did not write.

    Attributes:
        command: always ``sihnet measure``.
        names: the output names of the scans (``readings/<name>.json`` ...).
    """

    command: Literal["sihnet measure"]
    names: list[str]


def read_json(path: Path, model: type[Model], name: str | None = None) -> Model:
    """Read ``path`` and check it against ``model``.

    Args:
        name: how the file is named in the error (default: its parent folder and file name).

    Raises:
        SihnetError: missing, not JSON, or not of the schema (the first problem named).
    """
    shown = name or f"{Path(path).parent.name}/{Path(path).name}"
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SihnetError(f"{shown} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise SihnetError(f"{shown} is damaged (not a JSON file)") from None
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise SihnetError(f"{shown} is damaged ({where}: {first['msg']})") from None


def read_json_as(path: Path, model: type[Model], name: str | None = None) -> dict[str, Any]:
    """:func:`read_json`, returned as a plain dict (the template's view), unknown keys kept."""
    return read_json(path, model, name).model_dump()


@dataclasses.dataclass(frozen=True)
class FoldSummary:
    """``fold_K/summary.json``: the selected epoch, the fold's AUROCs and its weights' hash.

    Attributes:
        auroc: of the selected checkpoint; auroc_last_epoch: of the last epoch (unbiased);
            auroc_best_validation: of the epoch best on this very fold (the paper's, optimistic).
        precision: the precision the fold was trained and validated in (``fp32``/``bf16``/
            ``fp16``; after a fallback the one it ended in).
        channels_last: whether it trained in the ``channels_last_3d`` memory format.
        precision_probe: what ``auto`` measured and chose (:mod:`sihnet.training.probe`), or
            None when nothing was ``auto``.
        precision_fallback: ``{"from", "to", "epoch", "reason"}`` when non-finite reduced-precision
            steps made the fold continue in fp32 from its last good epoch, else None.
        skipped_steps: optimiser steps skipped for non-finite gradients (in the precision kept).
    """

    fold: int
    selection: str
    selected_epoch: int
    auroc: float
    auroc_last_epoch: float
    auroc_best_validation: float
    best_validation_epoch: int
    weights_sha256: str
    precision: str
    n_train_patients: int
    n_inner_validation_patients: int
    n_validation_patients: int
    seconds: float
    channels_last: bool = False
    precision_probe: dict[str, Any] | None = None
    precision_fallback: dict[str, Any] | None = None
    skipped_steps: int = 0

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, path: Path) -> FoldSummary:
        """Read a summary; a missing or damaged file is one line."""
        where = f"{Path(path).parent.name}/{Path(path).name}"
        try:
            values = json.loads(Path(path).read_text())
            names = {f.name for f in dataclasses.fields(cls)}
            values.setdefault("precision", "fp32")  # summaries written before it was recorded
            return cls(**{k: v for k, v in values.items() if k in names})
        except (OSError, ValueError, TypeError, AttributeError):
            raise SihnetError(f"{where} is missing or damaged") from None


@dataclasses.dataclass(frozen=True)
class PredictionTable:
    """A fold's ``predictions.csv`` or the run's ``oof_predictions.csv`` as aligned arrays: one
    entry per patient.

    Attributes:
        patient_ids: (P,) the manifest's pseudonymous IDs.
        folds: (P,) int, the fold that held each patient out.
        labels: (P,) int, 1 = fistula.
        scores: column name -> (P,) float64: ``probability`` (the selected checkpoint), and in a
            fold's file also ``probability_last_epoch``, ``probability_best_validation``.
    """

    patient_ids: tuple[str, ...]
    folds: np.ndarray
    labels: np.ndarray
    scores: dict[str, np.ndarray]

    @property
    def probability(self) -> np.ndarray:
        return self.scores["probability"]

    def __len__(self) -> int:
        return len(self.patient_ids)

    @classmethod
    def read(cls, path: Path, name: str | None = None) -> PredictionTable:
        """Read and check a table sihnet wrote.

        Raises:
            SihnetError: missing or damaged (named).
        """
        from sihnet.tables import read_rows

        shown = name or f"{Path(path).parent.name}/{Path(path).name}"
        try:
            rows = read_rows(Path(path))
            columns = [c for c in (rows[0] if rows else {}) if c.startswith("probability")]
            table = cls(
                tuple(r["patient_id"] for r in rows),
                np.array([int(r["fold"]) for r in rows], dtype=int),
                np.array([int(r["label"]) for r in rows], dtype=int),
                {c: np.array([float(r[c]) for r in rows], dtype=np.float64) for c in columns},
            )
        except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            raise SihnetError(f"{shown} is missing or damaged") from None
        if "probability" not in table.scores or not set(table.labels.tolist()) <= {0, 1}:
            raise SihnetError(f"{shown} is missing or damaged")
        return table

    @classmethod
    def concatenate(cls, tables: list[PredictionTable]) -> PredictionTable:
        """The tables one after another (the folds pooled), the columns they share."""
        shared = [c for c in tables[0].scores if all(c in t.scores for t in tables)]
        return cls(
            tuple(p for t in tables for p in t.patient_ids),
            np.concatenate([t.folds for t in tables]),
            np.concatenate([t.labels for t in tables]),
            {c: np.concatenate([t.scores[c] for t in tables]) for c in shared},
        )

    def write(self, path: Path, columns: tuple[str, ...] = ("probability",)) -> None:
        """``patient_id, fold, label, <columns>`` (6 decimals), atomically."""
        from sihnet.tables import write_table

        rows = [
            {"patient_id": p, "fold": int(self.folds[i]), "label": int(self.labels[i]),
             **{c: f"{self.scores[c][i]:.6f}" for c in columns}}
            for i, p in enumerate(self.patient_ids)
        ]  # fmt: skip
        write_table(Path(path), ["patient_id", "fold", "label", *columns], rows)
