"""``sihnet demo``: the main job on the built-in synthetic cohort, end to end.

Synthesise the cohort (once), train the ``quick`` profile with patient-level CV, evaluate, compute
the occlusion map of the fistula patient the ensemble ranks highest out of fold with the fold
model that never saw it, and write the report::

    OUT/cohort/                 the synthetic cohort (cohort.csv, images/, montage.png)
    OUT/run/                    the run folder; OUT/run/occlusion/ the map; OUT/run/report.html
    OUT/stage_seconds.json      the wall seconds of each stage (where the demo's time goes)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from sihnet import progress
from sihnet.atomic import write_json_atomic
from sihnet.config import OcclusionConfig, load_config
from sihnet.data.manifest import read_manifest
from sihnet.evaluation.run_metrics import RunMetrics, run_evaluation
from sihnet.interpret.patient_map import OcclusionRecord, demo_patient, run_occlusion
from sihnet.paths import DemoPaths, RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.report.build import run_report
from sihnet.synth.cohort import MANIFEST, run_synth
from sihnet.training.cross_validation import run_training

# Shares of the demo's time per stage, for the job bar's estimate of the time left (a demo's
# stage_seconds.json, benchmarks/demo_time.py, on a 2-core machine; docs/benchmarks.md).
DEMO_SHARES = {  # 2026-12-08, AVX-512 class, fp32, 60 patients, 8 epochs: 35 / 410 / 0.5 / 38 / 0.4 s
    "synthesis": 0.07,
    "training": 0.84,
    "evaluation": 0.005,
    "occlusion": 0.08,
    "report": 0.005,
}


# The demo's map uses twice the paper's patch (24x26x26 mm; 6x7x7 voxels at 4 mm): about 8x
# fewer occluded copies than the paper's 12x13x13 mm, for a coarser map. `sihnet occlusion`
# keeps the paper's patch.
DEMO_OCCLUSION = OcclusionConfig(patch_1mm=(24, 26, 26))


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo made: the run's paths and metrics, the map, the report."""

    paths: RunPaths
    metrics: RunMetrics
    occlusion: OcclusionRecord
    occlusion_line: str
    report: Path


def run_demo(
    out: Path,
    profile: str,
    n: int,
    spacing_mm: float,
    seed: int,
    cache: VolumeCache,
    occlusion: OcclusionConfig | None = None,
) -> DemoResult:
    """Run the demo into ``out`` (module docstring); a finished cohort or fold is reused.

    Args:
        occlusion: the map's patch and stride (its fold is the held-out patient's); default
            ``DEMO_OCCLUSION``.
    """
    folder, seconds = DemoPaths(Path(out)), dict[str, float]()
    clock = time.perf_counter()

    def done(stage: str) -> None:
        nonlocal clock
        job.update(stage, 1, 1)
        seconds[stage], clock = round(time.perf_counter() - clock, 1), time.perf_counter()

    with progress.job_progress(DEMO_SHARES, "demo") as job:
        manifest = folder.cohort_folder / MANIFEST
        if not manifest.is_file():
            run_synth(folder.cohort_folder, n=n, seed=seed, spacing_mm=spacing_mm)
        done("synthesis")
        paths = folder.run
        cohort = read_manifest(manifest)
        run_training(load_config(profile), cohort, paths, cache)
        done("training")
        metrics = run_evaluation(paths)
        done("evaluation")
        patient, image, fold = demo_patient(paths, cohort)
        line = f"occlusion map of {patient} (fistula) with fold {fold}'s model, which never saw it:"
        map_options = dataclasses.replace(occlusion or DEMO_OCCLUSION, fold=fold)
        record = run_occlusion(
            paths.root, image, paths.root / "occlusion", map_options, cache=cache
        )
        done("occlusion")
        report = run_report(paths.root)
        done("report")
    write_json_atomic(folder.stage_seconds, seconds)
    return DemoResult(paths, metrics, record, line, report)
