"""The demo as a newcomer meets it: a fresh clone, ``make test`` (or only the venv), then
``make demo`` timed, once per synthetic cohort seed (median of the runs' wall times), with where
its time goes (the demo's own ``stage_seconds.json``).

    python benchmarks/demo_time.py [--seeds 0 1 2] [--skip-tests] [--out benchmarks/results]

The clone is of this repository's committed HEAD into a temporary folder. Each ``make demo
DEMO_SEED=s`` writes a fresh demo folder (its cache in the clone, cold); the pooled out-of-fold
AUROC is read from its ``metrics.json``. Writes ``OUT/demo_time.json`` and ``OUT/demo_time.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of ``command`` (its output goes to this terminal)."""
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--skip-tests", action="store_true", help="build the venv only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--keep", type=Path, default=None, help="clone here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        clone = args.keep or Path(temp) / "sihnet"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {**os.environ, "SIHNET_CACHE_DIR": str(clone / ".cache")}
        setup = timed(["make", "venv" if args.skip_tests else "test"], clone, env)
        rows = []
        for seed in args.seeds:
            out = f"demo_seed{seed}"
            seconds = timed(["make", "demo", f"DEMO_OUT={out}", f"DEMO_SEED={seed}"], clone, env)
            metrics = json.loads((clone / out / "run" / "metrics.json").read_text())
            stages = json.loads((clone / out / "stage_seconds.json").read_text())
            rows.append(
                {"seed": seed, "seconds": seconds, "auroc": metrics["auroc_pooled"],
                 "ci95": metrics["auroc_pooled_ci95"], "stages": stages,
                 "ceiling": metrics.get("ceiling"), "bern": metrics.get("bern", {}).get("auroc_bern")}
            )  # fmt: skip
    median = statistics.median(r["seconds"] for r in rows)
    result = {"setup": "make venv" if args.skip_tests else "make test", "setup_seconds": setup,
              "median_demo_seconds": median, "runs": rows, "cpus": os.cpu_count()}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_time.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# make demo from a fresh clone ({result['setup']} first: {setup:.0f} s; {os.cpu_count()} CPUs)",
        "", "| seed | demo wall time | seconds per stage | pooled OOF AUROC [95% CI] | Bern score | "
        "ground-truth Bern / ideal reader (same patients) |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in rows:
        low, high = row["ci95"]
        stages = ", ".join(f"{k} {v:.0f}" for k, v in row["stages"].items())
        ceiling = row["ceiling"] or {}
        truth = f"{ceiling.get('bern_truth_auroc', float('nan')):.3f} / {ceiling.get('ideal_reader_auroc', float('nan')):.3f}"
        bern = "–" if row["bern"] is None else f"{row['bern']:.3f}"
        lines.append(
            f"| {row['seed']} | {row['seconds'] / 60:.1f} min | {stages} | {row['auroc']:.3f} "
            f"[{low:.3f}–{high:.3f}] | {bern} | {truth} |"
        )
    lines.append(f"\nmedian demo time: {median / 60:.1f} min")
    (args.out / "demo_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
