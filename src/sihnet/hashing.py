"""SHA-256 of files and folders, read in blocks (weights, manifests, images, DICOM trees).

A folder is walked without following symbolic links and without entering other file systems;
only regular files are read (a FIFO or a device would block or never end), and a folder with more
files than a study could hold is refused before any file is read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from sihnet.errors import SihnetError

MAX_FOLDER_FILES = 100_000  # a DICOM study of 7,000 files is large; a disk is not a study


def _update(digest: hashlib._Hash, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return digest.hexdigest()


def folder_files(folder: Path, limit: int = MAX_FOLDER_FILES) -> list[Path]:
    """The regular files below ``folder`` (sorted), symbolic links and other file systems left out.

    Raises:
        SihnetError: the folder is the file-system root or holds more than ``limit`` entries.
    """
    folder = Path(folder)
    if folder.resolve() == Path(folder.resolve().anchor):
        raise SihnetError(f"{folder} is the file-system root, not a folder of one study")
    device, seen, files = os.stat(folder).st_dev, 0, []
    for current, dirs, names in os.walk(folder, followlinks=False):
        seen += len(names) + len(dirs)
        if seen > limit:
            raise SihnetError(
                f"folder {folder.name} holds more than {limit:,} entries; not one study"
            )
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(current, d)).st_dev == device]
        for name in names:
            path = Path(current) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                files.append(path)
    return sorted(files)


def tree_sha256(path: Path) -> str:
    """Hex SHA-256 of a regular file's bytes, or of a folder's regular files (relative names and
    bytes, sorted; see :func:`folder_files`).

    Raises:
        SihnetError: neither a regular file nor a folder (a FIFO, a device).
    """
    path = Path(path)
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return file_sha256(path)
    if not stat.S_ISDIR(mode):
        raise SihnetError(f"{path.name} is not a regular file or folder")
    digest = hashlib.sha256()
    for file in folder_files(path):
        digest.update(str(file.relative_to(path)).encode())
        _update(digest, file)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a text (UTF-8): cache keys."""
    return hashlib.sha256(text.encode()).hexdigest()
