"""Load a NIfTI, check it, and map it onto the model-input canvas in one resampling.

The canvas is RAS-aligned (array axes x: left->right, y: posterior->anterior, z: inferior->superior),
isotropic at the profile's spacing, of the profile's size, and centred on the centre of the
image's field of view. One trilinear resampling from the source voxel grid to that canvas does
reorientation, resampling, zero-padding and centre-cropping at once (MONAI ``SpatialResample``),
for any orientation or obliquity of the source affine.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from sihnet.config import SPACING_RANGE_MM, PreprocessingConfig
from sihnet.errors import SihnetError
from sihnet.preprocessing.registration import Alignment

MIN_SPACING_MM, MAX_SPACING_MM = SPACING_RANGE_MM
MIN_VOXELS_PER_AXIS = 8  # fewer slices than this is not a head volume (a 2-slice file was scored)
DEFAULT_MAX_VOXELS = 2**28  # 268 M voxels (1 GB as float32): far above any head MRI


def max_image_voxels() -> int:
    """The largest image accepted, in voxels: ``$SIHNET_MAX_IMAGE_VOXELS`` or 2^28."""
    text = os.environ.get("SIHNET_MAX_IMAGE_VOXELS", "")
    return int(text) if text.isdigit() else DEFAULT_MAX_VOXELS


def _raw_header(path: Path, image: Any) -> Any:
    """The header as stored: nibabel's loaded header is already "fixed" (a pixdim of 0 becomes 1)."""
    with nib.openers.ImageOpener(str(path)) as stream:
        return type(image.header).from_fileobj(stream, check=False)


def _check_header(name: str, raw: Any, header: Any) -> None:
    """Refuse from the header alone, before decompressing: too many voxels, or a voxel size of 0
    in a header without an sform (nibabel would read it as 1 mm)."""
    shape = tuple(int(n) for n in header.get_data_shape())
    voxels = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if voxels > max_image_voxels():
        raise SihnetError(
            f"{name}: {voxels:,} voxels exceed the limit of {max_image_voxels():,} "
            "(SIHNET_MAX_IMAGE_VOXELS)"
        )
    zooms = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    if int(raw["sform_code"]) == 0 and not (zooms > 0).all():
        raise SihnetError(
            f"{name}: voxel size {zooms.tolist()} mm in the header (pixdim) is not positive"
        )


@dataclasses.dataclass(frozen=True)
class Preprocessed:
    """A model input.

    Attributes:
        image: float32 array (1, X, Y, Z) on the canvas, normalised intensity (0 = background).
        affine: 4x4 canvas voxel -> world (RAS mm) matrix.
        views: further views by name: ``(image (1, X, Y, Z), affine 4x4)`` each, in the
            configuration's order.
        alignment: the registration to the MNI152 template, when the canvas is aligned.
    """

    image: np.ndarray
    affine: np.ndarray
    views: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    alignment: Alignment | None = None

    def model_input(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """What the network takes: the canvas (1, X, Y, Z), or with views a tuple of them."""
        if not self.views:
            return self.image
        return (self.image, *(image for image, _ in self.views.values()))


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm along each array axis: (3,)."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def load_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NIfTI and check it.

    Returns:
        ``(volume, affine)``: float32 array (I, J, K) and its 4x4 voxel -> world matrix.

    Raises:
        SihnetError: unreadable file, not 3D, non-finite or constant voxels, absurd geometry.
    """
    name = Path(path).name
    try:
        image: Any = nib.load(str(path))  # the header only; voxels are read below
        _check_header(name, _raw_header(path, image), image.header)
        data = np.asarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=np.float64)
    except SihnetError:
        raise
    except MemoryError:
        raise SihnetError(f"{name}: does not fit in memory") from None
    except Exception as error:  # nibabel raises many types for a damaged file
        raise SihnetError(f"{name}: cannot read NIfTI ({type(error).__name__})") from None
    if data.dtype.fields is not None or np.iscomplexobj(data):
        raise SihnetError(f"{name}: voxel type {data.dtype} is not a scalar intensity")
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise SihnetError(f"{name}: 4D image ({data.shape[-1]} volumes); one 3D volume is needed")
    if data.ndim != 3 or min(data.shape) < MIN_VOXELS_PER_AXIS:
        raise SihnetError(
            f"{name}: image of shape {tuple(data.shape)}; a 3D volume with at least "
            f"{MIN_VOXELS_PER_AXIS} voxels along each axis is needed"
        )
    volume = data.astype(np.float32, copy=False)
    if not np.isfinite(volume).all():
        raise SihnetError(f"{name}: contains NaN or infinite voxels")
    if float(volume.max()) == float(volume.min()):
        raise SihnetError(f"{name}: constant image (every voxel is {float(volume.min()):g})")
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise SihnetError(f"{name}: affine is singular or not finite")
    spacing = voxel_spacing(affine)
    if spacing.min() < MIN_SPACING_MM or spacing.max() > MAX_SPACING_MM:
        raise SihnetError(
            f"{name}: voxel spacing {np.round(spacing, 3).tolist()} mm is outside "
            f"{MIN_SPACING_MM}–{MAX_SPACING_MM} mm"
        )
    return volume, affine


def normalize_intensity(volume: np.ndarray, upper_percentile: float = 99.5) -> np.ndarray:
    """Per-volume robust scaling: 0 stays 0, the head's ``upper_percentile`` becomes 1.

    The head is taken as voxels above the volume mean (air is dark on MRI), so the scale is
    independent of how much air the field of view holds. Negative values are clipped to 0.

    Args:
        volume: float array of any shape.

    Returns:
        float32 array, same shape.
    """
    clipped = np.clip(volume, 0, None)
    head = clipped[clipped > clipped.mean()]
    upper = float(np.percentile(head, upper_percentile)) if head.size else 0.0
    if upper <= 0:
        raise SihnetError("image has no positive intensities to normalise")
    return (clipped / upper).astype(np.float32)


def canvas_affine(
    source_affine: np.ndarray,
    source_shape: tuple[int, ...],
    spacing_mm: float,
    size: tuple[int, int, int],
) -> np.ndarray:
    """The RAS-aligned canvas of ``size`` voxels at ``spacing_mm``, centred on the source FOV centre.

    Returns:
        4x4 canvas voxel -> world (mm) matrix.
    """
    centre_voxel = (np.asarray(source_shape[:3], dtype=np.float64) - 1) / 2
    centre_world = source_affine[:3, :3] @ centre_voxel + source_affine[:3, 3]
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = centre_world - spacing_mm * (np.asarray(size, dtype=np.float64) - 1) / 2
    return affine


def aligned_canvas_affine(
    alignment: Alignment,
    centre_mm: tuple[float, float, float],
    spacing_mm: float,
    size: tuple[int, int, int],
) -> np.ndarray:
    """A canvas along the template's axes in the patient's millimetres: centred where the
    registration puts the template point ``centre_mm``, rotated with the head, not scaled.

    Returns:
        4x4 canvas voxel -> world (mm) matrix.
    """
    rotation = alignment.rotation_matrix
    centre_world = alignment.to_world(np.asarray(centre_mm, dtype=np.float64))
    affine = np.eye(4)
    affine[:3, :3] = rotation * spacing_mm
    affine[:3, 3] = centre_world - affine[:3, :3] @ ((np.asarray(size, dtype=np.float64) - 1) / 2)
    return affine


def antialias(volume: np.ndarray, source_affine: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Gaussian prefilter before downsampling: sigma = (factor - 1) / 2 voxels per source axis."""
    factors = spacing_mm / voxel_spacing(source_affine)
    sigma = np.clip((factors - 1) / 2, 0, None)
    if not (sigma > 0).any():
        return volume
    return ndimage.gaussian_filter(volume, sigma=sigma, mode="nearest").astype(np.float32)


def resample_to_canvas(
    volume: np.ndarray,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    size: tuple[int, int, int],
) -> np.ndarray:
    """Trilinear resampling of ``volume`` (I, J, K) onto the grid ``target_affine``/``size``.

    Voxels outside the source field of view are 0.

    Returns:
        float32 array of shape ``size``.
    """
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    source = MetaTensor(
        torch.from_numpy(np.ascontiguousarray(volume))[None], affine=torch.from_numpy(source_affine)
    )
    resample = SpatialResample(
        mode="bilinear", padding_mode="zeros", align_corners=True, dtype=np.float32
    )
    out: Any = resample(source, dst_affine=torch.from_numpy(target_affine), spatial_size=size)
    return np.asarray(out.as_tensor()[0].numpy(), dtype=np.float32)


def preprocess_volume(
    volume: np.ndarray,
    affine: np.ndarray,
    config: PreprocessingConfig,
    alignment: Alignment | None = None,
) -> Preprocessed:
    """Normalise, (antialias,) and resample one checked volume to the model-input canvas, and to
    each view (each antialiased for its own spacing).

    Args:
        alignment: the registration to the template; needed when ``config.align`` is ``mni152``.
    """
    normalized = normalize_intensity(volume, config.upper_percentile)

    def cut(spacing: float, size: tuple[int, int, int], target: np.ndarray) -> np.ndarray:
        source = antialias(normalized, affine, spacing) if config.antialias else normalized
        return resample_to_canvas(source, affine, target, size)[None]

    if config.align == "mni152":
        if alignment is None:
            raise ValueError("an aligned canvas needs the scan's alignment")
        target = aligned_canvas_affine(alignment, config.centre_mm, config.spacing_mm, config.size)
    else:
        target = canvas_affine(affine, volume.shape, config.spacing_mm, config.size)
    views = {}
    for view in config.views:
        assert alignment is not None
        view_affine = aligned_canvas_affine(alignment, view.centre_mm, view.spacing_mm, view.size)
        views[view.name] = (cut(view.spacing_mm, view.size, view_affine), view_affine)
    image = cut(config.spacing_mm, config.size, target)
    return Preprocessed(image=image, affine=target, views=views, alignment=alignment)


def preprocess_file(
    path: Path, config: PreprocessingConfig, alignment: Alignment | None = None
) -> Preprocessed:
    """Load, check and preprocess one NIfTI file (see :func:`preprocess_volume`)."""
    volume, affine = load_volume(path)
    return preprocess_volume(volume, affine, config, alignment)
