"""``make bench``: speed and memory of sihnet side by side with a plain MONAI-tutorial loop.

Measures, each in its own subprocess so peak memory is clean:
* training-step seconds (batch 4) and inference seconds per volume at the ``quick`` size, and
  forward seconds at the paper's 240x260x260 (CPU: forward only), with peak RSS;
* the default synthetic cohort (129 patients) at 1 mm and 2 mm;
* one training epoch on the same synthetic cohort: sihnet (cached, preprocessed volumes in memory,
  profile precision) vs a plain MONAI-tutorial loop (LoadImaged -> EnsureChannelFirstd ->
  Orientationd -> Spacingd -> ScaleIntensityd -> ResizeWithPadOrCropd -> augmentation, no cache,
  fp32), and their ratio.

Writes ``OUT/results.json`` and ``OUT/results.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

QUICK_SIZE = (48, 64, 64)
PAPER_SIZE = (240, 260, 260)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def median_seconds(step: Any, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def measure_model(
    size: tuple[int, int, int], precision: str, train: bool, repeats: int
) -> dict[str, Any]:
    """Seconds per training step (batch 4) or per inference volume (batch 1)."""
    from sihnet.inference import Inference
    from sihnet.models.densenet import build_model

    torch.manual_seed(0)
    model = build_model()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    inference = Inference(device, "bf16" if precision == "bf16" else "fp32")
    model.to(device)
    if train:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        images = torch.rand(4, 1, *size, device=device)
        labels = torch.tensor([0, 1, 0, 1], device=device)

        def step() -> None:
            with inference.autocast():
                logits = model(images)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
    else:
        model.eval()
        image = torch.rand(1, 1, *size, device=device)

        def step() -> None:
            with torch.inference_mode(), inference.autocast():
                model(image)
            if device.type == "cuda":
                torch.cuda.synchronize()

    seconds = median_seconds(step, repeats)
    return {"seconds": seconds, "peak_rss_gb": peak_rss_gb(), "device": device.type}


def sihnet_epoch(manifest: Path, cache_dir: Path) -> dict[str, Any]:
    """One training epoch the sihnet way (the profile's precision, cached volumes in memory)."""
    from sihnet.config import load_config
    from sihnet.data.manifest import read_manifest
    from sihnet.inference import Inference
    from sihnet.models.densenet import build_model
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.training.augmentation import augment_batch, build_augmentation
    from sihnet.training.dataset import CachedVolumeDataset

    config = load_config("quick")
    cohort = read_manifest(manifest)
    cache = VolumeCache(cache_dir)
    entries = [cache.get(s.image, config.preprocessing) for s in cohort.scans]  # warm: not timed
    labels = [int(s.label or 0) for s in cohort.scans]
    model = build_model()
    inference = Inference.resolve("cpu", config.training.precision)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    augmentation = build_augmentation(config.augmentation, config.preprocessing.spacing_mm, 0)

    def epoch() -> None:
        loader = torch.utils.data.DataLoader(
            CachedVolumeDataset(entries, labels), batch_size=4, shuffle=True
        )
        for images, targets in loader:
            augmented = augment_batch(images, augmentation)  # outside autocast, as in training
            with inference.autocast():
                logits = model(augmented)
            loss = torch.nn.functional.cross_entropy(logits.float(), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return {
        "seconds": median_seconds(epoch, 2),
        "peak_rss_gb": peak_rss_gb(),
        "scans": len(entries),
    }


def plain_monai_epoch(manifest: Path) -> dict[str, Any]:
    """One epoch of the MONAI classification tutorial's loop: transforms on every load, fp32."""
    import math

    from monai.data import DataLoader, Dataset
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        RandAffined,
        RandFlipd,
        RandGaussianNoised,
        RandShiftIntensityd,
        ResizeWithPadOrCropd,
        ScaleIntensityd,
        Spacingd,
    )

    from sihnet.data.manifest import read_manifest
    from sihnet.models.densenet import build_model

    cohort = read_manifest(manifest)
    items = [{"image": str(s.image), "label": int(s.label or 0)} for s in cohort.scans]
    transforms = Compose(
        [
            LoadImaged(keys="image"),
            EnsureChannelFirstd(keys="image"),
            Orientationd(keys="image", axcodes="RAS"),
            Spacingd(keys="image", pixdim=(4.0, 4.0, 4.0), mode="bilinear"),
            ScaleIntensityd(keys="image"),
            ResizeWithPadOrCropd(keys="image", spatial_size=QUICK_SIZE),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            RandFlipd(keys="image", spatial_axis=0, prob=0.5),
            RandAffined(
                keys="image",
                prob=0.3,
                rotate_range=(math.radians(10),) * 3,
                scale_range=(0.1,) * 3,
                padding_mode="zeros",
            ),
            RandGaussianNoised(keys="image", prob=0.2, std=0.03),
        ]
    )
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

    def epoch() -> None:
        for batch in DataLoader(
            Dataset(items, transforms), batch_size=4, shuffle=True, num_workers=0
        ):
            loss = torch.nn.functional.cross_entropy(
                model(batch["image"].as_tensor()), batch["label"]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return {"seconds": median_seconds(epoch, 2), "peak_rss_gb": peak_rss_gb(), "scans": len(items)}


def ddp_scaling(out: Path, size: int = 48, steps: int = 3) -> list[dict[str, Any]]:
    """Seconds per global training step (batch 4, size^3, fp32) with 1 and 2 torchrun processes
    of one thread each on this CPU (``sihnet.training.ddp_check``), and the speed-up."""
    import os

    rows, seconds = [], {}
    for processes in (1, 2):
        target = out / f"ddp_{processes}.json"
        subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
             "-m", "sihnet.training.ddp_check", str(target), "--size", str(size), "--steps", str(steps), "--float32"],
            check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        seconds[processes] = json.loads(target.read_text())["seconds_per_step"]
        rows.append(
            {
                "measurement": f"DDP step b4 {size}^3 fp32, {processes} process(es) x 1 thread",
                "seconds": seconds[processes],
            }
        )
    print(
        f"DDP on CPU: 1 -> 2 processes {seconds[1] / seconds[2]:.2f}x per global step", flush=True
    )
    return rows


def run_child(task: str, *args: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (clean peak memory)."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", task, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{task} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def child(task: str, args: list[str]) -> None:
    torch.set_num_threads(torch.get_num_threads())
    if task == "model":
        size = tuple(int(v) for v in args[0].split("x"))
        out = measure_model(size, args[1], args[2] == "train", int(args[3]))  # type: ignore[arg-type]
    elif task == "sihnet_epoch":
        out = sihnet_epoch(Path(args[0]), Path(args[1]))
    else:
        out = plain_monai_epoch(Path(args[0]))
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--patients", type=int, default=32, help="synthetic patients for the epoch comparison"
    )
    parser.add_argument(
        "--skip-synth", action="store_true", help="skip timing the 129-patient synthesis"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child[0], options.child[1:])
        return

    from sihnet.synth.cohort import run_synth

    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    cohort = out / "cohort"
    manifest = cohort / "cohort.csv"
    if not manifest.is_file():
        # 1 mm, as the paper's 3D sagittal CE-T1: the plain loop pays for reading and resampling it.
        run_synth(cohort, n=options.patients, seed=1, spacing_mm=1.0)
    cuda = torch.cuda.is_available()
    quick = "x".join(map(str, QUICK_SIZE))
    paper = "x".join(map(str, PAPER_SIZE))
    rows: list[dict[str, Any]] = []
    for label, args in [
        ("train step b4, quick size, bf16", ("model", quick, "bf16", "train", "5")),
        ("train step b4, quick size, fp32", ("model", quick, "fp32", "train", "5")),
        ("inference per volume, quick size, bf16", ("model", quick, "bf16", "infer", "10")),
        ("inference per volume, quick size, fp32", ("model", quick, "fp32", "infer", "10")),
        ("inference per volume, paper size, fp32", ("model", paper, "fp32", "infer", "2")),
        ("inference per volume, paper size, bf16", ("model", paper, "bf16", "infer", "2")),
    ] + (
        [("train step b4, paper size, bf16", ("model", paper, "bf16", "train", "3"))]
        if cuda
        else []
    ):
        result = run_child(*args)
        rows.append({"measurement": label, **result})
        print(
            f"{label}: {result['seconds']:.3f} s, peak RSS {result['peak_rss_gb']:.2f} GB",
            flush=True,
        )
    ours = run_child("sihnet_epoch", str(manifest), str(out / "cache"))
    plain = run_child("plain_monai_epoch", str(manifest))
    ratio = plain["seconds"] / ours["seconds"]
    rows.append({"measurement": f"epoch, sihnet quick ({ours['scans']} scans)", **ours})
    rows.append(
        {"measurement": f"epoch, plain MONAI-tutorial loop ({plain['scans']} scans)", **plain}
    )
    print(
        f"epoch: sihnet {ours['seconds']:.2f} s vs plain MONAI loop {plain['seconds']:.2f} s: {ratio:.1f}x faster"
    )
    scaling = ddp_scaling(out)
    rows += scaling
    synthesis: dict[str, float] = {}
    if not options.skip_synth:
        for spacing in (1.0, 2.0):
            started = time.perf_counter()
            run_synth(out / f"synth_{spacing:g}mm", n=129, seed=0, spacing_mm=spacing)
            synthesis[f"{spacing:g} mm"] = time.perf_counter() - started
            print(
                f"synthesis of 129 patients at {spacing:g} mm: {synthesis[f'{spacing:g} mm']:.1f} s",
                flush=True,
            )
            rows.append(
                {
                    "measurement": f"sihnet synth, 129 patients at {spacing:g} mm",
                    "seconds": synthesis[f"{spacing:g} mm"],
                    "peak_rss_gb": float("nan"),
                }
            )
    results = {
        "synthesis_speedup_2mm_vs_1mm": synthesis["1 mm"] / synthesis["2 mm"]
        if synthesis
        else None,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
            "cuda": cuda,
            "torch": torch.__version__,
        },
        "rows": rows,
        "epoch_speedup_vs_plain_monai": ratio,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| measurement | seconds | peak RSS (GB) |", "|---|---|---|"]
    lines += [
        f"| {r['measurement']} | {r['seconds']:.3f} | "
        + (f"{r['peak_rss_gb']:.2f} |" if r["peak_rss_gb"] == r["peak_rss_gb"] else "– |")
        for r in rows
    ]
    lines.append(
        f"\nEpoch speed-up of sihnet over the plain MONAI-tutorial loop: **{ratio:.1f}x**\n"
    )
    (out / "results.md").write_text("\n".join(lines))
    print(f"results: {out / 'results.json'}, {out / 'results.md'}")


if __name__ == "__main__":
    main()
