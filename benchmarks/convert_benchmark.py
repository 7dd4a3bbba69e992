"""``sihnet convert`` on a 300-slice 1 mm 3D sagittal series (256x256), wall time of the command.

The series is written with pydicom by the test factory (PHI sentinels included); the command is
timed as a user runs it (a fresh process: imports, discovery, selection, dcm2niix, de-identified
.nii.gz). Target: under 10 s on 2 cores. Writes ``OUT/convert.json`` and ``OUT/convert.md``.
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

from tests.ingest.dicom_factory import head_volume, write_series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--repeats", type=int, default=3)
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
    median = sorted(times)[len(times) // 2]
    results = {
        "slices": 300,
        "matrix": [256, 256],
        "seconds": times,
        "median_seconds": median,
        "target_seconds": 10,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "convert.json").write_text(json.dumps(results, indent=2) + "\n")
    text = (
        "# Convert benchmark\n\n| series | runs (s) | median (s) | target |\n|---|---|---|---|\n"
        f"| 300 × 256 × 256, 1 mm 3D sagittal | {', '.join(f'{t:.2f}' for t in times)} | {median:.2f} | < 10 s |\n"
    )
    (args.out / "convert.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
