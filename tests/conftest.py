"""Shared fixtures: tiny NIfTI volumes and a tiny synthetic cohort (8 mm, CPU-fast)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save ``data`` with ``affine`` (identity by default) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def brain_like(shape: tuple[int, int, int] = (24, 28, 26), seed: int = 0) -> np.ndarray:
    """A bright ellipsoid 'head' with texture in a dark field of view."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
    inside = (grid**2).sum(0) < 0.7
    return (inside * (500 + 100 * rng.random(shape)) + 5 * rng.random(shape)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic patients (6 with fistula) at 8 mm; returns the manifest path."""
    from sihnet.synth.cohort import run_synth

    return run_synth(tmp_path_factory.mktemp("cohort"), n=12, seed=3, spacing_mm=8.0, workers=1)


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private preprocessed-volume cache for the test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SIHNET_CACHE_DIR", str(folder))
    return folder
