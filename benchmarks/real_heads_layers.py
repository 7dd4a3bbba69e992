"""Where the real-heads maker paints its dura on a real head (issue 34): the median outward profile
over the convexity of each healthy head, from the brain's edge as the reader finds it
(``sihnet.reader.signs``), beside the maker's inner table (``sihnet.real_heads.sih``: the closed
brain plus ``CSF_RIM_MM``) on the same profiles.

    python benchmarks/real_heads_layers.py --heads /tmp/heads/healthy --out benchmarks/results/real_heads_layers

On a T1 the CSF, the dura and the cortical bone of the inner table are one dark band between the
brain and the diploe's fat: the table tells where on that band the maker puts the dura, and what
the reader's dural and subdural windows (2 mm inside to 5 mm outside the edge; 0.3-6 mm outside)
cover on a head without SIH. Writes ``OUT/real_heads_layers.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OFFSETS_MM = np.arange(-4.0, 14.01, 1.0)  # from the brain's edge, outwards


def head_profile(path: Path, cache_dir: Path) -> dict[str, object]:
    """The median profile (over white matter) and where the maker's table and the dark band lie."""
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.reader import signs
    from sihnet.reader.image import read_image
    from sihnet.reader.profiles import Scan
    from sihnet.reader.regions import template_regions
    from sihnet.real_heads.sih import source_head

    cache = VolumeCache(cache_dir)
    reading, head = read_image(path, cache), source_head(path, cache)
    alignment, convexity = cache.alignment(path), template_regions().convexity
    white, csf = reading.white_matter_level, reading.csf_level
    assert white is not None and csf is not None, "the head was not read"
    scan, depth = Scan(head.volume, head.affine), Scan(head.depth, head.affine)
    points, rotation = alignment.to_world(convexity.points), alignment.rotation_matrix
    rows, tables = [], []
    for profile in signs.profiles_across(scan, convexity, points, rotation, -20.0, 20.0):
        edge = signs._brain_edge(profile, white, csf)
        if edge is None:
            continue
        under = depth.sample(profile.origin + profile.positions[:, None] * profile.direction)
        crossing = np.flatnonzero((under[:-1] > 0) & (under[1:] <= 0))
        if crossing.size:
            tables.append(float(profile.positions[crossing[0]] - edge))
        rows.append(np.interp(edge + OFFSETS_MM, profile.positions, profile.values))
    median = np.nanmedian(np.asarray(rows), axis=0) / white
    outside = OFFSETS_MM > 0
    darkest = float(OFFSETS_MM[outside][np.argmin(median[outside])])
    return {
        "head": path.name,
        "profiles": len(rows),
        "csf_over_white": round(csf / white, 3),
        "median_over_white": [round(float(v), 3) for v in median],
        "darkest_mm": darkest,
        "maker_table_mm": [round(float(v), 2) for v in np.percentile(tables, [25, 50, 75])],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heads", type=Path, required=True, help="a folder of healthy heads")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None, help="the reader's cache folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or args.out / "cache"
    heads = sorted(p for p in args.heads.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    results = [head_profile(path, cache) for path in heads]
    (args.out / "real_heads_layers.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| head | CSF / WM | maker's table mm from the brain's edge (quartiles) | darkest mm | "
        + " | ".join(f"{o:+.0f}" for o in OFFSETS_MM)
        + " |",
        "|---|---|---|---|" + "---|" * len(OFFSETS_MM),
    ]
    for r in results:
        quartiles = " / ".join(f"{v:.1f}" for v in r["maker_table_mm"])  # type: ignore[attr-defined]
        values = " | ".join(f"{v:.2f}" for v in r["median_over_white"])  # type: ignore[attr-defined]
        lines.append(
            f"| {r['head']} | {r['csf_over_white']} | {quartiles} | {r['darkest_mm']:+.0f} | {values} |"
        )
    (args.out / "real_heads_layers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
