"""Four readers of the same patients, compared honestly (issue 29; the successor of
``bern_levers.py``'s comparison with the Bern score).

For each cohort of ``bern_levers.py`` (``n1``-``n3``: the generator without a label below the
visible threshold; seeds and settings used for no choice) whose ``single`` job has finished:

1. **reader's Bern score**: ``sihnet measure`` and the Bern rules, nothing fitted (a partial score
   counts the middle of its range);
2. **measured model**: a logistic regression on the reader's continuous measures
   (``sihnet.models.measured``), fitted per fold on that fold's training patients of the run's own
   ``splits.json``;
3. **network**: the ``quick`` recipe's DenseNet-121 (the ``single`` job's out-of-fold predictions);
4. **fusion**: the mean of the network's and the measured model's logits (nothing fitted).

Per reader: pooled out-of-fold AUROC with its DeLong CI, the paired DeLong p against the
ground-truth Bern score of the same patients, and the ceiling (the ideal reader of the generator
and of these patients). ``OUT/<cohort>.json`` and ``OUT/table.md``; finished cohorts are redone
cheaply (everything is cached).

    python benchmarks/readers.py --levers /tmp/sihnet-levers --out benchmarks/results/readers
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

COHORTS = ("n1", "n2", "n3")
READERS = ("reader_bern", "measured", "network", "fusion")


def _measure(cohort: Path, out: Path, cache: Path) -> None:
    if (out / "measurements.csv").is_file():
        return
    command = [sys.executable, "-m", "sihnet", "measure", str(cohort / "cohort.csv"),
               "--out", str(out), "--cache-dir", str(cache)]  # fmt: skip
    subprocess.run(command, check=False, capture_output=True)
    if not (out / "measurements.csv").is_file():
        raise SystemExit(f"sihnet measure failed on {cohort.name}")


def scores(
    levers: Path, name: str
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Patients, labels, each reader's out-of-fold score and the cohort's ceiling."""
    from sihnet.models.measured import MeasuredModel, fuse, logit
    from sihnet.reader.reading import FEATURES
    from sihnet.schemas import CeilingFile, PredictionTable, read_json
    from sihnet.tables import read_rows

    cohort, run = levers / name, levers / f"{name}_single"
    measured_dir = levers / f"{name}_measured"
    _measure(cohort, measured_dir, levers / "cache")
    oof = PredictionTable.read(run / "oof_predictions.csv")
    patients = list(oof.patient_ids)
    labels = oof.labels
    truth = {r["patient_id"]: r for r in read_rows(cohort / "truth.csv")}
    rows = {r["patient_id"]: r for r in read_rows(measured_dir / "measurements.csv")}

    def number(text: str) -> float | None:
        return float(text) if text not in ("", None) else None

    features = {p: {f: number(rows[p].get(f, "")) for f in FEATURES} for p in patients}
    reader_bern = np.array([
        (float(rows[p]["bern_score_min"]) + float(rows[p]["bern_score_max"])) / 2
        if rows[p]["bern_score_min"] != "" else np.nan
        for p in patients
    ])  # fmt: skip
    splits = json.loads((run / "splits.json").read_text())["assignment"]
    measured = np.zeros(len(patients))
    for fold in sorted(set(splits.values())):
        train = [p for p in patients if splits[p] != fold]
        held = [i for i, p in enumerate(patients) if splits[p] == fold]
        model = MeasuredModel.fit(
            [features[p] for p in train], np.array([labels[patients.index(p)] for p in train])
        )
        measured[held] = model.logits([features[patients[i]] for i in held])
    network = oof.probability
    result = {
        "reader_bern": reader_bern,
        "measured": measured,
        "network": logit(network),
        "fusion": logit(fuse(network, measured)),
        "truth_bern": np.array([float(truth[p]["bern_score"]) for p in patients]),
    }
    ceiling = read_json(cohort / "ceiling.json", CeilingFile)
    return (
        patients,
        labels,
        result,
        {
            "generator": ceiling.generator.ideal_reader_auroc,
            "cohort": ceiling.cohort.ideal_reader_auroc,
            "bern_generator": ceiling.generator.bern_truth_auroc,
        },
    )


def cohort_result(levers: Path, name: str) -> dict[str, Any]:
    from sihnet.evaluation.statistics import auroc_ci, delong_test

    patients, labels, result, ceiling = scores(levers, name)
    truth = result["truth_bern"]
    out: dict[str, Any] = {"cohort": name, "n_patients": len(patients), "ceiling": ceiling}
    out["truth_bern_auroc"] = round(auroc_ci(labels, truth).auroc, 4)
    for reader in READERS:
        score = result[reader]
        known = np.isfinite(score)
        estimate = auroc_ci(labels[known], score[known])
        difference, p_value = delong_test(labels[known], score[known], truth[known])
        out[reader] = {
            "n": int(known.sum()),
            "auroc": round(estimate.auroc, 4),
            "ci95": [round(estimate.ci_low, 3), round(estimate.ci_high, 3)],
            "minus_truth_bern": round(difference, 4),
            "delong_p": round(p_value, 3),
        }
    return out


def write_table(results: list[dict[str, Any]], out: Path) -> None:
    lines = [
        "| cohort | reader | pooled OOF AUROC [95% CI] | ground-truth Bern AUROC | difference (DeLong p) | ceiling: ideal reader (generator / these patients) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for reader in READERS:
            x = r[reader]
            lines.append(
                f"| {r['cohort']} ({r['n_patients']}) | {reader.replace('_', ' ')} | {x['auroc']:.3f} "
                f"[{x['ci95'][0]:.3f}–{x['ci95'][1]:.3f}] | {r['truth_bern_auroc']:.3f} | "
                f"{x['minus_truth_bern']:+.3f} ({x['delong_p']:.3f}) | "
                f"{r['ceiling']['generator']:.3f} / {r['ceiling']['cohort']:.3f} |"
            )
    for reader in READERS:
        mean = np.mean([r[reader]["minus_truth_bern"] for r in results])
        lines.append(
            f"| mean over {len(results)} | {reader.replace('_', ' ')} | − ground-truth Bern {mean:+.3f} | | | |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levers", type=Path, default=Path("/tmp/sihnet-levers"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/readers"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in COHORTS:
        if not (args.levers / f"{name}_single" / "oof_predictions.csv").is_file():
            print(f"{name}: the single job has not finished; skipped", flush=True)
            continue
        result = cohort_result(args.levers, name)
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        results.append(result)
        print(json.dumps(result), flush=True)
    if results:
        write_table(results, args.out)


if __name__ == "__main__":
    main()
