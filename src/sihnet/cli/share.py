"""Commands that make what people look at and carry: ``report`` and ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sihnet.cli.options import app
from sihnet.paths import RunPaths

REPORT = RunPaths(Path("RUN")).report  # the help's default, named where every run file is


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder written by 'sihnet train'.")],
    out: Annotated[
        Path | None, typer.Option("--out", help=f"HTML file (default: {REPORT}).")
    ] = None,
    occlusion: Annotated[
        list[Path] | None,
        typer.Option("--occlusion", help="An occlusion output folder to show (repeatable)."),
    ] = None,
) -> None:
    """One self-contained HTML page of a run: cohort, recipe, AUROCs, Bern score, calibration, maps."""
    from sihnet.report.build import run_report

    typer.echo(f"report: {run_report(run, out, occlusion or [])}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run folder written by 'sihnet train'.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (new or empty).")],
    allow_missing_folds: Annotated[
        bool,
        typer.Option(
            "--allow-missing-folds", help="Export a run whose folds are not all finished."
        ),
    ] = False,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Also write onnx/fold_K.onnx (onnxruntime, Triton).")
    ] = False,
) -> None:
    """A portable model folder (also a MONAI bundle): weights, settings, thresholds, reference
    statistics, model card."""
    from sihnet.export import run_export

    folder = run_export(run, out, allow_missing_folds, onnx)
    typer.echo(f"model: {folder}")
    typer.echo(f"card:  {RunPaths(folder).model_card}")
