"""A cohort of healthy heads with SIH added (``sihnet synth --heads``): written as a synthetic
cohort is, its truth the source reading plus the field's change, the same seed the same files,
a head the reader cannot read skipped with its reason."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from sihnet.bern import FIELDS
from sihnet.preprocessing.cache import VolumeCache
from sihnet.real_heads.cohort import run_real_synth
from sihnet.synth.cohort import MANIFEST_COLUMNS
from sihnet.tables import read_rows
from tests.helpers import sihnet
from tests.real_heads.test_sih import write_healthy_head


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one healthy phantom head and one scan that is no head (a bright ball)."""
    folder = tmp_path_factory.mktemp("heads")
    write_healthy_head(folder / "healthy.nii.gz")
    grid = np.linalg.norm(np.indices((48, 48, 48)) - 23.5, axis=0)
    ball = np.where(grid < 15, 1000.0, 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(ball, np.diag([3.0, 3.0, 3.0, 1.0])), str(folder / "ball.nii.gz"))
    return folder


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".png"
    }


@pytest.mark.slow  # reads two scans and makes eight studies (a minute): make test-slow, run by CI
def test_a_cohort_of_real_heads_has_the_synthetic_contract_and_its_truth(
    heads: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = VolumeCache(tmp_path / "cache")
    files = sorted(heads.iterdir())
    with caplog.at_level(logging.WARNING):
        manifest = run_real_synth(tmp_path / "a", files, cache, n=4, seed=3, spacing_mm=3.0)
    assert "ball" in caplog.text and "source head skipped" in caplog.text
    rows, truth = read_rows(manifest), read_rows(tmp_path / "a" / "truth.csv")
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert {r["source_head"] for r in truth} == {"healthy"}
    assert sum(int(r["label"]) for r in rows) == 2
    for row, exact in zip(rows, truth, strict=True):
        for field in FIELDS:  # no reader noise: the manifest is the truth
            assert float(row[field]) == pytest.approx(float(exact[f"bern_{field}"]))
        change = float(exact["source_suprasellar_cistern_mm"]) - float(
            exact["bern_suprasellar_cistern_mm"]
        )
        assert change == pytest.approx(float(exact["diencephalon_shift_mm"]), abs=0.1)
        assert float(exact["pituitary_mm"]) == 0.0
        image: Any = nib.load(str(tmp_path / "a" / row["image"]))
        assert np.sqrt((image.affine[:3, :3] ** 2).sum(0)) == pytest.approx([3.0] * 3)
    again = run_real_synth(tmp_path / "b", files, cache, n=4, seed=3, spacing_mm=3.0)
    assert digest(manifest.parent) == digest(again.parent)


def test_synth_with_heads_that_cannot_be_used_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = sihnet(
        "synth", "--heads", tmp_path / "empty", "--out", tmp_path / "o", cache=tmp_path / "c"
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "holds no NIfTI scan" in result.stderr
