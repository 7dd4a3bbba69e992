"""Commands of a run: ``train``, ``evaluate``, ``predict``, ``occlusion``, ``demo``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sihnet.cli import options as shared
from sihnet.cli.options import (
    CacheOption,
    ConfigOption,
    DeviceOption,
    PrecisionOption,
    ProfileOption,
    RequireAllOption,
    app,
    choice,
    echo,
    inference_options,
    parse_voxels,
)
from sihnet.cli.summaries import external_lines, metrics_lines, occlusion_lines, prediction_lines
from sihnet.config import DEMO_PATIENTS, TARGETS, OcclusionConfig
from sihnet.errors import SihnetError

if TYPE_CHECKING:  # loaded when a command needs them: the CLI starts fast
    from sihnet.config import ExperimentConfig
    from sihnet.data.manifest import Cohort
    from sihnet.paths import RunPaths

log = logging.getLogger("sihnet")


def _overrides(epochs: int | None, folds: int | None, seed: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if epochs is not None:
        values["training"] = {"epochs": epochs}
    if folds is not None:
        values["cross_validation"] = {"folds": folds}
    if seed is not None:
        values["seed"] = seed
    return values


def _experiment(
    paths: Any, profile: str | None, config: Path | None, overrides: dict[str, Any], resume: bool
) -> Any:
    """The run's own configuration when resuming without new settings, else profile + YAML + flags."""
    from sihnet.config import load_config, read_run_config

    explicit = profile is not None or config is not None or overrides
    if resume and not explicit and paths.config.is_file():
        return read_run_config(paths.config)
    return load_config(profile or "paper", config, overrides)


def _record_command(paths: Any) -> None:
    """Append the command line to ``RUN/train.log`` and log there too (a run's own record)."""
    import shlex
    from datetime import datetime, timezone

    paths.root.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(paths.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger().addHandler(handler)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log.info("%s sihnet %s", stamp, shlex.join(shared.ARGV))


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
    plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Measure a few steps on the device and print the time per epoch and for the run, "
            "and the peak memory with and without activation checkpointing; train nothing.",
        ),
    ] = False,
) -> None:
    """Patient-level cross-validated training; evaluates the folds present when done.

    SIGINT/SIGTERM finish the current step and exit; the last complete epoch of each fold is saved
    and ``--resume`` continues from it.
    """
    from sihnet.data.manifest import read_manifest
    from sihnet.paths import RunPaths

    paths = RunPaths(out)
    overrides = _overrides(epochs, folds, seed)
    if deterministic:
        overrides["training"] = {**overrides.get("training", {}), "deterministic": True}
    experiment = _experiment(paths, profile, config, overrides, resume)
    cohort = read_manifest(manifest, require_labels=True)
    if plan:
        from sihnet.training.distributed import world_from_environment
        from sihnet.training.plan import plan_lines, plan_run

        processes = world_from_environment().size
        echo(plan_lines(plan_run(experiment, len(cohort.patient_ids), processes)))
        return
    paths.check_usable()
    _train_and_evaluate(paths, experiment, cohort, cache_dir, fold, resume)


def _train_and_evaluate(
    paths: RunPaths,
    experiment: ExperimentConfig,
    cohort: Cohort,
    cache_dir: Path | None,
    fold: int | None,
    resume: bool,
) -> None:
    """``train``'s work once its arguments are checked: every process trains its share (torchrun),
    rank 0 writes, logs and evaluates the folds present."""
    from sihnet.evaluation.run_metrics import run_evaluation
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.training.checkpoint import graceful_interrupt
    from sihnet.training.cross_validation import run_training
    from sihnet.training.distributed import process_group, world_from_environment

    world = world_from_environment()  # several processes under torchrun; rank 0 writes and logs
    if world.main:
        _record_command(paths)
        log.info("cohort: %s", cohort.describe())
    else:
        logging.getLogger().setLevel(logging.WARNING)
    cache = VolumeCache.open(cache_dir)
    requested = None if fold is None else [fold]
    with graceful_interrupt(), process_group(world, experiment.training.device):
        run_training(experiment, cohort, paths, cache, requested, resume, world)
    if world.main:
        echo(metrics_lines(run_evaluation(paths), paths))


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by 'sihnet train'.")],
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", help="Another labelled cohort: external validation of the run's models."
        ),
    ] = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    require_all_folds: RequireAllOption = False,
    compare_with: Annotated[
        Path | None,
        typer.Option(
            "--compare-with",
            help="Another run on the same splits (e.g. single- vs multi-task): paired AUROC difference.",
        ),
    ] = None,
) -> None:
    """Merge the run's completed folds (oof_predictions.csv, metrics.json, roc.png), or score an external cohort."""
    from sihnet.paths import RunPaths

    paths = RunPaths(run)
    if compare_with is not None:
        from sihnet.evaluation.compare import compare_runs, comparison_lines

        echo(
            comparison_lines(compare_runs(paths, RunPaths(compare_with), paths.read_config().seed))
        )
        return
    if manifest is not None:
        from sihnet.evaluation.external import run_external
        from sihnet.preprocessing.cache import VolumeCache

        settings = inference_options(device, precision)
        cache = VolumeCache.open(cache_dir)
        metrics = run_external(run, manifest, cache, settings, require_all_folds)
        echo(external_lines(metrics, paths))
        return
    from sihnet.evaluation.run_metrics import run_evaluation

    echo(metrics_lines(run_evaluation(paths), paths))


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder written by 'sihnet train'.")],
    images: Annotated[list[Path], typer.Argument(help="NIfTI files or DICOM folders.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    cache_dir: CacheOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    require_all_folds: RequireAllOption = False,
) -> None:
    """Fold-ensemble probability of a CSF-venous fistula per image (research use only)."""
    from sihnet.atomic import strict_json

    settings = inference_options(device, precision)
    from sihnet.inference.predict import run_predict
    from sihnet.preprocessing.cache import VolumeCache

    cache = VolumeCache.open(cache_dir)
    records = run_predict(run, images, settings, cache, require_all_folds)
    echo([strict_json(records)] if as_json else prediction_lines(records))
    failed = sum("error" in r for r in records)
    if failed:
        typer.echo(
            f"sihnet: error: {failed} of {len(records)} images could not be scored", err=True
        )
        raise typer.Exit(2)


_OCCLUSION_DEFAULTS = OcclusionConfig()


def _voxels_text(voxels: tuple[int, int, int]) -> str:
    return ",".join(str(v) for v in voxels)


def _occlusion_settings(
    fold: str, patch: str, stride: str | None, target: str, batch_size: int | None, view: str
) -> OcclusionConfig:
    """The sweep's settings from ``occlusion``'s options (each checked, named when wrong)."""
    if fold != "all" and not fold.isdigit():
        raise SihnetError(f"--fold must be 'all' or a fold number, not {fold!r}")
    patch_1mm = parse_voxels(patch, "--patch")
    assert patch_1mm is not None
    return OcclusionConfig(
        patch_1mm=patch_1mm,
        stride_1mm=parse_voxels(stride, "--stride"),
        target=choice(target, TARGETS, "--target"),
        fold=None if fold == "all" else int(fold),
        batch_size=batch_size,
        view=view,
    )


@app.command()
def occlusion(
    run: Annotated[Path, typer.Argument(help="Run folder written by 'sihnet train'.")],
    image: Annotated[
        Path, typer.Argument(help="CE-T1 of one patient: NIfTI file or DICOM folder.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    fold: Annotated[str, typer.Option("--fold", help="Fold model K, or 'all' (mean map).")] = "all",
    patch: Annotated[
        str,
        typer.Option("--patch", help="Zero patch in voxels at 1 mm, scaled to the run's spacing."),
    ] = _voxels_text(_OCCLUSION_DEFAULTS.patch_1mm),
    stride: Annotated[
        str | None,
        typer.Option("--stride", help="Window step in voxels at 1 mm (default: the patch)."),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="Score explained: the fistula 'logit' or 'probability'; for models with the Bern "
            "heads also a Bern item (a manifest Bern column).",
        ),
    ] = _OCCLUSION_DEFAULTS.target,
    view: Annotated[
        str,
        typer.Option(
            "--view",
            help="The input occluded: 'main' (the whole head) or a view of the run's config.",
        ),
    ] = _OCCLUSION_DEFAULTS.view,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help="Occluded copies per forward (default: from free memory)."
        ),
    ] = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    require_all_folds: RequireAllOption = False,
) -> None:
    """Occlusion map (the paper's Figure 3): NIfTI on the model grid and in the image's space, PNG, regions."""
    settings = _occlusion_settings(fold, patch, stride, target, batch_size, view)
    inference = inference_options(device, precision)
    from sihnet.interpret.patient_map import run_occlusion
    from sihnet.preprocessing.cache import VolumeCache

    cache = VolumeCache.open(cache_dir)
    record = run_occlusion(run, image, out, settings, inference, cache, require_all_folds)
    echo(occlusion_lines(record, out))


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Demo folder (cohort/ and run/ inside).")
    ] = Path("demo_run"),
    profile: ProfileOption = "quick",
    n: Annotated[
        int,
        typer.Option(
            "--n", help="Synthetic patients (129 = the paper's cohort; 60 fits ten minutes)."
        ),
    ] = DEMO_PATIENTS,
    spacing: Annotated[
        float, typer.Option("--spacing", help="Voxel size of the synthetic studies, mm.")
    ] = 2.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic cohort.")] = 0,
    cache_dir: CacheOption = None,
) -> None:
    """The main job on the built-in synthetic cohort: synthesise, train with CV, evaluate, one
    occlusion map, the report."""
    from sihnet.demo import run_demo
    from sihnet.preprocessing.cache import VolumeCache

    cache = VolumeCache.open(cache_dir)
    result = run_demo(out, profile or "quick", n, spacing, seed, cache)
    echo(metrics_lines(result.metrics, result.paths))
    echo([result.occlusion_line])
    echo(occlusion_lines(result.occlusion, result.paths.root / "occlusion"))
    typer.echo(f"report:  {result.report}")
