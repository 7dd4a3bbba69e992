"""A lever on the reader's dural measure, tried on a real-anatomy development cohort (issue 34):
today's measure (``sihnet.reader.signs.dural_enhancement``) against a variant whose brain is never
brighter than ``BRAIN_MAX`` x white matter (a bright dura on the cortex or a fat scalp is no brain)
and whose integral stops at the darkest point within 6 mm of the brain's edge (the inner table,
not the diploe). Each is computed on every study the reader read, with no contrast gating, and
its AUROC taken against the truth's pachymeningeal enhancement; per source head the median.

    python benchmarks/reader_lever_dural.py --cohort /tmp/ra_work/radev --cache /tmp/ra_work/cache

Result (cohort ``radev``, December 2026): today's 0.584, the variant 0.312 on the same studies -
worse, not kept (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from sihnet.preprocessing.cache import VolumeCache
from sihnet.preprocessing.volume import load_volume
from sihnet.reader import signs
from sihnet.reader.image import read_image
from sihnet.reader.profiles import STEP_MM, Profile, Scan
from sihnet.reader.regions import template_regions

BRAIN_MAX = 1.15


def _edge(profile: Profile, white: float, csf: float) -> float | None:
    level = csf + signs.BRAIN_LEVEL * (white - csf)
    bright = (profile.values >= level) & (profile.values <= BRAIN_MAX * white)
    for end in np.flatnonzero(bright[:-1] & ~bright[1:])[::-1]:
        at = float(profile.positions[end])
        if abs(at) > 12.0:
            continue
        inside = (profile.positions <= at) & (profile.positions > at - signs.BRAIN_RUN_MM)
        if (bright & inside).sum() * STEP_MM >= signs.BRAIN_RUN_MM - 2 * STEP_MM:
            return at
    return None


def variant(profiles: list[Profile], white: float, csf: float) -> float | None:
    """The variant's median over the convexity's profiles (module docstring)."""
    values = []
    for profile in profiles:
        edge = _edge(profile, white, csf)
        if edge is None or not np.isfinite(profile.values).all():
            continue
        position, value = profile.positions, profile.values
        smooth = np.convolve(value, np.ones(4) / 4, mode="same")
        window = (position >= edge + 0.5) & (position <= edge + 6.0)
        if not window.any():
            continue
        table = float(position[window][np.argmin(smooth[window])])
        inside = (position >= edge - 2.0) & (position <= table)
        values.append(float(np.clip(value[inside] - csf, 0.0, None).sum() * STEP_MM / white))
    return float(np.median(values)) if len(values) >= signs.MIN_PROFILES else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args()
    cache = VolumeCache(args.cache)
    truth = {r["patient_id"]: r for r in csv.DictReader((args.cohort / "truth.csv").open())}
    regions = template_regions()
    rows = []
    for entry in csv.DictReader((args.cohort / "cohort.csv").open()):
        path = args.cohort / entry["image"]
        reading = read_image(path, cache)
        if reading.problem or reading.white_matter_level is None or reading.csf_level is None:
            continue
        alignment = cache.alignment(path)
        scan = Scan(*load_volume(path))
        points = alignment.to_world(regions.convexity.points)
        rotation = alignment.rotation_matrix
        white, csf = reading.white_matter_level, reading.csf_level
        today = signs.dural_enhancement(scan, regions.convexity, points, rotation, white, csf)
        profiles = signs.profiles_across(scan, regions.convexity, points, rotation, -20.0, 20.0)
        row = truth[entry["patient_id"]]
        rows.append(
            (
                int(row["bern_pachymeningeal_enhancement"]),
                today.value,
                variant(profiles, white, csf),
                row.get("source_head", "phantom"),
            )
        )
    labels = np.array([r[0] for r in rows])
    result = {}
    for column, name in ((1, "today"), (2, "variant")):
        value = np.array([np.nan if r[column] is None else r[column] for r in rows])
        known = np.isfinite(value)
        heads = sorted({r[3] for r in rows})
        result[name] = {
            "auroc": round(float(roc_auc_score(labels[known], value[known])), 3),
            "n": int(known.sum()),
            "median_per_head": {
                h: round(float(np.nanmedian(value[[r[3] == h for r in rows]])), 2) for h in heads
            },
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
