"""Helpers every test module may use (tests never import each other): the CLI runner, tiny
configurations, tiny images and models."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import yaml
from torch import nn

# The tiny training configuration every CPU test trains with: 32^3 at 8 mm, 2 folds, 1 epoch.
TINY_CONFIG: dict[str, Any] = {
    "preprocessing": {"spacing_mm": 8.0, "size": [32, 32, 32]},
    "training": {"epochs": 1, "precision": "fp32", "channels_last": False, "selection": "last"},
    "cross_validation": {"folds": 2},
}


def tiny_config(**changes: dict[str, Any]) -> dict[str, Any]:
    """:data:`TINY_CONFIG` with some sections updated, e.g. ``training={"epochs": 3}``."""
    return {
        section: {**TINY_CONFIG.get(section, {}), **changes.get(section, {})}
        for section in {*TINY_CONFIG, *changes}
    }


def write_config(path: Path, **changes: dict[str, Any]) -> Path:
    """Write :func:`tiny_config` as YAML and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tiny_config(**changes)))
    return path


def start(
    args: list[str | Path], cache: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``sihnet ARGS`` as a child process with its own cache (stdout/stderr captured): for what
    needs a process boundary (signals, parallel jobs, torchrun, resource limits)."""
    environment = {"SIHNET_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", **(env or {})}
    command = [sys.executable, "-m", "sihnet.cli", *map(str, args)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sihnet(
    *args: str | Path, cache: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``sihnet ARGS`` in this process (``sihnet.cli.main``) with its own cache and the
    environment ``env``; returns what a child process would: exit code, stdout, stderr."""
    from sihnet.cli import main

    arguments = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with (
        environment({"SIHNET_CACHE_DIR": str(cache), **(env or {})}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(arguments)
    return subprocess.CompletedProcess(["sihnet", *arguments], code, out.getvalue(), err.getvalue())


def sihnet_process(
    *args: str | Path, cache: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``sihnet ARGS`` as a child process to the end (10-minute limit)."""
    process = start(list(args), cache, env)
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def train_tiny(
    manifest: Path, folder: Path, **changes: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """``sihnet train`` with the tiny configuration into ``folder/run`` (cache ``folder/cache``)."""
    config = write_config(folder / "tiny.yaml", **changes)
    return sihnet(
        "train", manifest, "--out", folder / "run", "--config", config, cache=folder / "cache"
    )


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a run folder without its resume states (``fold_K/last.pt``, 136 MB a fold: the
    copies of a test session filled a disk); enough for every test that does not resume."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("last.pt"))
    return target


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error line of a refused command: exit 2, no traceback, one ``sihnet: error`` line and
    it is the last (log lines of the work done before may precede it)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("sihnet: error")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


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


def randomised_densenet() -> nn.Module:
    """DenseNet-121 with non-trivial BatchNorm statistics, so that maps and scores are not flat."""
    from sihnet.models.densenet import build_model

    torch.manual_seed(0)
    model = build_model()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def volume(shape: tuple[int, int, int] = (32, 32, 32), seed: int = 0) -> torch.Tensor:
    """A positive volume whose first quarter along x is exactly zero (background): (1, X, Y, Z)."""
    image = torch.rand(1, *shape, generator=torch.Generator().manual_seed(seed)) + 0.1
    image[:, : shape[0] // 4] = 0
    return image


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--virtual-time-budget=20000",
)  # fmt: skip


def chromium() -> str:
    """Debian's headless Chromium; skips the test where it is not installed (``.ci/run`` installs
    it and sets ``SIHNET_REQUIRE_CHROMIUM=1``, so CI fails rather than skips)."""
    import os
    import shutil

    import pytest

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("SIHNET_REQUIRE_CHROMIUM"):
        raise AssertionError("chromium is required here (SIHNET_REQUIRE_CHROMIUM is set)")
    pytest.skip("headless Chromium is not installed: apt-get install chromium")


def render_page(
    page: Path, folder: Path, width: int = 1200, height: int = 2400
) -> tuple[str, Path]:
    """The DOM after the page's scripts ran, and a screenshot (PNG) of it."""
    binary = chromium()
    common = [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={folder / 'profile'}",
        f"--window-size={width},{height}",
    ]
    shot = folder / "screenshot.png"
    dom = subprocess.run(
        [*common, "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    subprocess.run(
        [*common, f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, timeout=300
    )
    return dom.stdout, shot
