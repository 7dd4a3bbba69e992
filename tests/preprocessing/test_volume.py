import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sihnet.config import PreprocessingConfig
from sihnet.errors import SihnetError
from sihnet.preprocessing.volume import (
    canvas_affine,
    load_volume,
    normalize_intensity,
    preprocess_file,
)
from tests.helpers import brain_like, write_nifti

POINT = np.array([12.0, -20.0, 30.0])  # world mm (RAS)


def rotation_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def blob_volume(linear: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian blob at POINT sampled on a grid whose centre is near the world origin."""
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ ((np.array(shape) - 1) / 2)
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    data = np.exp(-((world - POINT) ** 2).sum(-1) / (2 * 6.0**2)) * 1000 + 1
    return data.astype(np.float32), affine


# Storage orientations as linear parts of the affine: RAS, LPS, PIR (sagittal), and an oblique one.
ORIENTATIONS = {
    "RAS": np.diag([1.5, 1.5, 1.5]),
    "LPS": np.diag([-1.5, -1.5, 1.5]),
    "PIR": np.array([[0, 0, 1.2], [-1.0, 0, 0], [0, -1.0, 0]]),
    "oblique": rotation_z(17) @ np.diag([1.2, 1.4, 2.0]),
}


@pytest.mark.parametrize("name", ORIENTATIONS)
def test_a_world_point_lands_where_expected(tmp_path: Path, name: str) -> None:
    data, affine = blob_volume(ORIENTATIONS[name], (80, 90, 70))
    path = write_nifti(tmp_path / f"{name}.nii.gz", data, affine)
    result = preprocess_file(path, PreprocessingConfig(spacing_mm=3.0, size=(48, 40, 36)))
    image = result.image[0]
    assert image.shape == (48, 40, 36)
    weights = np.clip(image - 0.05, 0, None)
    centre_voxel = (
        np.stack(np.meshgrid(*(np.arange(n) for n in image.shape), indexing="ij"), -1)
        * weights[..., None]
    ).sum((0, 1, 2)) / weights.sum()
    centre_world = result.affine[:3, :3] @ centre_voxel + result.affine[:3, 3]
    np.testing.assert_allclose(centre_world, POINT, atol=0.5)
    # The canvas is RAS-aligned and isotropic.
    np.testing.assert_allclose(result.affine[:3, :3], np.diag([3.0, 3.0, 3.0]))


def test_canvas_is_centred_on_the_field_of_view() -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, -20, -30]
    canvas = canvas_affine(affine, (11, 21, 31), 4.0, (8, 8, 8))
    centre = canvas[:3, :3] @ np.full(3, 3.5) + canvas[:3, 3]
    np.testing.assert_allclose(centre, [0.0, 0.0, 0.0])


def test_larger_images_are_centre_cropped_and_smaller_zero_padded(tmp_path: Path) -> None:
    source = brain_like((40, 40, 40))
    path = write_nifti(tmp_path / "a.nii.gz", source)
    result = preprocess_file(path, PreprocessingConfig(spacing_mm=1.0, size=(32, 64, 64)))
    image = result.image[0]
    # x: 40 -> 32, the middle kept (source 4..35); y, z: 40 -> 64, 12 zero voxels each side
    np.testing.assert_allclose(image[:, 12:52, 12:52], normalize_intensity(source)[4:36], atol=1e-5)
    outside = (image[:, :12], image[:, 52:], image[:, :, :12], image[:, :, 52:])
    assert max(float(np.abs(part).max()) for part in outside) < 1e-4  # zero padding


def test_normalisation_is_robust_and_keeps_zero() -> None:
    volume = brain_like()
    scaled = normalize_intensity(volume * 37.0 + 0)
    np.testing.assert_allclose(scaled, normalize_intensity(volume), rtol=1e-5)
    assert normalize_intensity(np.zeros((4, 4, 4)) + np.eye(4)[0][:, None, None]).min() == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nib.Nifti1Image(np.full((8, 8, 8), np.nan, dtype=np.float32), np.eye(4)), "NaN"),
        (lambda: nib.Nifti1Image(np.ones((8, 8, 8, 3), dtype=np.float32), np.eye(4)), "4D image"),
        (
            lambda: nib.Nifti1Image(np.ones((8, 8), dtype=np.float32), np.eye(4)),
            r"image of shape \(8, 8\);",
        ),
        (
            lambda: nib.Nifti1Image(np.ones((8, 8, 1), dtype=np.float32), np.eye(4)),
            "at least 8 voxels along each axis",
        ),
        (
            lambda: nib.Nifti1Image(np.full((8, 8, 8), 3, dtype=np.float32), np.eye(4)),
            "constant image",
        ),
        (lambda: nib.Nifti1Image(brain_like(), np.diag([100.0, 1, 1, 1])), "spacing"),
    ],
)
def test_bad_volumes_are_one_clear_error(tmp_path: Path, make: object, message: str) -> None:
    path = tmp_path / "bad.nii.gz"
    nib.save(make(), str(path))  # type: ignore[operator]
    with pytest.raises(SihnetError, match=message):
        load_volume(path)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(SihnetError, match="cannot read NIfTI"):
        load_volume(path)


def test_singleton_fourth_dimension_is_accepted(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "a.nii.gz", brain_like()[..., None])
    volume, _ = load_volume(path)
    assert volume.ndim == 3


def test_a_header_too_large_is_refused_before_decompressing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip
    import struct

    path = write_nifti(tmp_path / "a.nii", brain_like())
    header = bytearray(path.read_bytes()[:352])
    header[40:48] = struct.pack("<4h", 3, 2000, 2000, 2000)  # dim: 8 G voxels, 1.6 kB of data
    (tmp_path / "bomb.nii.gz").write_bytes(gzip.compress(bytes(header) + b"\0" * 1600))
    with pytest.raises(SihnetError, match="8,000,000,000 voxels exceed the limit"):
        load_volume(tmp_path / "bomb.nii.gz")
    monkeypatch.setenv("SIHNET_MAX_IMAGE_VOXELS", "1000")
    with pytest.raises(SihnetError, match="exceed the limit of 1,000"):
        load_volume(path)


def test_a_zero_voxel_size_and_two_slices_are_refused(tmp_path: Path) -> None:
    import struct

    import nibabel as nib

    image = nib.Nifti1Image(brain_like(), np.eye(4))
    image.set_sform(None, code=0)
    image.set_qform(None, code=0)
    nib.save(image, str(tmp_path / "z.nii"))
    data = bytearray((tmp_path / "z.nii").read_bytes())
    data[80:92] = struct.pack("<3f", 0, 0, 0)  # pixdim[1:4]: nibabel alone would read 1 mm
    (tmp_path / "z.nii").write_bytes(bytes(data))
    with pytest.raises(SihnetError, match=r"voxel size \[0.0, 0.0, 0.0\] mm"):
        load_volume(tmp_path / "z.nii")
    write_nifti(tmp_path / "thin.nii.gz", brain_like((24, 28, 2)))
    with pytest.raises(SihnetError, match="at least 8 voxels along each axis"):
        load_volume(tmp_path / "thin.nii.gz")
