"""Atomic file writes: a temp file in the same folder, fsync, then ``os.replace``.

A kill at any moment leaves either the previous file or the new one, never a half-written file.
Temporary names carry the writer's host and process ID (``.NAME.HOST-PID.XXXX.tmp``), so a later
run removes only what a dead process of its own host left, never a live job's file being written
(several ``--fold`` jobs share a run folder).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

UMASK = os.umask(0o022)
os.umask(UMASK)  # read once: a shared cohort or cache stays readable by the group if umask says so
HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname().split(".")[0]) or "host"
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folders: list[Path]) -> int:
    """Delete temporary files that a dead process of this host left in ``folders`` (not below).

    A live process's temporary file, and any file of another host (a cluster node that may still
    be writing), are kept. Returns how many were removed.
    """
    removed = 0
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for entry in Path(folder).iterdir():
            match = TEMPORARY.match(entry.name)
            if match is None or not entry.is_file() or match["host"] != HOST:
                continue
            if not _alive(int(match["pid"])):
                entry.unlink(missing_ok=True)
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The writer fills the yielded path (any library that takes a file name); on an exception the
    temporary file is removed and ``path`` is untouched. ``suffix`` ends the temporary name, for
    writers that choose a format by extension (``.nii.gz``).
    """
    path = Path(path)
    if os.environ.get("RANK", "0") not in ("", "0"):  # a torchrun job: rank 0 alone writes
        raise RuntimeError(
            f"rank {os.environ['RANK']} tried to write {path.name}; only rank 0 writes"
        )
    prefix = f".{path.name}.{HOST}-{os.getpid()}."
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    except OSError as error:
        raise _named(error, path) from None
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temp, 0o666 & ~UMASK)  # mkstemp's 0600 would ignore the user's umask
        os.replace(temp, path)
    except OSError as error:  # the user's file is named, never the temporary one
        if error.filename not in (None, str(temp)):
            raise
        raise _named(error, path) from None
    finally:
        temp.unlink(missing_ok=True)


def _named(error: OSError, path: Path) -> OSError:
    """The same error naming ``path`` (the file the user asked for)."""
    return type(error)(error.errno, error.strerror or str(error), str(path))


def write_atomic(path: Path, writer: Callable[[Path], Any], suffix: str = ".tmp") -> None:
    """Call ``writer(temp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path, suffix) as temp:
        writer(temp)


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_atomic(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def json_safe(value: Any) -> Any:
    """NaN/inf -> null (strict JSON); numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text_once(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless it exists, atomically (several jobs may race).

    The text goes to a temporary file that is then hard-linked to ``path``: exactly one racing
    writer creates it, complete; the others find it there.

    Returns:
        True if this call created the file, False if it already existed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o666 & ~UMASK)
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write strict JSON (indented; NaN written as null) atomically."""
    write_text_atomic(path, strict_json(value) + "\n")


def strict_json(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text: NaN and infinities as null (NaN is not JSON), numpy scalars as numbers."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)


def write_nifti_atomic(path: Path, image: Any) -> None:
    """Save a nibabel image atomically; the format follows the name (``.nii`` or ``.nii.gz``)."""
    import nibabel as nib

    suffix = ".nii.gz" if str(path).endswith(".nii.gz") else ".nii"
    write_atomic(Path(path), lambda temp: nib.save(image, str(temp)), suffix=suffix)
