"""The ``sihnet`` command line: parse, load the configuration, call ``run_<stage>``, print.

Heavy libraries are imported inside commands, after the options are checked, so ``--help`` and a
mistyped option answer at once. A problem the user can fix (a bad input, a usage error, a full
disk) is one line on stderr and exit code 2, never a traceback (``SIHNET_DEBUG=1`` shows
tracebacks). Commands live in :mod:`sihnet.cli.cohort` (synth, convert, bern) and
:mod:`sihnet.cli.run` (train, evaluate, predict, occlusion, demo).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sys
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

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
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device", help="auto, cpu, cuda or cuda:N [default: the run's training.device]."
    ),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(
        "--precision", help="auto, fp32, bf16 or fp16 [default: the run's training.precision]."
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


@contextlib.contextmanager
def _command_logging() -> Iterator[logging.Handler]:
    """Log lines of this command to the current stderr; every handler a command adds (the
    console's, ``RUN/train.log``'s) is removed when it ends, so commands run one after another
    in one process (tests, notebooks) never log into each other's streams or files."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet = {"matplotlib": logging.WARNING, "PIL": logging.WARNING, "monai": logging.WARNING}
    quiet["nibabel"] = logging.ERROR  # its header fixes are checked by sihnet
    previous = {name: logging.getLogger(name).level for name in quiet}
    for name, value in quiet.items():
        logging.getLogger(name).setLevel(value)
    shown = warnings.showwarning
    warnings.showwarning = _warning_line
    try:
        yield handler
    finally:
        warnings.showwarning = shown
        for added in [h for h in root.handlers if h not in before]:
            root.removeHandler(added)
            added.close()
        root.setLevel(level)
        for name, value in previous.items():
            logging.getLogger(name).setLevel(value)


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: typing.TextIO | None = None,
    line: str | None = None,
) -> None:
    """A library's warning as one log line, without the file and line it came from (an install
    path names the user's home)."""
    log.warning("warning: %s: %s", category.__name__, _without_paths(str(message)))


def _without_paths(text: str) -> str:
    return re.sub(r"(?:[A-Za-z]:)?[/\\][^\s'\"]+", "<path>", text)  # paths may name patients


def _os_error(error: OSError) -> str:
    """A write or read the system refused, as one line without the path."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EFBIG: "the file size limit (ulimit -f) was reached",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "a folder is in the way of a file",
        errno.ENOTDIR: "a file is in the way of a folder",
    }
    name = Path(error.filename).name if error.filename else ""
    reason = reasons.get(error.errno or 0, error.strerror or type(error).__name__)
    return f"cannot write or read {name or 'a file'}: {reason}"


ARGV: list[str] = []  # the running command's arguments (train.log, the resume hint)


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code; errors become one line on stderr.

    Args:
        argv: the arguments after ``sihnet`` (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for a problem the user can fix, 1 for an internal error, 3 for a partial
        success (``convert``), 128 + N after signal N.
    """
    global ARGV
    arguments = list(sys.argv[1:] if argv is None else argv)
    ARGV = arguments
    if hasattr(signal, "SIGXFSZ"):  # ulimit -f: fail the write (EFBIG) instead of dying
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    with _command_logging():
        return _run(arguments)


def _run(arguments: list[str]) -> int:
    try:
        code = app(args=arguments, prog_name="sihnet", standalone_mode=False)
    except typer.Abort:
        typer.echo("sihnet: interrupted", err=True)
        return 130
    except SihnetError as error:
        typer.echo(f"sihnet: error: {error}", err=True)
        return 2
    except TrainingInterrupted as stop:
        typer.echo(f"sihnet: stopped by {stop}; {stop.what}", err=True)
        if stop.resumable:
            resume = [] if "--resume" in arguments else ["--resume"]
            typer.echo(
                f"sihnet: continue with: {' '.join(['sihnet', *arguments, *resume])}", err=True
            )
        return 128 + stop.signal_number
    except KeyboardInterrupt:
        typer.echo("sihnet: interrupted", err=True)
        return 130
    except Exception as error:
        if _is_usage_error(error):
            line = _usage_line(error)
            if line:  # empty: no arguments, the help was shown
                typer.echo(f"sihnet: error: {line}", err=True)
            return 2
        return _internal_error(error)
    return code if isinstance(code, int) else 0


def _is_usage_error(error: Exception) -> bool:
    """click's usage errors (typer re-exports or vendors click: recognised by their interface)."""
    return getattr(error, "exit_code", None) == 2 and hasattr(error, "format_message")


def _usage_line(error: Exception) -> str:
    context = getattr(error, "ctx", None)
    name = getattr(getattr(context, "command", None), "name", None)
    where = f" (see 'sihnet {name} --help')" if name and name != "main" else ""
    message = " ".join(str(error.format_message()).split())  # type: ignore[attr-defined]
    return f"{message}{where}" if message else ""


def _internal_error(error: Exception) -> int:
    if os.environ.get("SIHNET_DEBUG"):
        raise error
    if isinstance(error, OSError):
        typer.echo(f"sihnet: error: {_os_error(error)}", err=True)
        return 2
    typer.echo(
        f"sihnet: internal error: {type(error).__name__}: {_without_paths(str(error))} "
        "(SIHNET_DEBUG=1 shows the traceback)",
        err=True,
    )
    return 1


from sihnet.cli import cohort, run, share  # noqa: E402, F401  (registers the commands)
