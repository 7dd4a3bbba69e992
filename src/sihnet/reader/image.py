"""The reader's library entry: one image and the volume cache in, its :class:`Reading` out.

Training, prediction, external evaluation and ``sihnet measure`` all read a scan through
:func:`read_image`; the reading is a content-keyed record of the cache (``reading/``), so a scan is
read once per content and reader version.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sihnet.preprocessing.cache import VolumeCache, check_input
from sihnet.reader.profiles import Scan
from sihnet.reader.reading import READER_VERSION, is_consistent, read_scan
from sihnet.schemas import Reading

log = logging.getLogger(__name__)


def load_scan(image: Path, cache: VolumeCache) -> Scan:
    """A NIfTI file or DICOM folder's intensities (I, J, K) float32 and affine (RAS mm).

    Raises:
        SihnetError: the image cannot be read (one line naming its file).
    """
    check_input(Path(image))
    volume, affine = cache.load(image)
    return Scan(np.asarray(volume, dtype=np.float32), affine)


def _checked(values: object) -> Reading:
    """A cached reading, refused (``ValueError``) when it does not agree with itself."""
    reading = Reading.model_validate(values)
    if not is_consistent(reading):
        raise ValueError("the reading does not agree with itself")
    return reading


def read_image(image: Path, cache: VolumeCache, scan: Scan | None = None) -> Reading:
    """The reading of one scan, from the cache when its content was read before.

    Args:
        scan: the image already loaded (:func:`load_scan`), when the caller needs it too; else it
            is loaded here on a cache miss, once for the alignment and the reading together.

    Raises:
        SihnetError: the image cannot be read at all (one line naming its file).
    """
    check_input(Path(image))

    def compute() -> Reading:
        loaded = scan or load_scan(image, cache)
        alignment = cache.alignment(image)
        return read_scan(loaded.volume, loaded.affine, alignment)

    return cache.record(
        image, "reading", READER_VERSION, compute, lambda r: r.model_dump(mode="json"), _checked
    )
