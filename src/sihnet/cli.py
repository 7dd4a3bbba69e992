"""The ``sihnet`` command line: parse, load the configuration, call ``run_<stage>``, print.

Heavy libraries are imported inside commands so ``--help`` is instant. A problem the user can fix
is one line on stderr and exit code 2, never a traceback (``SIHNET_DEBUG=1`` shows tracebacks).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sihnet.config import OcclusionConfig
from sihnet.errors import SihnetError, TrainingInterrupted
from sihnet.summaries import (
    convert_lines,
    external_lines,
    metrics_lines,
    occlusion_lines,
    prediction_lines,
)

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


def _echo(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)


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


def _record_command(paths: Any) -> None:
    """Append the command line to ``RUN/train.log`` and log there too (a run's own record)."""
    import shlex
    from datetime import datetime, timezone

    paths.root.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(paths.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger().addHandler(handler)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log.info("%s sihnet %s", stamp, shlex.join(sys.argv[1:]))


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
    from sihnet.config import load_config, read_run_config
    from sihnet.data.manifest import read_manifest
    from sihnet.paths import RunPaths

    paths = RunPaths(out)
    overrides = _overrides(epochs, folds, seed)
    if deterministic:
        overrides["training"] = {**overrides.get("training", {}), "deterministic": True}
    explicit = profile is not None or config is not None or overrides
    if resume and not explicit and paths.config.is_file():
        experiment = read_run_config(paths.config)
    else:
        experiment = load_config(profile or "paper", config, overrides)
    cohort = read_manifest(manifest, require_labels=True)
    from sihnet.evaluation.run import run_evaluation
    from sihnet.preprocessing.cache import VolumeCache, default_cache_dir
    from sihnet.training.checkpoint import graceful_interrupt
    from sihnet.training.run import check_run_folder, run_training

    check_run_folder(paths)
    _record_command(paths)
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
    _echo(metrics_lines(run_evaluation(paths), paths))


DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device", help="auto, cpu, cuda or cuda:N [default: the run's training.device]."
    ),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option("--precision", help="auto, fp32 or bf16 [default: the run's training.precision]."),
]
RequireAllOption = Annotated[
    bool,
    typer.Option(
        "--require-all-folds", help="Refuse a run whose folds are not all finished (default: warn)."
    ),
]


def _inference(device: str | None, precision: str | None) -> Any:
    """The ``--device``/``--precision`` flags as an :class:`InferenceConfig` (checked)."""
    import typing

    from sihnet.config import InferenceConfig, Precision

    if precision is not None and precision not in typing.get_args(Precision):
        raise SihnetError(f"--precision must be auto, fp32 or bf16, not {precision!r}")
    if device is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise SihnetError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return InferenceConfig(device=device, precision=precision)  # type: ignore[arg-type]


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
) -> None:
    """Merge the run's completed folds (oof_predictions.csv, metrics.json, roc.png), or score an external cohort."""
    from sihnet.paths import RunPaths

    paths = RunPaths(run)
    if manifest is not None:
        from sihnet.evaluation.external import run_external
        from sihnet.preprocessing.cache import VolumeCache, default_cache_dir

        settings = _inference(device, precision)
        cache = VolumeCache(cache_dir or default_cache_dir())
        metrics = run_external(run, manifest, cache, settings, require_all_folds)
        _echo(external_lines(metrics, paths))
        return
    from sihnet.evaluation.run import run_evaluation

    _echo(metrics_lines(run_evaluation(paths), paths))


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
def convert(
    dicom_dir: Annotated[
        Path, typer.Argument(help="Folder tree of DICOM studies (e.g. a PACS export).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (de-identified NIfTI + manifest).")
    ],
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file", help="Secret for keyed-hash pseudonyms [or $SIHNET_PSEUDONYM_KEY]."
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping", help="CSV original_id,pseudonym kept outside --out (extended in place)."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", help="CSV/TSV keyed by the original patient_id: label, Bern columns, …"
        ),
    ] = None,
    override: Annotated[
        Path | None,
        typer.Option(
            "--override",
            help="CSV study,series_number (study: StudyInstanceUID, accession or patient ID).",
        ),
    ] = None,
    quarantine_paths: Annotated[
        Path | None,
        typer.Option(
            "--quarantine-paths",
            help="Also write the source paths of quarantined files here (outside --out).",
        ),
    ] = None,
) -> None:
    """DICOM studies to de-identified NIfTI (BIDS layout) + manifest.csv, selection.tsv, quarantine.tsv."""
    from sihnet.ingest.convert import run_convert
    from sihnet.ingest.deid import Pseudonyms
    from sihnet.ingest.select import read_overrides

    pseudonyms = Pseudonyms.from_options(key_file, mapping)
    overrides = read_overrides(override) if override is not None else {}
    summary = run_convert(dicom_dir, out, pseudonyms, labels, overrides, quarantine_paths)
    _echo(convert_lines(summary, out))
    if summary.converted == 0:
        raise SihnetError("no study was converted (see selection.tsv and quarantine.tsv)")
    if summary.failed or summary.quarantined or summary.uncertain:
        typer.echo(
            "sihnet: some input was not used or a pick is uncertain; see selection.tsv and quarantine.tsv",
            err=True,
        )
        raise typer.Exit(3)


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
    import json

    from sihnet.interpret.predict import run_predict
    from sihnet.preprocessing.cache import VolumeCache, default_cache_dir

    cache = VolumeCache(cache_dir or default_cache_dir())
    records = run_predict(run, images, _inference(device, precision), cache, require_all_folds)
    _echo([json.dumps(records, indent=2)] if as_json else prediction_lines(records))
    failed = sum("error" in r for r in records)
    if failed:
        typer.echo(f"sihnet: {failed} of {len(records)} images could not be scored", err=True)
        raise typer.Exit(2)


_OCCLUSION_DEFAULTS = OcclusionConfig()


def _voxels_text(voxels: tuple[int, int, int]) -> str:
    return ",".join(str(v) for v in voxels)


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
        typer.Option("--stride", help="Window step in voxels at 1 mm [default: the patch]."),
    ] = None,
    target: Annotated[
        str, typer.Option("--target", help="Score of the fistula class: 'logit' or 'probability'.")
    ] = _OCCLUSION_DEFAULTS.target,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help="Occluded copies per forward [default: from free memory]."
        ),
    ] = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    require_all_folds: RequireAllOption = False,
) -> None:
    """Occlusion map (the paper's Figure 3): NIfTI on the model grid and in the image's space, PNG, regions."""
    import typing

    from sihnet.config import Target
    from sihnet.interpret.run import parse_voxels, run_occlusion
    from sihnet.preprocessing.cache import VolumeCache, default_cache_dir

    if target not in typing.get_args(Target):
        raise SihnetError(f"--target must be 'logit' or 'probability', not {target!r}")
    if fold != "all" and not fold.isdigit():
        raise SihnetError(f"--fold must be 'all' or a fold number, not {fold!r}")
    patch_1mm = parse_voxels(patch, "--patch")
    assert patch_1mm is not None
    settings = OcclusionConfig(
        patch_1mm=patch_1mm,
        stride_1mm=parse_voxels(stride, "--stride"),
        target=target,  # type: ignore[arg-type]
        fold=None if fold == "all" else int(fold),
        batch_size=batch_size,
    )
    cache = VolumeCache(cache_dir or default_cache_dir())
    inference = _inference(device, precision)
    record = run_occlusion(run, image, out, settings, inference, cache, require_all_folds)
    _echo(occlusion_lines(record, out))


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
    """The main job on the built-in synthetic cohort: synthesise, train with CV, evaluate, one occlusion map."""
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
    cohort = read_manifest(manifest)
    cache = VolumeCache(cache_dir or default_cache_dir())
    run_training(experiment, cohort, paths, cache)
    _echo(metrics_lines(run_evaluation(paths), paths))
    from sihnet.interpret.run import demo_patient, run_occlusion

    patient, image, fold = demo_patient(paths, cohort)
    typer.echo(
        f"occlusion map of {patient} (fistula) with fold {fold}'s model, which never saw it:"
    )
    settings = OcclusionConfig(fold=fold)
    record = run_occlusion(paths.root, image, out / "occlusion", settings, cache=cache)
    _echo(occlusion_lines(record, out / "occlusion"))


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
        text = re.sub(
            r"(?:[A-Za-z]:)?[/\\][^\s'\"]+", "<path>", str(error)
        )  # paths may name patients
        typer.echo(
            f"sihnet: internal error: {type(error).__name__}: {text} (SIHNET_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
