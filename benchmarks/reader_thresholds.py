"""The reader's sign thresholds: Youden's point of each continuous measure against the visible sign
on the development cohorts only (``dev1``, ``dev2`` of ``reader_benchmark.py``; never the cohorts
the reader is judged on), pooled. Prints the thresholds and writes ``OUT/reader_thresholds.json``.

    python benchmarks/reader_benchmark.py --work /tmp/reader --cohorts dev1,dev2 --out /tmp/dev
    python benchmarks/reader_thresholds.py --work /tmp/reader --out benchmarks/results/reader
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sihnet.bern_reading import SIGN_READINGS
from sihnet.evaluation.operating_points import youden_threshold
from sihnet.evaluation.statistics import auroc_ci
from sihnet.tables import read_rows

DEVELOPMENT = ("dev1", "dev2")


def pooled(work: Path, measure: str, item: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, values) of every development scan with the measure read."""
    labels, values = [], []
    for cohort in DEVELOPMENT:
        truth = {r["patient_id"]: r for r in read_rows(work / cohort / "truth.csv")}
        for row in read_rows(work / f"{cohort}_measured" / "measurements.csv"):
            if row["problem"] or row.get(measure, "") == "":
                continue
            labels.append(int(truth[row["patient_id"]][f"bern_{item}"]))
            values.append(float(row[measure]))
    return np.array(labels), np.array(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = {}
    for sign in SIGN_READINGS:
        item, measure, current = sign.name, str(sign.measure), sign.threshold
        labels, values = pooled(args.work, measure, item)
        threshold = youden_threshold(labels, values)
        result[item] = {
            "measure": measure,
            "n": len(labels),
            "n_present": int(labels.sum()),
            "auroc": round(auroc_ci(labels, values).auroc, 3),
            "youden_threshold": round(float(threshold), 3),
            "current_threshold": current,
        }
        print(item, result[item])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reader_thresholds.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
