"""Which lever makes the model read what the radiologist reads: each variant of the ``quick`` recipe
trained on synthetic cohorts whose seeds and settings were never used for any choice.

Variants, each adding one lever to the one before:

* ``single``: today's recipe (one 4 mm canvas centred on the field of view);
* ``registered``: the canvas aligned to the MNI152 template (48x56x48 at 4 mm);
* ``views``: + a 1.5 mm view of the sella, cisterns, mamillary bodies and pons (48x40x40);
* ``heads``: + the Bern heads (the distances read from the midline view, the signs from the head);
* ``epochs8``: today's recipe trained 8 epochs instead of 16 (issue 35's lever: the demo's time;
  against ``single``, not added to the others).

For every (cohort, variant) the script synthesises the cohort once (``sihnet synth``), trains with
``sihnet train --profile quick --config VARIANT``, evaluates, and writes
``OUT/<cohort>_<variant>.json``: the pooled out-of-fold AUROC with its DeLong CI, the
ground-truth Bern score's AUROC on the same patients (``truth.csv``'s ``bern_score``) with the
paired DeLong p, the cohort's ceiling (``ceiling.json``: the ideal reader of the generator and of
these patients), and for ``heads`` the automatic Bern agreement (per-sign AUROC, per-distance
ICC(2,1) against the manifest's reader). Finished jobs are skipped, so the script can be stopped
and run again; ``OUT/table.md`` is rewritten from whatever is finished.

The cohorts are of the generator without a label below the visible threshold (December 2026);
results on the earlier generator are in ``OUT/old_generator/`` and cannot be compared.

    python benchmarks/bern_levers.py --out benchmarks/results/bern_levers --work /tmp/levers
    python benchmarks/bern_levers.py --cohorts n1 --variants single,heads   # one at a time
    python benchmarks/bern_levers.py --cohorts d1,d2,d3 --variants epochs8,single  # issue 35

``n1``-``n3`` have 60 patients; ``d1``-``d3`` are ``benchmarks/PROTOCOL.md``'s development cohorts
(129 patients, 66 with a fistula: the paper's size), where a lever is kept or dropped.

A ``single`` job took 9.5 min on a 2-core AMD EPYC with native bf16 (60 patients; the probe chose
fp32 + channels_last there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# Cohorts: (seed, voxel size of the synthetic studies in mm, reader noise mm, patients). n1-n3 were
# used for no choice before issue 35; d1-d3 are benchmarks/PROTOCOL.md's development cohorts.
COHORTS: dict[str, tuple[int, float, float, int]] = {
    "n1": (801, 2.0, 0.0, 60),
    "n2": (802, 1.5, 0.5, 60),
    "n3": (803, 2.5, 1.0, 60),
    "d1": (701, 1.5, 0.5, 129),
    "d2": (702, 2.0, 0.0, 129),
    "d3": (703, 1.0, 1.0, 129),
}
REGISTERED = {"preprocessing": {"align": "mni152", "size": [48, 56, 48]}}
MIDLINE = {
    "name": "midline",
    "centre_mm": [0.0, -5.0, -25.0],
    "spacing_mm": 1.5,
    "size": [48, 40, 40],
}
DISTANCES = ["suprasellar_cistern_mm", "prepontine_cistern_mm", "mamillopontine_distance_mm"]
VARIANTS: dict[str, dict[str, Any]] = {
    "single": {},
    "epochs8": {"training": {"epochs": 8, "restart_epochs": 8}},
    "registered": REGISTERED,
    "views": {"preprocessing": {**REGISTERED["preprocessing"], "views": [MIDLINE]}},
    "heads": {
        "preprocessing": {
            **REGISTERED["preprocessing"],
            "views": [{**MIDLINE, "bern_items": DISTANCES}],
        },
        "bern_heads": {"enabled": True},
    },
}


def sihnet(*args: object, cache: Path, log: Path) -> None:
    command = [sys.executable, "-m", "sihnet", *map(str, args)]
    with log.open("a") as handle:
        handle.write(f"$ sihnet {' '.join(map(str, args))}\n")
        handle.flush()
        result = subprocess.run(
            command, stdout=handle, stderr=subprocess.STDOUT, env=_environment(cache)
        )
    if result.returncode != 0:
        raise SystemExit(f"sihnet {args[0]} failed (exit {result.returncode}); see {log}")


def _environment(cache: Path) -> dict[str, str]:
    import os

    return {**os.environ, "SIHNET_CACHE_DIR": str(cache)}


def ground_truth_bern(cohort: Path) -> dict[str, int]:
    """The Bern score of each synthetic patient as a reader without error would count it."""
    from sihnet.tables import read_rows

    return {r["patient_id"]: int(r["bern_score"]) for r in read_rows(cohort / "truth.csv")}


def ceiling_of(cohort: Path) -> dict[str, float]:
    """The ideal reader's AUROC over the generator and over this cohort's patients."""
    from sihnet.schemas import CeilingFile, read_json

    ceiling = read_json(cohort / "ceiling.json", CeilingFile)
    return {
        "ceiling_generator": ceiling.generator.ideal_reader_auroc,
        "ceiling_cohort": ceiling.cohort.ideal_reader_auroc,
        "bern_truth_generator": ceiling.generator.bern_truth_auroc,
    }


def job_result(run: Path, truth: dict[str, int]) -> dict[str, Any]:
    """The figures of one finished run (module docstring)."""
    from sihnet.evaluation.statistics import auroc_ci, delong_test
    from sihnet.tables import read_rows

    metrics = json.loads((run / "metrics.json").read_text())
    rows = read_rows(run / "oof_predictions.csv")
    labels = np.array([int(r["label"]) for r in rows])
    model = np.array([float(r["probability"]) for r in rows])
    bern = np.array([truth[r["patient_id"]] for r in rows], dtype=float)
    estimate, reference = auroc_ci(labels, model), auroc_ci(labels, bern)
    difference, p_value = delong_test(labels, model, bern)
    result: dict[str, Any] = {
        "n_patients": len(rows),
        "auroc": estimate.auroc,
        "auroc_ci95": [estimate.ci_low, estimate.ci_high],
        "bern_truth_auroc": reference.auroc,
        "bern_truth_ci95": [reference.ci_low, reference.ci_high],
        "difference": difference,
        "delong_p": p_value,
        "seconds": sum(
            json.loads(p.read_text())["seconds"] for p in run.glob("fold_*/summary.json")
        ),
    }
    automatic = metrics.get("auto_bern")
    if automatic:
        result["signs_auroc"] = {k: v.get("auroc") for k, v in automatic["signs"].items()}
        result["distances_icc"] = {k: v.get("icc_2_1") for k, v in automatic["distances"].items()}
    return result


def run_job(cohort: str, variant: str, work: Path, out: Path, n: int | None) -> None:
    target = out / f"{cohort}_{variant}.json"
    if target.is_file():
        return
    seed, spacing, noise, patients = COHORTS[cohort]
    n = n or patients
    data, log, cache = work / cohort, work / f"{cohort}_{variant}.log", work / "cache"
    if not (data / "cohort.csv").is_file():
        sihnet("synth", "--out", data, "--n", n, "--seed", seed, "--spacing", spacing,
               "--reader-noise", noise, cache=cache, log=log)  # fmt: skip
    config = work / f"{variant}.yaml"
    config.write_text(yaml.safe_dump(VARIANTS[variant]))
    run = work / f"{cohort}_{variant}"
    started = time.perf_counter()
    sihnet("train", data / "cohort.csv", "--profile", "quick", "--config", config, "--out", run,
           "--resume", cache=cache, log=log)  # fmt: skip
    result = {
        "cohort": cohort,
        "seed": seed,
        "spacing_mm": spacing,
        "reader_noise_mm": noise,
        "variant": variant,
        "config": VARIANTS[variant],
        "wall_seconds": round(time.perf_counter() - started, 1),
        **job_result(run, ground_truth_bern(data)),
        **ceiling_of(data),
    }
    out.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")


def _cell(value: Any, form: str = "{:.3f}") -> str:
    return "n/a" if value is None else form.format(value)


def write_table(out: Path) -> None:
    """``table.md`` from the finished jobs."""
    results = [json.loads(p.read_text()) for p in sorted(out.glob("[nd][0-9]*_*.json"))]
    lines = [
        "| cohort (seed, mm, reader noise) | variant | pooled OOF AUROC [95% CI] | ground-truth Bern AUROC | "
        "difference (DeLong p) | ceiling: ideal reader (generator / these patients) | "
        "sign AUROC (pachy / venous / subdural) | distance ICC (supra / prepontine / mamillo) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = list(VARIANTS)
    for r in sorted(results, key=lambda r: (r["cohort"], order.index(r["variant"]))):
        low, high = r["auroc_ci95"]
        signs = r.get("signs_auroc") or {}
        iccs = r.get("distances_icc") or {}
        lines.append(
            f"| {r['cohort']} ({r['seed']}, {r['spacing_mm']}, {r['reader_noise_mm']}) | {r['variant']} | "
            f"{r['auroc']:.3f} [{low:.3f}–{high:.3f}] | {r['bern_truth_auroc']:.3f} | "
            f"{r['difference']:+.3f} ({r['delong_p']:.3f}) | "
            f"{r['ceiling_generator']:.3f} / {r['ceiling_cohort']:.3f} | "
            f"{' / '.join(_cell(v) for v in signs.values()) or 'n/a'} | "
            f"{' / '.join(_cell(v) for v in iccs.values()) or 'n/a'} |"
        )
    for family, variant in ((f, v) for f in "nd" for v in order):
        chosen = [r for r in results if r["variant"] == variant and r["cohort"][0] == family]
        if chosen:
            mean = np.mean([r["auroc"] - r["bern_truth_auroc"] for r in chosen])
            lines.append(
                f"| mean over {len(chosen)} {family} cohort(s) | {variant} | "
                f"AUROC {np.mean([r['auroc'] for r in chosen]):.3f}, model − Bern {mean:+.3f} | | | | | |"
            )
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bern_levers"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/sihnet-levers"))
    parser.add_argument("--cohorts", default=",".join(COHORTS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--n", type=int, default=None, help="patients (default: the cohort's)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for cohort in args.cohorts.split(","):
        for variant in args.variants.split(","):
            try:
                run_job(cohort, variant, args.work, args.out, args.n)
            except SystemExit as error:  # one failed job (e.g. a refused scan) stops no other
                print(f"{cohort} {variant}: {error}", file=sys.stderr, flush=True)
                failed.append(f"{cohort}_{variant}")
            write_table(args.out)
    write_table(args.out)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (run again to retry them)")


if __name__ == "__main__":
    main()
