"""Where a command may write: never over a run's or an exported model's own files, never over a
file that is not an earlier output of the same command.

A run folder holds ``config.yaml`` with ``splits.json`` or ``cohort.json``; an exported model
folder holds ``config.yaml`` with ``model.json``. Every writer (``report --out``, ``export --out``,
``occlusion --out``, ``bern --out``, ``synth --out``, ``convert --out``, ``train --out``) checks its
target here before it writes anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from sihnet.errors import SihnetError
from sihnet.paths import enclosing_folder, folder_kind

_OWN_NAMES = re.compile(
    r"fold_\d+|external|configs|models|onnx|docs"
)  # a run's or model's own folders


def check_output_file(
    target: Path,
    command: str,
    own: Path | None = None,
    earlier: Callable[[Path], bool] | None = None,
) -> None:
    """Refuse, before anything is written, an output file that would overwrite what it must not.

    Args:
        target: the file the command is asked to write.
        command: the command's name, for the message.
        own: the one place inside a run or model folder this command may write (e.g.
            ``RUN/report.html``); None: nowhere inside one.
        earlier: recognises an earlier output of this command, which may be replaced.

    Raises:
        SihnetError: one line naming the file.
    """
    target = Path(target)
    if target.is_dir():
        raise SihnetError(f"--out {target.name} is a folder; give a file name")
    owner = enclosing_folder(target.parent)
    if owner is not None and (own is None or target.resolve() != Path(own).resolve()):
        raise SihnetError(
            f"--out {target.name} is inside the {folder_kind(owner)} folder {owner.name}: sihnet {command} "
            "never writes over a run's or a model's files; give a place outside it"
        )
    if target.exists() and not (earlier is not None and earlier(target)):
        raise SihnetError(
            f"--out {target.name} exists and is not an earlier 'sihnet {command}' output; "
            "give a new file name"
        )


def check_output_folder(target: Path, command: str, inside: Path | None = None) -> None:
    """Refuse an output folder inside a run or model folder, except a new folder directly in
    ``inside`` (the run the command works on) whose name is not one the run uses itself.

    Raises:
        SihnetError: one line naming the folder.
    """
    target = Path(target)
    owner = enclosing_folder(target)
    if owner is None:
        return
    allowed = (
        inside is not None
        and owner == Path(inside).resolve()
        and target.resolve().parent == owner
        and not _OWN_NAMES.fullmatch(target.name)
    )
    if not allowed:
        where = "is" if owner == target.resolve() else "is inside"
        raise SihnetError(
            f"--out {target.name} {where} the {folder_kind(owner)} folder {owner.name}: sihnet {command} "
            "never writes into a run's or a model's own files; give a place outside it"
        )


def starts_with(marker: str, size: int = 4096) -> Callable[[Path], bool]:
    """A recogniser of files whose first ``size`` bytes contain ``marker``."""

    def recognise(path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                return marker.encode() in handle.read(size)
        except OSError:
            return False

    return recognise
