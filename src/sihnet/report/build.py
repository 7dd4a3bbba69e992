"""``sihnet report RUN``: one self-contained HTML page of a run (jinja2 template, figures and the
NiiVue viewer inlined: no network, no CDN; readable with JavaScript off).

Only pseudonymous patient IDs of the manifest's ``patient_id`` column appear; image paths never
do (commands are shown with file names only).
"""

from __future__ import annotations

import base64
import csv
import shlex
import statistics
from collections import Counter
from datetime import datetime, timezone
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import UndefinedError

from sihnet.atomic import write_text_atomic
from sihnet.bern import score_fields
from sihnet.config import ExperimentConfig, config_to_dict
from sihnet.data.splits import load_splits
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256
from sihnet.outputs import check_output_file, starts_with
from sihnet.paths import OcclusionPaths, RunPaths
from sihnet.report.checklist import checklist
from sihnet.report.figures import decision_curve_figure, file_uri, training_figure
from sihnet.report.model_card import subgroup_aurocs, template_environment
from sihnet.schemas import (
    ExternalMetricsFile,
    FoldSummary,
    MetricsFile,
    OcclusionFile,
    PredictionTable,
    read_json_as,
)
from sihnet.tables import read_rows

GENERATOR = '<meta name="generator" content="sihnet report">'  # marks a page sihnet wrote
PACKAGES = ("sihnet", "torch", "monai", "numpy", "scikit-learn", "nibabel", "pydicom", "scipy")


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_rows(config: ExperimentConfig) -> list[dict[str, Any]]:
    """The resolved configuration, each key beside the paper's value and whether it deviates."""
    paper = _flatten(config_to_dict(ExperimentConfig()))
    ours = _flatten(config_to_dict(config))
    skip = {"profile"}
    return [
        {"key": key, "value": value, "paper": paper.get(key), "deviates": value != paper.get(key)}
        for key, value in ours.items()
        if key not in skip
    ]


def _age(ages: list[float]) -> dict[str, float] | None:
    if len(ages) < 2:
        return None
    return {
        "n": len(ages),
        "mean": statistics.fmean(ages),
        "sd": statistics.stdev(ages),
        "min": min(ages),
        "max": max(ages),
    }


def cohort_summary(paths: RunPaths, cohort: dict[str, Any]) -> dict[str, Any]:
    """Counts, demographics (aggregates only) and fold sizes with their prevalence."""
    labels: dict[str, int] = cohort.get("labels", {})
    demographics: dict[str, dict[str, str]] = cohort.get("demographics", {})
    ages = [float(d["age"]) for d in demographics.values() if d.get("age")]
    folds: list[dict[str, Any]] = []
    if paths.splits.is_file():
        assignment = load_splits(paths.splits)[0]
        for fold in sorted(set(assignment.values())):
            members = [p for p, f in assignment.items() if f == fold]
            positive = sum(labels.get(p) == 1 for p in members)
            folds.append({"fold": fold, "n": len(members), "positive": positive,
                          "prevalence": positive / len(members) if members else 0.0})  # fmt: skip
    return {
        "n_patients": len(labels),
        "n_positive": sum(v == 1 for v in labels.values()),
        "n_scans": cohort.get("n_scans", len(labels)),
        "excluded_indeterminate": cohort.get("excluded_indeterminate", 0),
        "excluded_slec": cohort.get("excluded_slec", 0),
        "age": _age(ages),
        "sex": dict(Counter(d["sex"] for d in demographics.values() if d.get("sex"))),
        "site": dict(Counter(d["site"] for d in demographics.values() if d.get("site"))),
        "folds": folds,
    }


def confident_errors(
    oof: PredictionTable, cohort: dict[str, Any], count: int = 5
) -> list[dict[str, Any]]:
    """The fistula patients with the lowest and the others with the highest probability."""
    bern = cohort.get("bern", {})

    def row(i: int, kind: str) -> dict[str, Any]:
        patient = oof.patient_ids[i]
        score = score_fields(bern[patient]) if patient in bern else None
        shown = (
            ""
            if score is None
            else (str(score.score) if score.complete else f"{score.score_min}–{score.score_max}")
        )
        return {"patient_id": patient, "kind": kind, "probability": float(oof.probability[i]),
                "fold": str(int(oof.folds[i])), "bern": shown}  # fmt: skip

    order = np.argsort(oof.probability, kind="stable")
    missed = [int(i) for i in order if oof.labels[i] == 1]
    false_alarms = [int(i) for i in order[::-1] if oof.labels[i] == 0]
    return [row(i, "fistula, scored low") for i in missed[:count]] + [
        row(i, "no fistula, scored high") for i in false_alarms[:count]
    ]


def _nifti_base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def occlusion_views(folders: list[Path]) -> list[dict[str, Any]]:
    """Each occlusion folder's figure, record and volumes (for the viewer)."""
    views = []
    for index, folder in enumerate(folders):
        files = OcclusionPaths(folder)
        record = read_json_as(files.record, OcclusionFile)
        views.append({
            "id": f"viewer{index}", "name": folder.name, "record": record,
            "figure": file_uri(files.figure),
            "input": _nifti_base64(files.model_input),
            "map": _nifti_base64(files.occlusion_map),
            "peak": max((abs(r["peak"]) for r in record.get("regions", [])), default=1.0),
        })  # fmt: skip
    return views


def _commands(paths: RunPaths) -> list[str]:
    """The command lines recorded in ``train.log``, with file names instead of paths."""
    if not paths.log.is_file():
        return []
    commands = []
    for line in paths.log.read_text(encoding="utf-8", errors="replace").splitlines():
        if " sihnet " not in line:
            continue
        try:
            words = shlex.split(line[line.index(" sihnet ") + 1 :])
        except ValueError:  # an unbalanced quote in a hand-edited log
            continue
        commands.append(shlex.join(shown_word(w) for w in words))
    return commands


def shown_word(word: str) -> str:
    """A command-line word with any path reduced to its file name (``--out=/a/b`` -> ``--out=b``)."""
    if word.startswith("--") and "=" in word:
        option, value = word.split("=", 1)
        return f"{option}={shown_word(value)}"
    return Path(word).name if "/" in word or "\\" in word else word


def _hashes(paths: RunPaths, cohort: dict[str, Any], folds: list[int]) -> list[dict[str, str]]:
    rows = [{"what": paths.config.name, "sha256": file_sha256(paths.config)}]
    if cohort.get("manifest_sha256"):
        rows.append({"what": "manifest", "sha256": cohort["manifest_sha256"]})
    if paths.splits.is_file():
        rows.append({"what": paths.splits.name, "sha256": file_sha256(paths.splits)})
    for k in folds:
        rows.append(
            {
                "what": f"fold {k} weights",
                "sha256": FoldSummary.read(paths.fold_summary(k)).weights_sha256,
            }
        )
    return rows


def _histories(paths: RunPaths, folds: list[int]) -> dict[int, list[dict[str, str]]]:
    """Each fold's ``history.csv``, its numbers checked."""
    histories = {}
    for k in folds:
        if paths.history(k).is_file():
            histories[k] = _checked_rows(paths.history(k), ("epoch", "loss", "val_auroc", "lr"))
    return histories


def _checked_rows(path: Path, numbers: tuple[str, ...]) -> list[dict[str, str]]:
    """A CSV sihnet wrote, whose ``numbers`` columns must read as numbers (empty or nan allowed).

    Raises:
        SihnetError: naming the file.
    """
    shown = f"{path.parent.name}/{path.name}"
    try:
        rows = read_rows(path)
        for row in rows:
            for column in numbers:
                if row[column] not in ("", "nan"):
                    float(row[column])
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError, csv.Error):
        raise SihnetError(f"{shown} is damaged") from None
    return rows


def report_context(paths: RunPaths, occlusion_dirs: list[Path]) -> dict[str, Any]:
    """Everything the template shows (see the module docstring)."""
    config = paths.read_config()
    if not paths.metrics.is_file():
        raise SihnetError(
            f"{paths.root.name} has no {paths.metrics.name}: run 'sihnet evaluate' first"
        )
    metrics, cohort = read_json_as(paths.metrics, MetricsFile), paths.read_cohort()
    folds = metrics["folds_evaluated"]
    oof = PredictionTable.read(paths.oof_predictions)
    record_name = OcclusionPaths(paths.root).record.name
    found = sorted({p.parent for p in paths.root.rglob(record_name)})
    occlusions = occlusion_views(
        [*found, *[Path(d) for d in occlusion_dirs if Path(d) not in found]]
    )
    externals = [
        read_json_as(e.metrics, ExternalMetricsFile, str(e.metrics.relative_to(paths.root)))
        for e in paths.external_results()
    ]
    summary, subgroups = cohort_summary(paths, cohort), subgroup_aurocs(oof, cohort)
    available = {"bern"} if metrics.get("bern", {}).get("auroc_bern") is not None else set()
    available |= {name for name, present in (("subgroups", subgroups), ("occlusion", occlusions),
                  ("external", externals), ("demographics", summary["age"] or summary["sex"])) if present}  # fmt: skip
    histories = _histories(paths, folds)
    return {
        "run": paths.root.name,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": _versions(),
        "config": config,
        "recipe": recipe_rows(config),
        "metrics": metrics,
        "cohort": summary,
        "subgroups": subgroups,
        "summaries": [FoldSummary.read(paths.fold_summary(k)).as_json() for k in folds],
        "figures": {
            "roc": file_uri(paths.roc_plot),
            "roc_vs_bern": file_uri(paths.roc_vs_bern_plot),
            "reliability": file_uri(paths.reliability_plot),
            "decision": decision_curve_figure(metrics["decision_curve"])
            if "decision_curve" in metrics
            else None,
            "training": training_figure(histories) if histories else None,
        },
        "errors": confident_errors(oof, cohort),
        "occlusions": occlusions,
        "externals": externals,
        "checklist": checklist(available),
        "hashes": _hashes(paths, cohort, folds),
        "commands": _commands(paths),
        "niivue": resources.files("sihnet.report").joinpath("vendor/niivue.umd.js").read_text()
        if occlusions
        else "",
    }


def run_report(
    run: Path, out: Path | None = None, occlusion_dirs: list[Path] | None = None
) -> Path:
    """Write the report (default ``RUN/report.html``) and return its path."""
    paths = RunPaths(Path(run))
    paths.require_run("report")
    target = Path(out) if out is not None else paths.report
    check_output_file(target, "report", own=paths.report, earlier=starts_with(GENERATOR))
    for folder in occlusion_dirs or []:
        record = OcclusionPaths(Path(folder)).record
        if not record.is_file():
            raise SihnetError(f"--occlusion {Path(folder).name} holds no {record.name}")
    context = report_context(paths, list(occlusion_dirs or []))
    try:
        html = template_environment().get_template("report.html.j2").render(**context)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, UndefinedError) as error:
        raise SihnetError(
            f"{paths.root.name}: {paths.metrics.name} or another run file is damaged "
            f"({type(error).__name__}); run 'sihnet evaluate {paths.root.name}' again"
        ) from None
    write_text_atomic(target, html)
    return target
