import os
from pathlib import Path

import numpy as np
import pytest

from sihnet.config import PreprocessingConfig
from sihnet.preprocessing.cache import VolumeCache, read_cached
from sihnet.preprocessing.volume import Preprocessed, preprocess_file, preprocess_volume
from tests.helpers import brain_like, write_nifti

CONFIG = PreprocessingConfig(spacing_mm=4.0, size=(32, 32, 32))


def test_second_use_is_a_cache_hit_without_reading_the_nifti(tmp_path: Path) -> None:
    image = write_nifti(tmp_path / "a.nii.gz", brain_like())
    cache = VolumeCache(tmp_path / "cache")
    calls: list[Path] = []

    def counting(
        volume: np.ndarray, affine: np.ndarray, config: PreprocessingConfig, alignment: None
    ) -> Preprocessed:
        calls.append(image)
        return preprocess_volume(volume, affine, config, alignment)

    first = cache.get(image, CONFIG, counting)
    second = VolumeCache(tmp_path / "cache").get(image, CONFIG, counting)  # a new run
    assert first == second and len(calls) == 1
    cached = read_cached(first)
    assert cached.image.shape == (1, 32, 32, 32) and cached.affine.shape == (4, 4)
    np.testing.assert_array_equal(cached.image, preprocess_file(image, CONFIG).image)


def test_settings_and_content_change_the_key(tmp_path: Path) -> None:
    image = write_nifti(tmp_path / "a.nii.gz", brain_like())
    cache = VolumeCache(tmp_path / "cache")
    key = cache.entry(image, CONFIG)
    assert cache.entry(image, PreprocessingConfig(spacing_mm=3.0, size=(32, 32, 32))) != key
    write_nifti(image, brain_like(seed=1))
    os.utime(image, ns=(1, 1))
    assert cache.entry(image, CONFIG) != key


def test_cache_names_hold_no_source_path(tmp_path: Path) -> None:
    image = write_nifti(tmp_path / "Doe_John_1970.nii.gz", brain_like())
    cache = VolumeCache(tmp_path / "cache")
    cache.get(image, CONFIG)
    names = " ".join(
        str(p.relative_to(tmp_path / "cache")) for p in (tmp_path / "cache").rglob("*")
    )
    assert "Doe" not in names
    contents = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert b"Doe" not in contents


def test_a_failed_preprocessing_writes_no_entry(tmp_path: Path) -> None:
    image = write_nifti(tmp_path / "a.nii.gz", brain_like())
    cache = VolumeCache(tmp_path / "cache")

    def failing(*args: object) -> Preprocessed:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        cache.get(image, CONFIG, failing)
    assert not (tmp_path / "cache" / "volumes").exists() or not any(
        (tmp_path / "cache" / "volumes").rglob("*.safetensors")
    )


def test_a_different_file_with_the_same_size_and_time_is_not_served_stale(tmp_path: Path) -> None:
    image = write_nifti(tmp_path / "a.nii", brain_like())  # uncompressed: same size
    cache = VolumeCache(tmp_path / "cache")
    first = cache.get(image, CONFIG)
    stat = image.stat()
    write_nifti(image, brain_like(seed=1))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image.stat().st_size == stat.st_size and image.stat().st_mtime_ns == stat.st_mtime_ns
    second = cache.get(image, CONFIG)
    assert second != first
    assert not np.array_equal(read_cached(first).image, read_cached(second).image)


def test_a_damaged_entry_is_rebuilt(tmp_path: Path) -> None:
    image = write_nifti(tmp_path / "a.nii.gz", brain_like())
    cache = VolumeCache(tmp_path / "cache")
    entry = cache.get(image, CONFIG)
    good = read_cached(entry).image.copy()
    entry.write_bytes(entry.read_bytes()[:100])
    again = VolumeCache(tmp_path / "cache")
    assert again.get(image, CONFIG) == entry and again.misses == 1
    np.testing.assert_array_equal(read_cached(entry).image, good)
