"""``sihnet convert`` speed: one large series end to end, and discovery on a large export.

1. A 300-slice 1 mm 3D sagittal series (256x256) written with pydicom by the test factory (PHI
   sentinels included), the command timed as a user runs it (a fresh process: imports, discovery,
   selection, dcm2niix, de-identified .nii.gz). Target: under 10 s on 2 cores.
2. Discovery (header reading and grouping) on a synthetic export of ``--files`` files whose headers
   carry what real exports carry: Siemens CSA blobs (OB, 12 kB + 90 kB per file) and Philips
   undefined-length private sequences (hundreds of nested elements). Files per second reading whole headers (as
   before) and only the tags selection needs (``SELECTION_TAGS``), side by side in one process.

Writes ``OUT/convert.json`` and ``OUT/convert.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sihnet.synth.dicom import bloat_headers, head_volume, write_series


def discovery_rate(root: Path, n_files: int, repeats: int) -> dict[str, object]:
    """Files per second of ``discover`` reading whole headers vs the selection tags only."""
    from sihnet.ingest.discover import SELECTION_TAGS, discover

    per_series = 200
    for index in range(max(1, n_files // per_series)):
        files = write_series(
            root / "export" / f"s{index}", head_volume((per_series, 64, 64), seed=index),
            series_number=index + 1,
        )  # fmt: skip
        bloat_headers(files, "siemens" if index % 2 == 0 else "philips")
    total = sum(1 for p in (root / "export").rglob("*.dcm"))
    discover(root / "export", None)  # warm the page cache for both
    rates: dict[str, list[float]] = {"whole header": [], "selection tags": []}
    for _ in range(repeats):
        for name, tags in (("whole header", None), ("selection tags", SELECTION_TAGS)):
            started = time.perf_counter()
            series, _ = discover(root / "export", tags)
            rates[name].append(total / (time.perf_counter() - started))
            assert len(series) == max(1, n_files // per_series)
    medians = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
    return {
        "files": total,
        "files_per_second": rates,
        "median_files_per_second": medians,
        "speed_up": medians["selection tags"] / medians["whole header"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=2000, help="Files in the discovery export.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        write_series(root / "in" / "series", head_volume((300, 256, 256)), spacing=(1.0, 1.0, 1.0))
        (root / "key").write_text("benchmark-secret-key")
        times = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "sihnet.cli", "convert", str(root / "in"), "--out", str(root / f"out{repeat}"), "--key-file", str(root / "key")],
                capture_output=True,
                text=True,
            )  # fmt: skip
            times.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise SystemExit(result.stderr)
        discovery = discovery_rate(root, args.files, args.repeats)
    median = sorted(times)[len(times) // 2]
    results = {
        "slices": 300,
        "matrix": [256, 256],
        "seconds": times,
        "median_seconds": median,
        "target_seconds": 10,
        "discovery": discovery,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "convert.json").write_text(json.dumps(results, indent=2) + "\n")
    text = (
        "# Convert benchmark\n\n| series | runs (s) | median (s) | target |\n|---|---|---|---|\n"
        f"| 300 × 256 × 256, 1 mm 3D sagittal | {', '.join(f'{t:.2f}' for t in times)} | {median:.2f} | < 10 s |\n"
        "\n| discovery of a synthetic export | files | files/s (median) |\n|---|---|---|\n"
    )
    for name, rate in discovery["median_files_per_second"].items():  # type: ignore[attr-defined]
        text += f"| {name} | {discovery['files']} | {rate:.0f} |\n"
    text += (
        f"\nSelection tags: {discovery['speed_up']:.1f}× the files per second of whole headers.\n"
    )
    (args.out / "convert.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
