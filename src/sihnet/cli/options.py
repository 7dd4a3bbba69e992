"""The ``sihnet`` application and what its commands share: the options every command takes the same
way, and small parsers of flag values. The commands live in :mod:`sihnet.cli.cohort`,
:mod:`sihnet.cli.pipeline` and :mod:`sihnet.cli.share`; :func:`sihnet.cli.main` runs them."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from sihnet.errors import SihnetError

ARGV: list[str] = []  # the running command's arguments (train.log, the resume hint)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Predict a spinal CSF-venous fistula from one brain CE-T1 MRI (SIHnet). Research use only.",
)
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
        help="Preprocessed-volume cache (default: $SIHNET_CACHE_DIR or ~/.cache/sihnet).",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device", help="auto, cpu, cuda or cuda:N (default: the run's training.device)."
    ),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(
        "--precision", help="auto, fp32, bf16 or fp16 (default: the run's training.precision)."
    ),
]
RequireAllOption = Annotated[
    bool,
    typer.Option(
        "--require-all-folds", help="Refuse a run whose folds are not all finished (default: warn)."
    ),
]


def inference_options(device: str | None, precision: str | None) -> Any:
    """The ``--device``/``--precision`` flags as an :class:`InferenceConfig` (checked)."""
    from sihnet.config import InferenceConfig, Precision

    if precision is not None and precision not in typing.get_args(Precision):
        raise SihnetError(f"--precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    if device is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise SihnetError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return InferenceConfig(device=device, precision=precision)  # type: ignore[arg-type]


def echo(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)


def parse_voxels(text: str | None, name: str) -> tuple[int, int, int] | None:
    """``12,13,13`` / ``12x13x13`` / ``12`` (all three axes) as three positive voxel counts."""
    if text is None:
        return None
    parts = text.replace("x", ",").split(",")
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise SihnetError(f"{name} must be three positive integers like 12,13,13, not {text!r}")
    a, b, c = (int(p) for p in parts)
    return (a, b, c)


def choice(value: str, allowed: typing.Any, name: str) -> str:
    """``value`` if it is one of a ``Literal`` type's values (or of a tuple), else one line."""
    options = allowed if isinstance(allowed, tuple) else typing.get_args(allowed)
    if value not in options:
        raise SihnetError(f"{name} must be one of {', '.join(options)}, not {value!r}")
    return value
