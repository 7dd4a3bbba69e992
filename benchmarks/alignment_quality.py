"""What the alignment's quality numbers say on real heads: the template correlation inside the brain
mask and inside the brain's interior, at each head's alignment and at alignments made wrong on
purpose (shifted 6 and 12 mm, turned 10 and 20 degrees), with the scan prepared as the
registration prepares it (2 mm, clipped at the 80th percentile of the head).

    python benchmarks/alignment_quality.py --heads /tmp/heads/real --out benchmarks/results/alignment_quality

``HEADS/heads.csv`` as for ``benchmarks/real_heads.py`` (its ``healthy`` rows). Writes
``OUT/alignment_quality.json`` and ``OUT/alignment_quality.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from sihnet.preprocessing.registration import (
    CLIP_PERCENTILE,
    _downsampled,
    _interior,
    align_to_template,
    template,
)
from sihnet.preprocessing.volume import load_volume
from sihnet.synth.geometry import rotation_matrix

WRONG = {  # template-frame shift (mm) and turn (degrees about x, y, z)
    "shift 6 mm left-right": ((6.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    "shift 6 mm front-back": ((0.0, 6.0, 0.0), (0.0, 0.0, 0.0)),
    "shift 6 mm up": ((0.0, 0.0, 6.0), (0.0, 0.0, 0.0)),
    "shift 12 mm up": ((0.0, 0.0, 12.0), (0.0, 0.0, 0.0)),
    "turn 10 degrees (pitch)": ((0.0, 0.0, 0.0), (10.0, 0.0, 0.0)),
    "turn 10 degrees (yaw)": ((0.0, 0.0, 0.0), (0.0, 0.0, 10.0)),
    "turn 20 degrees (pitch)": ((0.0, 0.0, 0.0), (20.0, 0.0, 0.0)),
}


def correlations(
    volume: np.ndarray, affine: np.ndarray, to_world: np.ndarray
) -> tuple[float, float]:
    """(mask, interior) Pearson r of the template and the scan under ``to_world`` (template ->
    world, 4x4), the scan prepared as :func:`align_to_template` prepares it."""
    data, mask, template_affine = template()
    small, small_affine = _downsampled(np.clip(volume, 0, None).astype(np.float32), affine, 2.0)
    head = small[small > small.mean()]
    small = np.minimum(small / float(np.percentile(head, CLIP_PERCENTILE)), 1.0)
    voxel = np.linalg.inv(small_affine) @ to_world @ template_affine
    aligned = ndimage.affine_transform(
        small, voxel[:3, :3], voxel[:3, 3], output_shape=data.shape, order=1
    )
    return tuple(  # type: ignore[return-value]
        round(float(np.corrcoef(aligned[m], data[m])[0, 1]), 3) for m in (mask, _interior())
    )


def one_head(path: Path) -> dict[str, object]:
    volume, affine = load_volume(path)
    alignment = align_to_template(volume, affine, check_mirror=False)
    rotation = alignment.rotation_matrix
    result: dict[str, object] = {"problem": alignment.problem}
    for name, (shift, turn) in {"as aligned": ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), **WRONG}.items():
        to_world = np.eye(4)
        to_world[:3, :3] = alignment.scale * rotation @ rotation_matrix(turn)
        to_world[:3, 3] = np.asarray(alignment.translation) + rotation @ np.asarray(shift)
        result[name] = correlations(volume, affine, to_world)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heads", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/alignment_quality"))
    args = parser.parse_args()
    rows = [r for r in csv.DictReader((args.heads / "heads.csv").open()) if r["kind"] == "healthy"]
    results = {r["name"]: one_head(args.heads / r["file"]) for r in rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "alignment_quality.json").write_text(json.dumps(results, indent=2) + "\n")
    columns = ["as aligned", *WRONG]
    lines = [
        "| head | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, result in results.items():
        cells = [f"{result[c][0]:.2f} / {result[c][1]:.2f}" for c in columns]  # type: ignore[index]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (args.out / "alignment_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
