"""Every artefact path of a run folder comes from :class:`RunPaths`; nothing else builds them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sihnet.config import ExperimentConfig, read_run_config
from sihnet.errors import SihnetError
from sihnet.schemas import CohortFile, read_json


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """The run folder layout (docs/run-folder.md).

    ``RUN/config.yaml, splits.json, cohort.json, train.log, fold_K/{best.safetensors,last.pt,
    history.csv,predictions.csv,summary.json}, oof_predictions.csv, metrics.json, roc.png,
    roc_vs_bern.png, reliability.png``; K counts from 0.
    """

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def read_config(self) -> ExperimentConfig:
        """The configuration the run was trained with.

        Raises:
            SihnetError: not a run folder, or its ``config.yaml`` is damaged.
        """
        if not self.config.is_file():
            raise SihnetError(f"{self.root.name}: not a sihnet run folder (no config.yaml)")
        return read_run_config(self.config)

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def cohort(self) -> Path:
        """The manifest rows the run used (patient, label, image path relative to the manifest)."""
        return self.root / "cohort.json"

    def read_cohort(self) -> dict[str, Any]:
        """``cohort.json`` ({} when absent).

        Raises:
            SihnetError: the file is damaged.
        """
        if not self.cohort.is_file():
            return {}
        return read_json(
            self.cohort, CohortFile, f"{self.root.name}/{self.cohort.name}"
        ).model_dump()

    @property
    def reference(self) -> Path:
        """The training images' ranges (spacing, field of view, intensities…): input checks."""
        return self.root / "reference.json"

    @property
    def operating_points(self) -> Path:
        """Fixed model thresholds, fitted by ``evaluate`` on the out-of-fold predictions."""
        return self.root / "operating_points.json"

    @property
    def model_record(self) -> Path:
        """An exported model's identity: the SHA-256 of every file that changes a prediction."""
        return self.root / "model.json"

    @property
    def external_root(self) -> Path:
        """Results of the run's models on other cohorts: ``RUN/external/``."""
        return self.root / "external"

    def external_dir(self, name: str) -> Path:
        """Results of the run's models on another cohort: ``RUN/external/<name>/``."""
        return self.external_root / name

    def external(self, name: str) -> ExternalPaths:
        """The files of :meth:`external_dir`."""
        return ExternalPaths(self.external_dir(name))

    def external_results(self) -> list[ExternalPaths]:
        """The external cohorts evaluated so far (those with their metrics), by name."""
        found = [ExternalPaths(d) for d in sorted(self.external_root.glob("*"))]
        return [e for e in found if e.metrics.is_file()]

    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold_{fold}"

    def best_weights(self, fold: int) -> Path:
        return self.fold_dir(fold) / "best.safetensors"

    def last_state(self, fold: int) -> Path:
        return self.fold_dir(fold) / "last.pt"

    def history(self, fold: int) -> Path:
        return self.fold_dir(fold) / "history.csv"

    def fold_predictions(self, fold: int) -> Path:
        return self.fold_dir(fold) / "predictions.csv"

    def fold_bern_predictions(self, fold: int) -> Path:
        """The Bern heads' components of the fold's validation patients (multi-task runs)."""
        return self.fold_dir(fold) / "bern_predictions.csv"

    @property
    def oof_bern_predictions(self) -> Path:
        return self.root / "oof_bern_predictions.csv"

    def fold_summary(self, fold: int) -> Path:
        return self.fold_dir(fold) / "summary.json"

    def fold_measured_predictions(self, fold: int) -> Path:
        """A measured run's fold: its fused ``probability``, the network's and the measured's."""
        return self.fold_dir(fold) / "measured_predictions.csv"

    def fold_measured_model(self, fold: int) -> Path:
        """The fold's model of the measured Bern quantities (runs with ``measured.enabled``)."""
        return self.fold_dir(fold) / "measured_model.json"

    @property
    def cohort_ceiling(self) -> Path:
        """A whole synthetic cohort's ceiling (the ideal reader, the ground-truth Bern score)."""
        return self.root / "cohort_ceiling.json"

    @property
    def image_identities(self) -> Path:
        """The training images' identities (voxels and geometry; no paths): an external cohort
        that reuses one is warned about."""
        return self.root / "image_identities.json"

    @property
    def patient_measures(self) -> Path:
        """The automatic Bern reader's measures per patient (``measured`` runs)."""
        return self.root / "patient_measures.csv"

    @property
    def oof_predictions(self) -> Path:
        return self.root / "oof_predictions.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def roc_plot(self) -> Path:
        return self.root / "roc.png"

    @property
    def roc_vs_bern_plot(self) -> Path:
        return self.root / "roc_vs_bern.png"

    @property
    def reliability_plot(self) -> Path:
        return self.root / "reliability.png"

    @property
    def log(self) -> Path:
        """Every training command's log lines, appended (the command line first)."""
        return self.root / "train.log"

    @property
    def comparison(self) -> Path:
        """``evaluate --compare-with``: this run against another on the same patients."""
        return self.root / "comparison.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def model_card(self) -> Path:
        return self.root / "MODEL_CARD.md"

    @property
    def bundle_readme(self) -> Path:
        return self.root / "docs" / "README.md"

    @property
    def bundle_inference_config(self) -> Path:
        return self.root / "configs" / "inference.json"

    @property
    def bundle_metadata(self) -> Path:
        return self.root / "configs" / "metadata.json"

    @property
    def bundle_logging_config(self) -> Path:
        return self.root / "configs" / "logging.conf"

    def exported_weights(self, fold: int) -> Path:
        return self.root / "models" / f"fold_{fold}.safetensors"

    def onnx_graph(self, fold: int) -> Path:
        return self.root / "onnx" / f"fold_{fold}.onnx"

    def check_usable(self) -> None:
        """``--out`` must be a new or empty folder, or a sihnet run (it has ``config.yaml``): an
        existing folder of other files is never taken over.

        Raises:
            SihnetError: a file, or a folder holding other (not hidden) files.
        """
        if self.root.exists() and not self.root.is_dir():
            raise SihnetError(f"--out {self.root.name} is a file; give a folder for the run")
        if self.model_record.is_file():
            raise SihnetError(
                f"--out {self.root.name} is an exported model folder (it is shared: no patient IDs "
                "go into it); give a new or empty folder for the run"
            )
        owner = enclosing_folder(self.root.parent)
        if owner is not None:
            raise SihnetError(
                f"--out {self.root.name} is inside the sihnet folder {owner.name}; "
                "give a place outside it"
            )
        if self.root.is_dir() and not self.config.is_file():
            others = [
                p.name
                for p in self.root.iterdir()
                if p.name != self.log.name and not p.name.startswith(".")
            ]
            if others:
                raise SihnetError(
                    f"--out {self.root.name} is not empty and not a sihnet run (no config.yaml); "
                    "give a new or empty folder"
                )

    def require_run(self, command: str) -> None:
        """Refuse an exported model folder where a run folder is needed.

        Raises:
            SihnetError: naming the folder and what the command needs.
        """
        if self.model_record.is_file():
            raise SihnetError(
                f"{self.root.name} is an exported model folder; sihnet {command} needs the run "
                "folder it was exported from (written by sihnet train)"
            )

    def fold_started(self, n_folds: int) -> bool:
        """Whether any fold has saved a resume state or finished (the run has begun training)."""
        return any(
            self.last_state(k).is_file() or self.fold_summary(k).is_file() for k in range(n_folds)
        )

    def finished_folds(self, n_folds: int) -> list[int]:
        """Folds of ``0..n_folds-1`` whose training finished (their ``summary.json`` exists)."""
        return [k for k in range(n_folds) if self.fold_summary(k).is_file()]


@dataclasses.dataclass(frozen=True)
class ExternalPaths(RunPaths):
    """A run's results on an external cohort (``RUN/external/<name>/``): predictions.csv beside
    the run's own names for metrics.json, roc.png and reliability.png."""

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.csv"


@dataclasses.dataclass(frozen=True)
class MeasurePaths:
    """The folder ``sihnet measure`` writes (docs/reader.md): ``OUT/measurements.csv``,
    ``measure.json`` (what this command wrote, so that a rerun replaces exactly that),
    ``readings/<name>.json``, ``pictures/<name>.png``, ``markups/<name>.mrk.json``."""

    root: Path

    @property
    def table(self) -> Path:
        return self.root / "measurements.csv"

    @property
    def record(self) -> Path:
        return self.root / "measure.json"

    def reading(self, name: str) -> Path:
        return self.root / "readings" / f"{name}.json"

    def picture(self, name: str) -> Path:
        return self.root / "pictures" / f"{name}.png"

    def markups(self, name: str) -> Path:
        return self.root / "markups" / f"{name}.mrk.json"

    def outputs(self, name: str) -> tuple[Path, Path, Path]:
        """The files one scan's reading writes."""
        return self.reading(name), self.picture(name), self.markups(name)


@dataclasses.dataclass(frozen=True)
class OcclusionPaths:
    """The folder ``sihnet occlusion`` writes (``sihnet.interpret.patient_map``)."""

    root: Path

    @property
    def model_input(self) -> Path:
        return self.root / "input.nii.gz"

    @property
    def occlusion_map(self) -> Path:
        return self.root / "occlusion.nii.gz"

    @property
    def native_map(self) -> Path:
        return self.root / "occlusion_native.nii.gz"

    @property
    def figure(self) -> Path:
        return self.root / "occlusion.png"

    @property
    def regions(self) -> Path:
        return self.root / "regions.tsv"

    @property
    def record(self) -> Path:
        return self.root / "occlusion.json"

    def outputs(self) -> tuple[Path, ...]:
        """Every file of the folder (a folder holding others is not taken over)."""
        return (
            self.model_input,
            self.occlusion_map,
            self.native_map,
            self.figure,
            self.regions,
            self.record,
        )


@dataclasses.dataclass(frozen=True)
class DemoPaths:
    """The folder ``sihnet demo`` writes: the cohort, the run, each stage's wall seconds."""

    root: Path

    @property
    def cohort_folder(self) -> Path:
        return self.root / "cohort"

    @property
    def run(self) -> RunPaths:
        return RunPaths(self.root / "run")

    @property
    def stage_seconds(self) -> Path:
        return self.root / "stage_seconds.json"


@dataclasses.dataclass(frozen=True)
class CachePaths:
    """The preprocessed-volume cache's layout (``sihnet.preprocessing.cache``): file names are
    content hashes, never a source path or an identifier."""

    root: Path

    def volume(self, key: str) -> Path:
        return self.root / "volumes" / key[:2] / f"{key}.safetensors"

    def record(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.json"

    def converted(self, content: str) -> Path:
        return self.root / "dicom" / f"{content}.nii.gz"

    def machine_file(self, name: str) -> Path:
        """A file of this machine's, keyed by nothing of a scan (the precision decisions)."""
        return self.root / name


def is_sihnet_folder(folder: Path) -> bool:
    """Whether ``folder`` is a sihnet run folder or an exported model folder."""
    paths = RunPaths(Path(folder))
    if not paths.config.is_file():
        return False
    return any(p.is_file() for p in (paths.splits, paths.cohort, paths.model_record))


def enclosing_folder(path: Path) -> Path | None:
    """The nearest run or model folder at or above ``path`` (resolved), or None."""
    resolved = Path(path).resolve()
    for folder in (resolved, *resolved.parents):
        if is_sihnet_folder(folder):
            return folder
    return None


def folder_kind(folder: Path) -> str:
    """``model`` for an exported model folder, else ``run``."""
    return "model" if RunPaths(Path(folder)).model_record.is_file() else "run"
