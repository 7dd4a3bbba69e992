"""On-disk cache of preprocessed volumes, keyed by file content and preprocessing settings.

A second epoch, fold or run never re-reads or re-resamples a NIfTI: the key is the SHA-256 of the
file's bytes (a DICOM folder: of its files' names and bytes) plus the preprocessing settings. The
content is hashed on every lookup, never recognised by path, size and time alone: a different file
copied over an old one with the same size and time must not return the old volume. Entries are
safetensors files (``image`` (1, X, Y, Z) float32, ``affine`` 4x4 float64) written atomically; a
damaged entry is rebuilt. File names are hashes: no source path or patient identifier appears in
the cache. A DICOM folder is converted at the command's edge (``sihnet.ingest.resolve``,
``sihnet convert``'s code path) into ``dicom/``; the cache only keys and stores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
from pydantic import RootModel
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from sihnet.atomic import write_atomic, write_json_atomic
from sihnet.config import PreprocessingConfig
from sihnet.errors import SihnetError
from sihnet.hashing import text_sha256, tree_sha256
from sihnet.paths import CachePaths
from sihnet.preprocessing.registration import Alignment, align_to_template
from sihnet.preprocessing.volume import Preprocessed, load_volume, preprocess_volume

log = logging.getLogger(__name__)

# Bump when preprocessing code changes its output, so old entries are not reused.
PREPROCESSING_VERSION = 1
IDENTITY_VERSION = 2  # of image_identity (2: a JSON record)
ALIGNMENT_VERSION = 6  # 2: clipped at the 90th percentile; 3: at the 80th, a fixed sampling seed;
# 4: one ITK thread (deterministic); 5: starts from the head's top as well as its centre of mass;
# 6: the correlation inside the brain's interior
Misaligned = Literal["refuse", "keep"]
T = TypeVar("T")


class ViewNames(RootModel[list[str]]):
    """The extra views' names in a preprocessed-volume cache entry's metadata."""


def default_cache_dir() -> Path:
    """``$SIHNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/sihnet``, else ``~/.cache/sihnet``."""
    if os.environ.get("SIHNET_CACHE_DIR"):
        return Path(os.environ["SIHNET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sihnet"


def read_cached(entry: Path) -> Preprocessed:
    """Load a cache entry: image (1, X, Y, Z) float32 and its canvas affine.

    Raises:
        SihnetError: the entry is damaged (the cache rebuilds it on the next lookup).
    """
    try:
        tensors = load_file(str(entry))
        with safe_open(str(entry), framework="numpy") as handle:
            metadata = handle.metadata() or {}
        names = ViewNames.model_validate(json.loads(metadata.get("views", "[]"))).root
        views = {n: (tensors[f"view.{n}.image"], tensors[f"view.{n}.affine"]) for n in names}
        alignment = (
            Alignment.from_json(json.loads(metadata["alignment"]))
            if "alignment" in metadata
            else None
        )
        return Preprocessed(tensors["image"], tensors["affine"], views, alignment)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError):
        raise SihnetError(f"cache entry {Path(entry).name[:12]}… is damaged") from None


def _save(entry: Path, result: Preprocessed) -> None:
    """Write a cache entry atomically (views and the alignment beside the canvas)."""
    tensors = {"image": np.ascontiguousarray(result.image), "affine": result.affine}
    for name, (image, affine) in result.views.items():
        tensors[f"view.{name}.image"] = np.ascontiguousarray(image)
        tensors[f"view.{name}.affine"] = affine
    metadata = {"views": json.dumps(list(result.views))}
    if result.alignment is not None:
        metadata["alignment"] = json.dumps(result.alignment.as_json())
    write_atomic(entry, lambda temp: save_file(tensors, str(temp), metadata=metadata))


def _identity(volume: np.ndarray, affine: np.ndarray) -> str:
    """SHA-256 of a scan's voxels and canonical geometry (:meth:`VolumeCache.image_identity`)."""
    import nibabel as nib

    canonical = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(volume), affine))
    data = np.ascontiguousarray(np.asarray(canonical.dataobj, dtype=np.float32))
    geometry = np.round(np.asarray(canonical.affine, dtype=np.float64), 3) + 0.0  # no -0.0
    return text_sha256(
        f"{data.shape}|{geometry.tobytes().hex()}|{text_sha256(data.tobytes().hex())}"
    )


def _digest(value: object) -> str:
    """A stored identity, refused unless it is a SHA-256 hex digest."""
    if not (isinstance(value, str) and len(value) == 64):
        raise ValueError("not a digest")
    return value


def check_input(path: Path) -> None:
    """An image must be an existing, readable regular file or folder (never a FIFO or device).

    Raises:
        SihnetError: naming only the file's name.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SihnetError(f"{path.name}: not found") from None
    except OSError as error:
        raise SihnetError(f"{path.name}: cannot be read ({error.strerror})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SihnetError(f"{path.name}: not a regular file or folder")
    if not os.access(path, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
        raise SihnetError(f"{path.name}: permission denied")


@dataclasses.dataclass
class VolumeCache:
    """Preprocessed-volume cache rooted at ``root``; counts hits and misses (for tests, logs)."""

    root: Path
    hits: int = 0
    misses: int = 0
    hashes: dict[str, str] = dataclasses.field(default_factory=dict)
    failed_conversions: dict[Path, str] = dataclasses.field(default_factory=dict)
    last_read: tuple[str, tuple[np.ndarray, np.ndarray]] | None = dataclasses.field(
        default=None, repr=False
    )

    @classmethod
    def open(cls, root: Path | None = None) -> VolumeCache:
        """The cache of a command: ``--cache-dir`` or :func:`default_cache_dir`, checked to be
        writable before any work (a cache that cannot be written is named as ``--cache-dir``, not
        through a hashed file inside it after a registration).

        Raises:
            SihnetError: the folder cannot be made or written.
        """
        folder = Path(root) if root is not None else default_cache_dir()
        existing = folder  # nothing is created here: the first entry creates the folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            reason = "a file is in the way"
        elif not os.access(existing, os.W_OK | os.X_OK):
            reason = "permission denied"
        else:
            return cls(folder)
        raise SihnetError(f"--cache-dir {folder.name} cannot be written ({reason})")

    def machine_file(self, name: str) -> Path:
        """A file of this machine's kept in the cache folder, keyed by nothing of a scan (the
        precision decisions): the only path of the cache built outside this class."""
        return CachePaths(self.root).machine_file(name)

    def content_hash(self, path: Path) -> str:
        """SHA-256 of a file's bytes (a folder: of its files' names and bytes); a file is hashed
        once per command while it stays unchanged (inode, size, modification and change time)."""
        path = Path(path)
        info = os.stat(path)  # any write changes ctime (utime cannot set it back)
        key = f"{path}|{info.st_ino}|{info.st_size}|{info.st_mtime_ns}|{info.st_ctime_ns}"
        if key not in self.hashes:
            self.hashes[key] = tree_sha256(path)
        return self.hashes[key]

    def converted_path(self, folder: Path) -> Path:
        """Where a DICOM folder's NIfTI is kept: ``dicom/<content hash>.nii.gz`` (written by
        :func:`sihnet.ingest.resolve.convert_dicom_inputs` at the command's edge)."""
        return CachePaths(self.root).converted(self.content_hash(folder))

    def nifti_of(self, path: Path) -> Path:
        """A NIfTI path as is; a DICOM folder's NIfTI, converted at the command's edge (never
        here: the cache only keys and stores).

        Raises:
            SihnetError: the folder could not be converted (its reason), or was not converted.
        """
        if not Path(path).is_dir():
            return Path(path)
        if Path(path) in self.failed_conversions:
            raise SihnetError(self.failed_conversions[Path(path)])
        target = self.converted_path(path)
        if not target.is_file():
            raise SihnetError("a DICOM folder the command did not convert (convert_dicom_inputs)")
        return target

    def load(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """The scan's ``(volume (I, J, K) float32, affine)``, read once for all its uses in a row
        (the alignment, the network's canvas, the reader, the identity): the last scan read is
        kept, read-only, keyed by its content.

        Raises:
            SihnetError: the image cannot be read (one line naming its file).
        """
        key = self.content_hash(path)
        if self.last_read is None or self.last_read[0] != key:
            volume, affine = load_volume(self.nifti_of(path))
            volume.flags.writeable = False  # shared by its uses: none may change it
            self.last_read = (key, (volume, affine))
        return self.last_read[1]

    def entry(self, path: Path, config: PreprocessingConfig) -> Path:
        """The cache file for ``path`` under ``config``."""
        settings = json.dumps(dataclasses.asdict(config), sort_keys=True)
        key = text_sha256(f"{self.content_hash(path)}|{settings}|v{PREPROCESSING_VERSION}")
        return CachePaths(self.root).volume(key)

    def record(
        self,
        path: Path,
        kind: str,
        version: int,
        compute: Callable[[], T],
        encode: Callable[[T], object],
        decode: Callable[[object], T],
    ) -> T:
        """The cache's one mechanism for a record computed from a scan's content (identity,
        alignment, reading): ``<kind>/<key>.json``, keyed by the content hash, ``kind`` and
        ``version``; computed once per content, and again when the record is damaged or ``decode``
        refuses it (a record that does not agree with itself).

        Args:
            encode: the value as JSON-ready data; ``decode`` its inverse, raising ``ValueError``,
                ``KeyError`` or ``TypeError`` on a record it does not accept.
        """
        key = text_sha256(f"{self.content_hash(path)}|{kind} v{version}")
        record = CachePaths(self.root).record(kind, key)
        if record.is_file():
            try:
                return decode(json.loads(record.read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("a damaged or inconsistent %s record was recomputed", kind)
        value = compute()
        write_json_atomic(record, encode(value))
        return value

    def image_identity(self, path: Path) -> str:
        """SHA-256 of a scan's voxels and geometry (in the closest canonical orientation, the affine
        to 1e-3 mm), computed once per file content (``identity/``): the same scan saved in another
        format, another orientation or with another header is the same image."""
        return self.record(
            path, "identity", IDENTITY_VERSION, lambda: _identity(*self.load(path)), str, _digest
        )

    def alignment(self, path: Path) -> Alignment:
        """The scan's registration to the MNI152 template, computed once per content
        (``alignment/``)."""
        return self.record(
            path,
            "alignment",
            ALIGNMENT_VERSION,
            lambda: align_to_template(*self.load(path)),
            Alignment.as_json,
            Alignment.from_json,  # type: ignore[arg-type]
        )

    def get(
        self,
        path: Path,
        config: PreprocessingConfig,
        compute: Callable[..., Preprocessed] = preprocess_volume,
        misaligned: Misaligned = "refuse",
    ) -> Path:
        """Return the cache file of ``path`` (a NIfTI file or DICOM folder), preprocessing it first
        if it is not cached or its entry is damaged.

        Args:
            misaligned: for an aligned canvas, a scan whose registration failed is refused
                (``refuse``: training, evaluation) or kept with its problem recorded (``keep``:
                ``predict`` says it in its warnings).

        Raises:
            SihnetError: the image cannot be read, or (``refuse``) it did not align to a head.
        """
        check_input(Path(path))
        alignment = self.alignment(path) if config.align == "mni152" else None
        if alignment is not None and alignment.problem and misaligned == "refuse":
            raise SihnetError(f"{Path(path).name}: refused: {alignment.problem}")
        entry = self.entry(path, config)
        if entry.is_file():
            try:
                read_cached(entry)
                self.hits += 1
                return entry
            except SihnetError:
                log.warning("a damaged cache entry was rebuilt")
        self.misses += 1
        result = compute(*self.load(path), config, alignment)
        _save(entry, result)
        return entry

    def cache_images(
        self, images: Sequence[tuple[int, Path]], config: PreprocessingConfig
    ) -> dict[Path, Path]:
        """Preprocess every ``(manifest row, image)``; all good images are cached before the first
        bad one is reported (one line naming its row).

        Returns:
            image path -> cache entry.
        """
        entries: dict[Path, Path] = {}
        failures: list[str] = []
        for row, image in images:
            try:
                entries[image] = self.get(image, config)
            except SihnetError as error:
                failures.append(f"row {row}: {error}")
        if failures:
            for failure in failures[1:]:  # every bad row named (the log and train.log)
                log.error("%s", failure)
            more = f" (+{len(failures) - 1} more, named above)" if len(failures) > 1 else ""
            raise SihnetError(f"{failures[0]}{more}")
        log.info("preprocessed %d scans (%d from cache)", len(entries), self.hits)
        return entries
