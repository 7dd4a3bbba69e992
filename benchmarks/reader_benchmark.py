"""The automatic Bern reader against the synthetic ground truth (``truth.csv``), per cohort.

For each cohort (synthesised with ``sihnet synth`` if its folder has none) every scan is read
with ``sihnet measure`` and compared with the truth of the same patients: per distance MAE, bias
and ICC(2,1); per sign the AUROC of its continuous measure against the truth's visible sign; the
reader's Bern score's AUROC for the fistula beside the ground-truth Bern score's; the time per
scan and the scans not measured. ``OUT/<cohort>.json`` per cohort, ``OUT/table.md`` for all.

    python benchmarks/reader_benchmark.py --out benchmarks/results/reader --work /tmp/reader \\
        --cohorts r1,r2,r3

Cohorts (seed, voxel size mm, patients): ``r1``-``r3`` were used for no choice (the acceptance of
issue 28); ``dev1``-``dev2`` are the ones the reader was developed on. ``radev`` and ``ra1``-``ra3``
are real healthy heads with SIH added (``sihnet synth --heads HEADS``, issue 34; each study at its
source head's voxel size): give ``--heads``, the folder of the healthy heads
(``benchmarks/real_heads/get_heads.py``; its ``healthy`` rows). ``radev`` is opened: the reader's
failures on real anatomy were diagnosed on its profiles; ``ra1``-``ra3`` were used for no choice.
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

COHORTS: dict[str, tuple[int, float | None, int]] = {  # seed, voxel mm (None: the heads'), n
    "dev1": (901, 1.5, 40),
    "dev2": (902, 2.5, 40),
    "r1": (811, 1.0, 60),
    "r2": (812, 1.5, 60),
    "r3": (813, 2.5, 60),
    "radev": (1511, None, 60),
    "ra1": (1512, None, 60),
    "ra2": (1513, None, 60),
    "ra3": (1514, None, 60),
}
REAL = ("radev", "ra1", "ra2", "ra3")
SIGNS = {  # Bern sign item -> the reader's continuous measure of it
    "pachymeningeal_enhancement": "dural_enhancement",
    "venous_sinus_engorgement": "sinus_height_mm",
    "subdural_fluid_collection": "subdural_fluid_mm",
}
DISTANCES = ("suprasellar_cistern_mm", "prepontine_cistern_mm", "mamillopontine_distance_mm")


def sihnet(*args: object) -> None:
    command = [sys.executable, "-m", "sihnet", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"sihnet {args[0]} failed: {result.stderr.strip()[-500:]}")


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else float("nan")


def cohort_result(folder: Path, measured: Path, seconds: float) -> dict[str, Any]:
    """The reader's table against the cohort's truth (module docstring)."""
    from sihnet.evaluation.auto_bern import icc_2_1
    from sihnet.evaluation.statistics import auroc_ci, delong_test
    from sihnet.tables import read_rows

    truth = {r["patient_id"]: r for r in read_rows(folder / "truth.csv")}
    rows = [r for r in read_rows(measured / "measurements.csv")]
    read = [r for r in rows if not r["problem"]]
    labels = np.array([int(truth[r["patient_id"]]["label"]) for r in read])
    result: dict[str, Any] = {
        "n_patients": len(rows),
        "not_measured": [r["problem"] for r in rows if r["problem"]],
        "seconds_per_scan": round(seconds / max(len(rows), 1), 2),
        "distances": {},
        "signs": {},
    }
    for name in DISTANCES:
        mine = np.array([_float(r[name]) for r in read])
        true = np.array([_float(truth[r["patient_id"]][f"bern_{name}"]) for r in read])
        known = np.isfinite(mine)
        error = mine[known] - true[known]
        result["distances"][name] = {
            "n": int(known.sum()),
            "mae_mm": round(float(np.abs(error).mean()), 3),
            "bias_mm": round(float(error.mean()), 3),
            "icc_2_1": round(icc_2_1(mine[known], true[known]), 3),
        }
    for item, measure in SIGNS.items():
        value = np.array([_float(r[measure]) for r in read])
        present = np.array([int(truth[r["patient_id"]][f"bern_{item}"]) for r in read])
        known = np.isfinite(value)
        both = len(set(present[known].tolist())) == 2
        result["signs"][item] = {
            "measure": measure,
            "n_present": int(present[known].sum()),
            "auroc": round(auroc_ci(present[known], value[known]).auroc, 3) if both else None,
        }
    complete = np.array([r["bern_score"] != "" for r in read])
    mine = np.array([_float(r["bern_score"]) for r in read])[complete]
    true = np.array([_float(truth[r["patient_id"]]["bern_score"]) for r in read])[complete]
    difference, p_value = delong_test(labels[complete], mine, true)
    from sihnet.schemas import CeilingFile, read_json

    ceiling = read_json(folder / "ceiling.json", CeilingFile)
    result["ceiling"] = {
        "generator": ceiling.generator.ideal_reader_auroc,
        "cohort": ceiling.cohort.ideal_reader_auroc,
    }
    result["bern"] = {
        "n": int(complete.sum()),
        "reader_auroc": round(auroc_ci(labels[complete], mine).auroc, 3),
        "truth_auroc": round(auroc_ci(labels[complete], true).auroc, 3),
        "difference": round(difference, 3),
        "delong_p": round(p_value, 3),
    }
    return result


def run_cohort(name: str, work: Path, out: Path, heads: Path | None = None) -> dict[str, Any]:
    seed, spacing, n = COHORTS[name]
    folder, measured = work / name, work / f"{name}_measured"
    if not (folder / "truth.csv").is_file() and name in REAL:
        if heads is None:
            raise SystemExit(f"{name} is made of real heads: give --heads")
        cache = work / "heads_cache"
        sihnet(
            "synth",
            "--out",
            folder,
            "--n",
            n,
            "--seed",
            seed,
            "--heads",
            heads,
            "--cache-dir",
            cache,
        )
    elif not (folder / "truth.csv").is_file():
        sihnet("synth", "--out", folder, "--n", n, "--seed", seed, "--spacing", spacing)
    started = time.perf_counter()
    earlier = out / f"{name}.json"
    if not (measured / "measurements.csv").is_file():
        sihnet("measure", folder / "cohort.csv", "--out", measured, "--cache-dir", work / "cache")
        seconds = time.perf_counter() - started
    elif earlier.is_file():  # re-tabulated: the time of the run that measured it
        seconds = json.loads(earlier.read_text())["seconds_per_scan"] * n
    else:
        seconds = float("nan")
    result = {
        "cohort": name,
        "seed": seed,
        "spacing_mm": spacing or "the heads'",
        **cohort_result(folder, measured, seconds),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_table(out: Path) -> None:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines = [
        "| cohort (seed, mm) | distance MAE mm (ICC): suprasellar / prepontine / mamillopontine | "
        "sign AUROC: pachymeningeal / venous / subdural | reader Bern AUROC | ground-truth Bern "
        "AUROC | difference (DeLong p) | ceiling: ideal reader (generator / these patients) | "
        "not measured | s per scan |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = " / ".join(f"{v['mae_mm']:.2f} ({v['icc_2_1']:.2f})" for v in r["distances"].values())
        s = " / ".join(
            "n/a" if v["auroc"] is None else f"{v['auroc']:.3f}" for v in r["signs"].values()
        )
        b, c = r["bern"], r.get("ceiling")
        ceiling = f"{c['generator']:.3f} / {c['cohort']:.3f}" if c else "n/a"
        lines.append(
            f"| {r['cohort']} ({r['seed']}, {r['spacing_mm']}) | {d} | {s} | {b['reader_auroc']:.3f} | "
            f"{b['truth_auroc']:.3f} | {b['difference']:+.3f} ({b['delong_p']:.2f}) | {ceiling} | "
            f"{len(r['not_measured'])} of {r['n_patients']} | {r['seconds_per_scan']:.1f} |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reader"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/sihnet-reader"))
    parser.add_argument("--cohorts", default="r1,r2,r3")
    parser.add_argument("--heads", type=Path, default=None, help="healthy heads (ra1-ra3)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for name in args.cohorts.split(","):
        print(json.dumps(run_cohort(name, args.work, args.out, args.heads)), flush=True)
        write_table(args.out)


if __name__ == "__main__":
    main()
