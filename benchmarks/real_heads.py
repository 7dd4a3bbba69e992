"""The automatic Bern reader on real heads (issue 34): what it reads on healthy heads and their
clinical fields of view, what it refuses, and a known sag added to each head.

    python benchmarks/real_heads/get_heads.py --mirrors /work/.mirror --out /tmp/heads/real
    python benchmarks/real_heads.py --heads /tmp/heads/real --out benchmarks/results/real_heads

``HEADS/heads.csv`` names each head (``benchmarks/real_heads/heads.csv``: the public source of each
file, at a commit; the images are not committed). For every healthy head, besides the scan as it
is: resampled to 2.5 mm, cropped 25 mm under the top of the head (no vertex), turned obliquely
(15 degrees about left-right, 10 about front-back), and a known sag added
(:mod:`sihnet.synth.sag_field`: the diencephalon lowered 3 mm; lowered 2 mm with the pons pushed
2 mm towards the clivus), whose exact change of each distance is the field's at the ends read on
the scan as it is. A skull-stripped head must be refused with that reason.

Every scan is read by ``sihnet measure`` with an empty cache. ``OUT/real_heads.json`` and
``OUT/real_heads.md``: per scan the problem, the three distances against the normal range (mean
± 3 SD of normal adults: suprasellar 6.0 ± 1.8 mm and prepontine 5.8 ± 1.4 mm as in
``docs/synthetic.md`` (anchored to Kang et al., AJNR 2025: 28% and 53% of 90 normal MRIs at or
under the Bern thresholds), mamillopontine 7.0 ± 1.3 mm (Shah et al., AJR 2013, controls)), the
signs called, the Bern score, the seconds; per sag the measured and the exact change.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

NORMAL = {  # mean, SD of normal adults (module docstring)
    "suprasellar_cistern_mm": (6.0, 1.8),
    "prepontine_cistern_mm": (5.8, 1.4),
    "mamillopontine_distance_mm": (7.0, 1.3),
}
SIGNS = ("pachymeningeal_enhancement", "venous_sinus_engorgement", "subdural_fluid_collection")
SAGS = {"sag 3 mm": (3.0, 0.0), "sag 2 mm, pons 2 mm": (2.0, 2.0)}
KEYS = {
    "suprasellar": "suprasellar_cistern_mm",
    "mamillopontine": "mamillopontine_distance_mm",
    "prepontine": "prepontine_cistern_mm",
}


def _save(volume: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine), str(path))
    return path


def _resampled(volume: np.ndarray, affine: np.ndarray, spacing: float, turn: np.ndarray) -> tuple:
    """The scan on a grid of ``spacing`` mm turned by ``turn`` (3x3) about its centre (trilinear:
    the preprocessing's own resampling)."""
    from sihnet.preprocessing.volume import resample_to_canvas

    steps = np.sqrt((affine[:3, :3] ** 2).sum(0))
    extent = np.asarray(volume.shape) * steps
    shape = np.ceil(extent / spacing).astype(int)
    centre = affine[:3, :3] @ ((np.asarray(volume.shape) - 1) / 2) + affine[:3, 3]
    directions = turn @ (affine[:3, :3] / steps)
    new = np.eye(4)
    new[:3, :3] = directions * spacing
    new[:3, 3] = centre - new[:3, :3] @ ((shape - 1) / 2)
    return resample_to_canvas(volume, affine, new, tuple(int(s) for s in shape)), new


def _turn(degrees_lr: float, degrees_ap: float) -> np.ndarray:
    a, b = np.radians(degrees_lr), np.radians(degrees_ap)
    about_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    about_y = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return about_y @ about_x


def _without_vertex(volume: np.ndarray, affine: np.ndarray) -> tuple:
    """The scan with everything above 25 mm under the head's top removed (world z)."""
    canonical = nib.as_closest_canonical(nib.Nifti1Image(volume, affine))
    data = np.asarray(canonical.dataobj, dtype=np.float32)
    step = float(np.sqrt((canonical.affine[:3, 2] ** 2).sum()))
    head = np.argwhere(data > 0.2 * np.percentile(data, 99))[:, 2].max()
    return data[:, :, : int(head - 25.0 / step)], canonical.affine


def measure(images: list[Path], out: Path) -> list[dict[str, Any]]:
    """``sihnet measure`` on the images (cache empty); each row with its reading."""
    command = [sys.executable, "-m", "sihnet", "measure", *map(str, images), "--out", str(out)]
    command += ["--cache-dir", str(out / "cache")]
    subprocess.run(command, capture_output=True, text=True)
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    for row in rows:
        reading = out / "readings" / f"{row['name']}.json"
        row["reading"] = json.loads(reading.read_text()) if reading.is_file() else None
    return rows


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    reading = row["reading"] or {}
    distances = {k: (float(row[k]) if row[k] else None) for k in NORMAL}
    return {
        "problem": row["problem"],
        "distances_mm": distances,
        "in_normal_range": {
            k: None if v is None else bool(abs(v - NORMAL[k][0]) <= 3 * NORMAL[k][1])
            for k, v in distances.items()
        },
        "signs_called": [s for s in SIGNS if row[s] == "1.0"],
        "bern_score": row["bern_score"] or f"{row['bern_score_min']}-{row['bern_score_max']}",
        "alignment_correlation": row["alignment_correlation"],
        "seconds": reading.get("seconds"),
        "measures": {k: (v or {}).get("value") for k, v in reading.get("measures", {}).items()},
    }


def one_head(row: dict[str, str], heads: Path, work: Path) -> dict[str, Any]:
    from sihnet.preprocessing.volume import load_volume
    from sihnet.reader.distances import template_directions
    from sihnet.synth.sag_field import brain_sag, structure_ends

    volume, affine = load_volume(heads / row["file"])
    volume = np.asarray(volume, dtype=np.float32)
    folder = work / row["name"]
    folder.mkdir(parents=True, exist_ok=True)
    variants = {"as is": _save(volume, affine, folder / "as_is.nii.gz")}
    if row["kind"] == "healthy":
        variants["2.5 mm"] = _save(
            *_resampled(volume, affine, 2.5, np.eye(3)), folder / "25.nii.gz"
        )
        variants["no vertex"] = _save(*_without_vertex(volume, affine), folder / "top.nii.gz")
        spacing = float(np.sqrt((affine[:3, :3] ** 2).sum(0)).min())
        oblique = _resampled(volume, affine, spacing, _turn(15.0, 10.0))
        variants["oblique 15/10 degrees"] = _save(*oblique, folder / "oblique.nii.gz")
    rows = measure(list(variants.values()), folder / "measured")
    result: dict[str, Any] = {
        "head": row["name"],
        "kind": row["kind"],
        "contrast": row["contrast"],
        "neck": row["neck"],
        "voxel_mm": row["voxel_mm"],
        "variants": {name: _summary(r) for name, r in zip(variants, rows, strict=True)},
    }
    reading = rows[0]["reading"]
    if row["kind"] != "healthy" or reading is None or rows[0]["problem"]:
        return result
    ends = {}
    for key, name in KEYS.items():
        distance = reading["distances"][name]
        if distance["start"] is None:
            return result | {"sags": f"not made: the {key} distance was not read"}
        ends[key] = (np.asarray(distance["start"]), np.asarray(distance["end"]))
    vertical, normal = template_directions(np.asarray(reading["rotation"]))  # as measure aligned
    ends = structure_ends(ends, np.asarray(reading["landmarks"]["pons_superior"]), vertical)
    directions = {"suprasellar": vertical, "mamillopontine": vertical, "prepontine": normal}
    sags, images, fields = {}, [], {}
    for name, (sag_mm, pons_mm) in SAGS.items():
        try:
            fields[name] = brain_sag(ends, vertical, normal, sag_mm, pons_mm)
        except ValueError as error:
            sags[name] = f"not made: {error}"
            continue
        images.append(_save(fields[name].warp(volume, affine), affine, folder / f"{name[:6]}.nii"))
    measured = measure(images, folder / "sagged") if images else []
    for (name, field), sagged in zip(fields.items(), measured, strict=True):
        changes = {}
        for key, column in KEYS.items():
            truth = field.change(*ends[key], directions[key])
            before, after = rows[0][column], sagged[column]
            measured = float(after) - float(before) if before and after else None
            changes[column] = {
                "exact_mm": round(truth, 3),
                "measured_mm": None if measured is None else round(measured, 3),
                "within_0.5_mm": None if measured is None else bool(abs(measured - truth) <= 0.5),
            }
        sags[name] = {"problem": sagged["problem"], "changes": changes}
    return result | {"sags": sags}


def write_table(results: list[dict[str, Any]], out: Path) -> None:
    lines = [
        "| head (voxel mm, neck) | field of view | problem | suprasellar / prepontine / "
        "mamillopontine mm (in the normal range) | signs called | Bern | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for variant, v in r["variants"].items():
            d = " / ".join(
                "–" if mm is None else f"{mm:.1f} ({'yes' if ok else 'NO'})"
                for mm, ok in zip(
                    v["distances_mm"].values(), v["in_normal_range"].values(), strict=True
                )
            )
            signs = ", ".join(v["signs_called"]) or "none"
            lines.append(
                f"| {r['head']} ({r['voxel_mm']}, {r['neck']}) | {variant} | {v['problem'] or '–'} "
                f"| {d} | {signs} | {v['bern_score']} | {v['seconds']} |"
            )
    lines += [
        "",
        "| head | sag | suprasellar / prepontine / mamillopontine: measured (exact) change mm |",
    ]
    lines += ["|---|---|---|"]
    for r in results:
        if isinstance(r.get("sags"), str):
            lines.append(f"| {r['head']} | – | {r['sags']} |")
            continue
        for name, sag in (r.get("sags") or {}).items():
            if isinstance(sag, str):
                lines.append(f"| {r['head']} | {name} | {sag} |")
                continue
            cells = []
            for column in NORMAL:
                c = sag["changes"][column]
                measured = "–" if c["measured_mm"] is None else f"{c['measured_mm']:+.2f}"
                cells.append(f"{measured} ({c['exact_mm']:+.2f})")
            lines.append(f"| {r['head']} | {name} | {' / '.join(cells)} |")
    (out / "real_heads.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heads", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_heads"))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--table-only", action="store_true", help="re-tabulate OUT/real_heads.json")
    args = parser.parse_args()
    if args.table_only:
        write_table(json.loads((args.out / "real_heads.json").read_text()), args.out)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="sihnet-real-heads-"))
    heads = list(csv.DictReader((args.heads / "heads.csv").open()))
    results = []
    for row in heads:
        results.append(one_head(row, args.heads, work))
        print(json.dumps(results[-1])[:400], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_heads.json").write_text(json.dumps(results, indent=2) + "\n")
    write_table(results, args.out)


if __name__ == "__main__":
    main()
