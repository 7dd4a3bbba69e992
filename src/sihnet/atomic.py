"""Atomic file writes: a temp file in the same folder, fsync, then ``os.replace``.

A kill at any moment leaves either the previous file or the new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The writer fills the yielded path (any library that takes a file name); on an exception the
    temporary file is removed and ``path`` is untouched. ``suffix`` ends the temporary name, for
    writers that choose a format by extension (``.nii.gz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_atomic(path: Path, writer: Callable[[Path], Any], suffix: str = ".tmp") -> None:
    """Call ``writer(temp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path, suffix) as temp:
        writer(temp)


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_atomic(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def _json_safe(value: Any) -> Any:
    """NaN/inf -> null (strict JSON); numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, value: Any) -> None:
    """Write strict JSON (indented; NaN written as null) atomically."""
    write_text_atomic(path, json.dumps(_json_safe(value), indent=2, allow_nan=False) + "\n")
