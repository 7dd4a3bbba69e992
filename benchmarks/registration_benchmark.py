"""Registration to the MNI152 template, per scan: seconds, template correlation, and the error of
the aligned landmarks against the synthetic truth (the phantom's own pose), on a fresh synthetic
cohort; writes ``OUT/registration.{json,md}``.

    python benchmarks/registration_benchmark.py --out benchmarks/results --n 12 --spacing 2
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--spacing", type=float, default=2.0)
    args = parser.parse_args()
    from sihnet.preprocessing.registration import align_to_template
    from sihnet.preprocessing.volume import load_volume
    from sihnet.synth import anatomy
    from sihnet.synth.cohort import run_synth
    from sihnet.synth.geometry import rotation_matrix

    landmarks = np.stack([anatomy.PONS_SUPERIOR, anatomy.CHIASM_FLOOR, anatomy.MAMILLARY_INFERIOR])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        manifest = run_synth(Path(folder), n=args.n, seed=args.seed, spacing_mm=args.spacing)
        truth = {r["patient_id"]: r for r in csv.DictReader((manifest.parent / "truth.csv").open())}
        for patient, t in truth.items():
            volume, affine = load_volume(manifest.parent / "images" / f"{patient}.nii.gz")
            timings = {}
            for mirror in (False, True):
                started = time.perf_counter()
                alignment = align_to_template(volume, affine, check_mirror=mirror)
                timings[mirror] = time.perf_counter() - started
            rotation = rotation_matrix(tuple(float(v) for v in t["rotation_deg"].split(";")))
            shift = np.array([float(v) for v in t["translation_mm"].split(";")])
            expected = landmarks @ (float(t["head_scale"]) * rotation).T + shift
            error = np.linalg.norm(alignment.to_world(landmarks) - expected, axis=1)
            rows.append({
                "patient": patient, "seconds": timings[False], "seconds_with_mirror": timings[True],
                "correlation": alignment.correlation, "scale_error": alignment.scale - float(t["head_scale"]),
                "landmark_error_mm_max": float(error.max()), "problem": alignment.problem,
            })  # fmt: skip
    summary = {
        "n": len(rows),
        "spacing_mm": args.spacing,
        "median_seconds": float(np.median([r["seconds"] for r in rows])),
        "median_seconds_with_mirror": float(np.median([r["seconds_with_mirror"] for r in rows])),
        "correlation_min": float(min(r["correlation"] for r in rows)),
        "landmark_error_mm_median": float(np.median([r["landmark_error_mm_max"] for r in rows])),
        "landmark_error_mm_max": float(max(r["landmark_error_mm_max"] for r in rows)),
        "refused": sum(bool(r["problem"]) for r in rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "registration.json").write_text(
        json.dumps({"summary": summary, "scans": rows}, indent=2)
    )
    lines = [
        "| measure | value |",
        "|---|---|",
        *(
            f"| {k} | {v:.3g} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in summary.items()
        ),
    ]
    (args.out / "registration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
