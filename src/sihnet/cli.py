"""The ``sihnet`` command line: parse, load the configuration, call ``run_<stage>``, print.

Heavy libraries are imported inside commands so ``--help`` is instant. A problem the user can fix
is one line on stderr and exit code 2, never a traceback (``SIHNET_DEBUG=1`` shows tracebacks).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from sihnet.errors import SihnetError, TrainingInterrupted

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Predict a spinal CSF-venous fistula from one brain CE-T1 MRI (SIHnet). Research use only.",
)
log = logging.getLogger("sihnet")

ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="Recipe: 'paper' (GPU; the default) or 'quick' (CPU, minutes)."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML overrides of the profile; unknown keys are an error."),
]
CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Preprocessed-volume cache [default: $SIHNET_CACHE_DIR or ~/.cache/sihnet].",
    ),
]


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("matplotlib", "PIL", "nibabel", "monai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _overrides(epochs: int | None, folds: int | None, seed: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if epochs is not None:
        values["training"] = {"epochs": epochs}
    if folds is not None:
        values["cross_validation"] = {"folds": folds}
    if seed is not None:
        values["seed"] = seed
    return values


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    n: Annotated[int, typer.Option("--n", help="Patients (66/129 of them with fistula).")] = 129,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, identical files.")] = 0,
    spacing: Annotated[
        float, typer.Option("--spacing", help="Voxel size in mm (3D: isotropic).")
    ] = 1.0,
    reader_noise: Annotated[
        float, typer.Option("--reader-noise", help="SD (mm) of reader error in the Bern distances.")
    ] = 0.0,
) -> None:
    """Write a synthetic CE-T1 cohort with SIH signs: NIfTI files, cohort.csv, montage.png."""
    from sihnet.synth.cohort import run_synth

    manifest = run_synth(out, n=n, seed=seed, spacing_mm=spacing, reader_noise_mm=reader_noise)
    typer.echo(f"manifest: {manifest}")
    typer.echo(f"montage:  {manifest.parent / 'montage.png'}")


@app.command()
def train(
    manifest: Annotated[Path, typer.Argument(help="Cohort manifest (CSV/TSV) or BIDS root.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder.")],
    profile: ProfileOption = None,
    config: ConfigOption = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs per fold.")] = None,
    folds: Annotated[int | None, typer.Option("--folds", help="Cross-validation folds.")] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of splits, initialisation, augmentation.")
    ] = None,
    fold: Annotated[
        int | None, typer.Option("--fold", help="Train only this fold (0-based), e.g. one per GPU.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue interrupted folds from their last complete epoch."),
    ] = False,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Deterministic GPU kernels (slower).")
    ] = False,
    cache_dir: CacheOption = None,
) -> None:
    """Patient-level cross-validated training; evaluates the folds present when done.

    SIGINT/SIGTERM finish the current step and exit; the last complete epoch of each fold is saved
    and ``--resume`` continues from it.
    """
    from sihnet.config import config_from_dict, load_config
    from sihnet.data.manifest import read_manifest
    from sihnet.evaluation.run import run_evaluation
    from sihnet.paths import RunPaths
    from sihnet.preprocessing.cache import VolumeCache, default_cache_dir
    from sihnet.training.checkpoint import graceful_interrupt
    from sihnet.training.run import run_training

    paths = RunPaths(out)
    overrides = _overrides(epochs, folds, seed)
    if deterministic:
        overrides["training"] = {**overrides.get("training", {}), "deterministic": True}
    explicit = profile is not None or config is not None or overrides
    if resume and not explicit and paths.config.is_file():
        experiment = config_from_dict(yaml.safe_load(paths.config.read_text()))
    else:
        experiment = load_config(profile or "paper", config, overrides)
    cohort = read_manifest(manifest, require_labels=True)
    log.info(
        "cohort: %d patients (%d scans); excluded: %d indeterminate, %d SLEC",
        len(cohort.patient_ids),
        len(cohort.scans),
        cohort.excluded_indeterminate,
        cohort.excluded_slec,
    )
    with graceful_interrupt():
        run_training(
            experiment,
            cohort,
            paths,
            VolumeCache(cache_dir or default_cache_dir()),
            None if fold is None else [fold],
            resume,
        )
    metrics = run_evaluation(paths)
    _print_metrics(metrics, paths)


def _print_metrics(metrics: dict[str, Any], paths: Any) -> None:
    low, high = metrics["auroc_pooled_ci95"]
    typer.echo(
        f"folds {metrics['folds_evaluated']}: AUROC mean {metrics['auroc_mean']:.4f} ± {metrics['auroc_std']:.4f} "
        f"(selection '{metrics['selection']}'); pooled OOF {metrics['auroc_pooled']:.4f} "
        f"[95% CI {low:.3f}–{high:.3f}]"
        if low is not None
        else f"folds {metrics['folds_evaluated']}: pooled OOF AUROC {metrics['auroc_pooled']}"
    )
    bern = metrics.get("bern") or {}
    if "auroc_bern" in bern:
        typer.echo(
            f"vs Bern score on {bern['n_patients']} patients: model {bern['auroc_model']:.4f}, "
            f"Bern {bern['auroc_bern']:.4f} [{bern['auroc_bern_ci95'][0]:.3f}–{bern['auroc_bern_ci95'][1]:.3f}], "
            f"difference {bern['auroc_difference']:+.4f}, DeLong p = {bern['delong_p']:.3g}"
        )
    typer.echo(f"metrics: {paths.metrics}")
    typer.echo(f"roc:     {paths.roc_plot}")
    if "auroc_bern" in bern:
        typer.echo(f"vs Bern: {paths.roc_vs_bern_plot}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by 'sihnet train'.")],
) -> None:
    """Merge the run's completed folds: oof_predictions.csv, metrics.json, roc.png."""
    from sihnet.evaluation.run import run_evaluation
    from sihnet.paths import RunPaths

    paths = RunPaths(run)
    _print_metrics(run_evaluation(paths), paths)


@app.command()
def bern(
    manifest: Annotated[
        Path, typer.Argument(help="Cohort manifest (CSV/TSV) or BIDS root with Bern columns.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write patient_id,bern_score,bern_category,bern_complete."),
    ] = None,
) -> None:
    """Bern score per patient (partial when a field is missing) and its AUROC against the labels."""
    from sihnet.evaluation.bern_table import run_bern

    summary = run_bern(manifest, out)
    for line in summary:
        typer.echo(line)


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Demo folder (cohort/ and run/ inside).")
    ] = Path("demo_run"),
    profile: ProfileOption = "quick",
    n: Annotated[int, typer.Option("--n", help="Synthetic patients.")] = 129,
    spacing: Annotated[
        float, typer.Option("--spacing", help="Voxel size of the synthetic studies, mm.")
    ] = 2.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic cohort.")] = 0,
    cache_dir: CacheOption = None,
) -> None:
    """The main job on the built-in synthetic cohort: synthesise, train with CV, evaluate."""
    from sihnet.config import load_config
    from sihnet.data.manifest import read_manifest
    from sihnet.evaluation.run import run_evaluation
    from sihnet.paths import RunPaths
    from sihnet.preprocessing.cache import VolumeCache, default_cache_dir
    from sihnet.synth.cohort import run_synth
    from sihnet.training.run import run_training

    manifest = out / "cohort" / "cohort.csv"
    if not manifest.is_file():
        run_synth(out / "cohort", n=n, seed=seed, spacing_mm=spacing)
    experiment = load_config(profile or "quick")
    paths = RunPaths(out / "run")
    run_training(
        experiment, read_manifest(manifest), paths, VolumeCache(cache_dir or default_cache_dir())
    )
    _print_metrics(run_evaluation(paths), paths)


def main() -> None:
    """Console entry point: runs the app, turning errors into one line on stderr."""
    _setup_logging()
    try:
        app()
    except SihnetError as error:
        typer.echo(f"sihnet: error: {error}", err=True)
        sys.exit(2)
    except TrainingInterrupted as stop:
        command = " ".join(
            ["sihnet", *sys.argv[1:], *([] if "--resume" in sys.argv else ["--resume"])]
        )
        typer.echo(
            f"sihnet: stopped by {stop}; the last complete epoch of each unfinished fold is saved. "
            f"Continue with: {command}",
            err=True,
        )
        sys.exit(128 + stop.signal_number)
    except KeyboardInterrupt:
        typer.echo("sihnet: interrupted", err=True)
        sys.exit(130)
    except Exception as error:
        if os.environ.get("SIHNET_DEBUG"):
            raise
        typer.echo(
            f"sihnet: internal error: {type(error).__name__}: {error} (SIHNET_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
