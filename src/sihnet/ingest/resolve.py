"""Inputs resolved at a command's edge: every DICOM folder among a command's images becomes a NIfTI
once, before any stage looks at it (as nnU-Net picks a reader per format and MONAI's ``LoadImage``
does), so that the cache below only keys and stores and never converts inside a lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from sihnet.errors import SihnetError
from sihnet.ingest.convert import dicom_folder_to_nifti

log = logging.getLogger(__name__)


class ConversionStore(Protocol):
    """Where converted folders are kept (``sihnet.preprocessing.cache.VolumeCache``)."""

    failed_conversions: dict[Path, str]

    def converted_path(self, folder: Path) -> Path:
        """The NIfTI of a DICOM folder, keyed by the folder's content."""
        ...


def convert_dicom_inputs(images: Iterable[Path], store: ConversionStore) -> int:
    """Convert each DICOM folder among ``images`` once into ``store.converted_path(folder)`` (kept
    there: a later command converts nothing). A folder that cannot be converted is remembered with
    its one-line reason, which the stage meets when it reads that image, so that good images beside
    it are still processed; a path that is not a readable folder is left to the stage's own check.

    Returns:
        How many folders were converted now (not found converted already).
    """
    converted = 0
    for image in dict.fromkeys(Path(i) for i in images):
        try:
            if not image.is_dir():
                continue
            target = store.converted_path(image)
            if target.is_file():
                continue
            dicom_folder_to_nifti(image, target)
            converted += 1
        except SihnetError as error:
            store.failed_conversions[image] = str(error)
        except OSError:
            continue  # unreadable: the stage's check_input names it
    if converted:
        log.info("converted %d DICOM folder(s) to NIfTI", converted)
    return converted
