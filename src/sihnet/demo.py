"""``sihnet demo``: the main job on the built-in synthetic cohort, end to end.

Synthesise the cohort (once), train the ``quick`` profile with patient-level CV, evaluate, compute
the occlusion map of the fistula patient the ensemble ranks highest out of fold with the fold
model that never saw it, and write the report::

    OUT/cohort/                 the synthetic cohort (cohort.csv, images/, montage.png)
    OUT/run/                    the run folder; OUT/run/occlusion/ the map; OUT/run/report.html
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sihnet import progress
from sihnet.config import OcclusionConfig, load_config
from sihnet.data.manifest import read_manifest
from sihnet.evaluation.run_metrics import RunMetrics, run_evaluation
from sihnet.interpret.patient_map import OcclusionRecord, demo_patient, run_occlusion
from sihnet.paths import RunPaths
from sihnet.preprocessing.cache import VolumeCache
from sihnet.report.build import run_report
from sihnet.synth.cohort import run_synth
from sihnet.training.cross_validation import run_training

# Shares of the demo's time per stage, for the job bar's estimate of the time left (measured by
# benchmarks/demo_time.py on a 2-core machine; see the README's demo section).
DEMO_SHARES = {
    "synthesis": 0.02,
    "training": 0.94,
    "evaluation": 0.01,
    "occlusion": 0.02,
    "report": 0.01,
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
    with progress.job_progress(DEMO_SHARES, "demo") as job:
        manifest = Path(out) / "cohort" / "cohort.csv"
        if not manifest.is_file():
            run_synth(manifest.parent, n=n, seed=seed, spacing_mm=spacing_mm)
        job.update("synthesis", 1, 1)
        paths = RunPaths(Path(out) / "run")
        cohort = read_manifest(manifest)
        run_training(load_config(profile), cohort, paths, cache)
        job.update("training", 1, 1)
        metrics = run_evaluation(paths)
        job.update("evaluation", 1, 1)
        patient, image, fold = demo_patient(paths, cohort)
        line = f"occlusion map of {patient} (fistula) with fold {fold}'s model, which never saw it:"
        map_options = dataclasses.replace(occlusion or DEMO_OCCLUSION, fold=fold)
        record = run_occlusion(
            paths.root, image, paths.root / "occlusion", map_options, cache=cache
        )
        report = run_report(paths.root)
        job.update("report", 1, 1)
    return DemoResult(paths, metrics, record, line, report)
