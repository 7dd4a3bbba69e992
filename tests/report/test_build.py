"""``sihnet report``: one self-contained page, checked in headless Chromium against metrics.json."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sihnet.config import OcclusionConfig
from sihnet.interpret.patient_map import run_occlusion
from sihnet.preprocessing.cache import VolumeCache
from sihnet.report.build import run_report
from tests.helpers import copy_run, render_page, sihnet


@pytest.fixture(scope="module")
def reported(
    tiny_run: Path, tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """A copy of the tiny run with one occlusion map under it, and its report."""
    root = tmp_path_factory.mktemp("report")
    run = root / "run"
    copy_run(tiny_run, run)
    image = tiny_cohort.parent / "images" / "synth-001.nii.gz"
    run_occlusion(
        run,
        image,
        run / "occlusion",
        OcclusionConfig(patch_1mm=(32, 32, 32)),
        cache=VolumeCache(root / "c"),
    )
    return {"run": run, "page": run_report(run), "root": root}


class Resources(HTMLParser):
    """Every URL the page would load: src/href attributes and CSS url(...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
            if name == "style" and value:
                self.urls += re.findall(r"url\(([^)]*)\)", value)


def test_the_page_loads_nothing_from_a_network(reported: dict[str, Path]) -> None:
    html = reported["page"].read_text()
    parser = Resources()
    parser.feed(html)
    parser.urls += re.findall(r"url\(([^)]*)\)", html.split("<script>")[0])  # the stylesheet
    assert parser.urls and all(u.startswith(("data:", "#")) for u in parser.urls), [
        u for u in parser.urls if not u.startswith(("data:", "#"))
    ]
    assert "research use only" in html.lower()


def test_no_path_and_no_identifier_beyond_the_manifest_ids(
    reported: dict[str, Path], tiny_cohort: Path
) -> None:
    html = reported["page"].read_text()
    page = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # the vendored viewer's code aside
    assert str(tiny_cohort.parent) not in html and str(reported["root"]) not in html
    assert "/tmp/" not in page and not re.search(r"synth-\d{3}\.nii", page)
    ids = set(re.findall(r"synth-\d{3}", html))
    manifest_ids = {line.split(",")[0] for line in tiny_cohort.read_text().splitlines()[1:]}
    assert ids and ids <= manifest_ids


def _lookup(metrics: dict[str, Any], key: str) -> Any:
    value: Any = metrics
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_renders_in_chromium_with_the_numbers_of_metrics_json(reported: dict[str, Path]) -> None:
    from PIL import Image

    dom, shot = render_page(reported["page"], reported["root"])
    metrics = json.loads((reported["run"] / "metrics.json").read_text())
    shown = re.findall(r'data-metric="([^"]+)" data-value="([^"]+)"', dom)
    assert len(shown) >= 10 and {
        "auroc_pooled", "auroc_mean", "calibration.brier", "ceiling.ideal_reader_auroc"
    } <= {k for k, _ in shown}  # fmt: skip
    for key, value in shown:
        expected = _lookup(metrics, key)
        assert (value == "null" and expected is None) or float(value) == pytest.approx(
            expected, abs=0, rel=1e-12
        ), key
    assert 'data-drawn="overlay"' in dom  # NiiVue drew the map over the CE-T1 (software WebGL)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank page


def test_the_command_writes_the_report(reported: dict[str, Path], tmp_path: Path) -> None:
    result = sihnet("report", reported["run"], "--out", tmp_path / "r.html", cache=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    missing = sihnet("report", reported["run"], "--occlusion", tmp_path, cache=tmp_path)
    assert missing.returncode == 2 and "holds no occlusion.json" in missing.stderr
