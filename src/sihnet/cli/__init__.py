"""The ``sihnet`` command line: parse, load the configuration, call ``run_<stage>``, print.

Heavy libraries are imported inside commands, after the options are checked, so ``--help`` and a
mistyped option answer at once. A problem the user can fix (a bad input, a usage error, a full
disk) is one line on stderr and exit code 2, never a traceback (``SIHNET_DEBUG=1`` shows
tracebacks). Commands live in :mod:`sihnet.cli.cohort` (synth, convert, bern) and
:mod:`sihnet.cli.pipeline` (train, evaluate, predict, occlusion, demo).
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

import typer

from sihnet.cli import options as shared
from sihnet.cli.options import app
from sihnet.errors import SihnetError, TrainingInterrupted

log = logging.getLogger("sihnet")


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


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code; errors become one line on stderr.

    Args:
        argv: the arguments after ``sihnet`` (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for a problem the user can fix, 1 for an internal error, 3 for a partial
        success (``convert``), 128 + N after signal N.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    shared.ARGV[:] = arguments
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


from sihnet.cli import cohort, pipeline, share  # noqa: E402, F401  (registers the commands)
