"""On-disk cache of preprocessed volumes, keyed by file content and preprocessing settings.

A second epoch, fold or run never re-reads or re-resamples a NIfTI: the key is the SHA-256 of the
file's bytes plus the preprocessing settings, and the content hash itself is remembered per
(path, size, mtime) so an unchanged file is not even hashed again. Entries are safetensors files
(``image`` (1, X, Y, Z) float32, ``affine`` 4x4 float64) written atomically. File names are hashes:
no source path or patient identifier appears in the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from sihnet.atomic import write_atomic, write_text_atomic
from sihnet.config import PreprocessingConfig
from sihnet.hashing import tree_sha256
from sihnet.preprocessing.volume import Preprocessed, preprocess_file

# Bump when preprocessing code changes its output, so old entries are not reused.
PREPROCESSING_VERSION = 1


def default_cache_dir() -> Path:
    """``$SIHNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/sihnet``, else ``~/.cache/sihnet``."""
    if os.environ.get("SIHNET_CACHE_DIR"):
        return Path(os.environ["SIHNET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sihnet"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass
class VolumeCache:
    """Preprocessed-volume cache rooted at ``root``; counts hits and misses (for tests, logs)."""

    root: Path
    hits: int = 0
    misses: int = 0

    def content_hash(self, path: Path) -> str:
        """SHA-256 of a file's bytes (a folder: of its files' names and bytes), memoised by stat."""
        path = Path(path).resolve()
        stat = path.stat()
        signature = _sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
        memo = self.root / "hashes" / signature
        if memo.is_file():
            return memo.read_text().strip()
        value = tree_sha256(path)
        write_text_atomic(memo, value)
        return value

    def entry(self, path: Path, config: PreprocessingConfig) -> Path:
        """The cache file for ``path`` under ``config``."""
        settings = json.dumps(dataclasses.asdict(config), sort_keys=True)
        key = _sha256(f"{self.content_hash(path)}|{settings}|v{PREPROCESSING_VERSION}")
        return self.root / "volumes" / key[:2] / f"{key}.safetensors"

    def get(
        self,
        path: Path,
        config: PreprocessingConfig,
        compute: Callable[[Path, PreprocessingConfig], Preprocessed] = preprocess_file,
    ) -> Path:
        """Return the cache file of ``path``, preprocessing it first if it is not cached."""
        entry = self.entry(path, config)
        if entry.is_file():
            self.hits += 1
            return entry
        self.misses += 1
        result = compute(path, config)
        tensors = {"image": np.ascontiguousarray(result.image), "affine": result.affine}
        write_atomic(entry, lambda temp: save_file(tensors, str(temp)))
        return entry

    def warm(self, paths: Iterable[Path], config: PreprocessingConfig) -> dict[Path, Path]:
        """Cache every path; returns source path -> cache file."""
        return {Path(p): self.get(Path(p), config) for p in paths}


def read_cached(entry: Path) -> Preprocessed:
    """Load a cache entry: image (1, X, Y, Z) float32 and its canvas affine."""
    tensors = load_file(str(entry))
    return Preprocessed(image=tensors["image"], affine=tensors["affine"])
