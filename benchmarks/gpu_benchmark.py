"""Training-step speed and memory of the paper's network, every switch on and off, on one device.

Runnable as is on a GPU machine (``python benchmarks/gpu_benchmark.py --out DIR``): for the quick
size (48x64x64) and the paper's size (240x260x260), the seconds and peak memory of one training
step of MONAI's DenseNet-121 in each precision the device runs (fp32; bf16 or fp16 autocast),
with ``channels_last_3d`` and activation checkpointing off and on; the achieved TFLOP/s (the
step's FLOPs counted by ``torch.utils.flop_counter``) against the device's measured bf16 (or, on
CPUs, fp32) matmul ceiling. The first row of each size is the plain MONAI-tutorial step (fp32, no
switch): the baseline the others are compared with, in the same run. Also runs on a CPU with a
small ``--size`` (as the tests do). Writes ``OUT/gpu.json`` and ``OUT/gpu.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

SIZES = {"quick": (48, 64, 64), "paper": (240, 260, 260)}


def matmul_ceiling(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """TFLOP/s of an n x n matrix product: the device's practical ceiling for that dtype."""
    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    repeats = 10 if device.type == "cuda" else 2
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(size: tuple[int, int, int], batch: int) -> float:
    """Forward plus backward FLOPs of one step (torch's FLOP counter, on the meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    from sihnet.models.densenet import build_model

    with torch.device("meta"):
        model = build_model()
        images = torch.rand(batch, 1, *size)
    with FlopCounterMode(display=False) as counter:
        model(images)[:, 1].sum().backward()
    return float(counter.get_total_flops())


def measure_step(
    size: tuple[int, int, int], batch: int, device: torch.device, precision: str,
    channels_last: bool, checkpointing: bool, steps: int,
) -> dict[str, Any]:  # fmt: skip
    """Median seconds of a training step and its peak memory (GPU: CUDA's peak allocation)."""
    from sihnet.inference import Inference
    from sihnet.models.densenet import build_model
    from sihnet.training.step import Batch, StepSettings, train_step

    inference = Inference(device, precision)  # type: ignore[arg-type]
    torch.manual_seed(0)
    model = build_model(checkpointing).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = inference.grad_scaler()
    labels = torch.arange(batch, device=device) % 2
    data = Batch(torch.rand(batch, 1, *size, device=device), labels)
    settings = StepSettings(torch.ones(2, device=device), 0.0, channels_last)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for index in range(steps + 1):
        started = time.perf_counter()
        train_step(model, model, optimizer, scaler, data, settings, inference)
        if index:  # the first step warms up
            times.append(time.perf_counter() - started)
    peak = (
        torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else float("nan")
    )
    return {"seconds": sorted(times)[len(times) // 2], "peak_memory_gb": peak}


def precisions(device: torch.device) -> list[str]:
    from sihnet.inference import bf16_native

    found = ["fp32"]
    if bf16_native(device):
        found.append("bf16")
    elif device.type == "cuda":
        found.append("fp16")
    return found


def run(sizes: dict[str, tuple[int, int, int]], batch: int, steps: int) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ceiling_dtype = torch.bfloat16 if "bf16" in precisions(device) else torch.float32
    ceiling = matmul_ceiling(device, ceiling_dtype, 8192 if device.type == "cuda" else 1024)
    rows = []
    for name, size in sizes.items():
        flops = step_flops(size, batch)
        for precision in precisions(device):
            for channels_last in (False, True):
                for checkpointing in (False, True):
                    try:
                        result = measure_step(
                            size, batch, device, precision, channels_last, checkpointing, steps
                        )
                    except torch.OutOfMemoryError:
                        result = {"seconds": float("nan"), "peak_memory_gb": float("inf")}
                        torch.cuda.empty_cache()
                    rows.append({
                        "size": name, "shape": list(size), "batch": batch, "precision": precision,
                        "channels_last": channels_last, "checkpointing": checkpointing,
                        "plain_monai": precision == "fp32" and not channels_last and not checkpointing,
                        **result, "tflops": flops / result["seconds"] / 1e12,
                    })  # fmt: skip
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "ceiling_dtype": str(ceiling_dtype).removeprefix("torch."),
        "ceiling_tflops": ceiling,
        "rows": rows,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Training step on {results['device']} (torch {results['torch']})",
        "",
        f"Matmul ceiling ({results['ceiling_dtype']}): {results['ceiling_tflops']:.1f} TFLOP/s.",
        "",
        "| size | precision | channels_last | checkpointing | s/step | vs plain | peak GB | TFLOP/s | % of ceiling |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    plain = {r["size"]: r["seconds"] for r in results["rows"] if r["plain_monai"]}
    for r in results["rows"]:
        ratio = plain[r["size"]] / r["seconds"] if r["seconds"] == r["seconds"] else float("nan")
        lines.append(
            f"| {r['size']} {'×'.join(map(str, r['shape']))} b{r['batch']} | {r['precision']} | {r['channels_last']} | "
            f"{r['checkpointing']} | {r['seconds']:.3f} | {ratio:.2f}× | {r['peak_memory_gb']:.2f} | "
            f"{r['tflops']:.2f} | {100 * r['tflops'] / results['ceiling_tflops']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--size", help="one custom size, e.g. 32,32,32 (default: quick and paper)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    sizes = SIZES if args.size is None else {"custom": tuple(int(v) for v in args.size.split(","))}
    results = run(sizes, args.batch, args.steps)  # type: ignore[arg-type]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (args.out / "gpu.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
