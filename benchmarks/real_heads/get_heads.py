"""Rebuild the folder of real heads that ``benchmarks/real_heads.py`` reads, from local git mirrors of
the public repositories named in ``heads.csv`` (no image is committed here: their licences differ).

    python benchmarks/real_heads/get_heads.py --mirrors /work/.mirror --out /tmp/heads/real

``--mirrors`` holds ``<owner>+<name>/repo`` bare clones (or pass ``--mirror-of owner/name=PATH``).
Each file is taken at the commit ``heads.csv`` names; a DICOM folder is converted with dcm2niix
and a FreeSurfer ``.mgz`` with nibabel.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def _git(mirror: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(mirror), *args], check=True, capture_output=True).stdout


def fetch_one(row: dict[str, str], mirrors: Path, out: Path) -> None:
    repo, rest = row["source"].split("@", 1)
    commit, path = rest.split(":", 1)
    path = path.split(" ", 1)[0]
    mirror = mirrors / repo.replace("/", "+") / "repo"
    target = out / row["file"]
    if path.endswith(".mgz"):
        import nibabel as nib

        with tempfile.TemporaryDirectory() as temp:
            source = Path(temp) / "image.mgz"
            source.write_bytes(_git(mirror, "show", f"{commit}:{path}"))
            image = nib.load(str(source))
            nib.save(
                nib.Nifti1Image(image.get_fdata().astype("float32"), image.affine), str(target)
            )
    elif path.endswith((".nii", ".nii.gz")):
        target.write_bytes(_git(mirror, "show", f"{commit}:{path}"))
    else:  # a DICOM series folder (a glob allowed in its last part)
        folder = path.rsplit("/", 1)[0]
        with (
            tarfile.open(fileobj=io.BytesIO(_git(mirror, "archive", commit, folder))) as archive,
            tempfile.TemporaryDirectory() as temp,
        ):
            archive.extractall(temp, filter="data")
            (series,) = Path(temp).glob(path)
            subprocess.run(
                ["dcm2niix", "-z", "y", "-f", "series", "-o", temp, str(series)],
                check=True, capture_output=True,
            )  # fmt: skip
            shutil.copy(Path(temp) / "series.nii.gz", target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for row in csv.DictReader((HERE / "heads.csv").open()):
        fetch_one(row, args.mirrors, args.out)
        print(row["name"], "->", args.out / row["file"])
    shutil.copy(HERE / "heads.csv", args.out / "heads.csv")


if __name__ == "__main__":
    main()
