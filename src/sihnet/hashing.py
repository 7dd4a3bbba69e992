"""SHA-256 of files and folders, read in blocks (weights, manifests, images, DICOM trees)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _update(digest: hashlib._Hash, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return digest.hexdigest()


def tree_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        _update(digest, file)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a text (UTF-8): cache keys."""
    return hashlib.sha256(text.encode()).hexdigest()
