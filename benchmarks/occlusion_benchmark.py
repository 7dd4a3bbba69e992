"""Occlusion maps: sihnet vs captum ``Occlusion`` vs MONAI ``OcclusionSensitivity``, side by side.

Same model (MONAI DenseNet-121, seeded random weights, BatchNorm statistics randomised so the map
is not trivially flat, eval mode), same volume (nilearn's MNI152 brain, background set to exactly 0,
preprocessed onto the profile's canvas like any patient), zero baseline, the paper's 12x13x13 mm
patch with equal stride, target = fistula logit, fp32, the same batch size for all three.

* ``quick`` size (48x64x64 at 4 mm): every method runs the whole sweep; maps are compared.
* paper size (240x260x260 at 1 mm; CPU): each method runs a few batches of windows; the time per
  occluded copy is multiplied by the copies that method's full sweep runs (captum and MONAI: every
  window; sihnet: the windows that are not all zero), i.e. **extrapolated**. sihnet's scores on its
  subset are checked against plain full forwards of the same occluded inputs.
* bf16 autocast (sihnet's approximate option): time and error against the fp32 map, quick size.

Writes ``OUT/occlusion.json`` and ``OUT/occlusion.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sihnet.config import OcclusionConfig, load_config
from sihnet.inference import Inference
from sihnet.interpret.incremental import OccludedForward
from sihnet.interpret.occlusion import default_batch_size, occlusion_map, windows
from sihnet.interpret.patient_map import scale_to_grid
from sihnet.models.densenet import build_model
from sihnet.preprocessing.volume import preprocess_volume


def brain_in_canvas(profile: str) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """nilearn's MNI152 brain on the profile's canvas: (1, X, Y, Z) and the patch in its voxels."""
    from nilearn.datasets import load_mni152_template

    template = load_mni152_template(resolution=1)
    data = np.asarray(template.get_fdata(), dtype=np.float32)
    data[data < 1e-3 * data.max()] = 0  # the template's background holds 1e-45..1e-17
    config = load_config(profile).preprocessing
    prepared = preprocess_volume(data, np.asarray(template.affine), config)
    return torch.from_numpy(prepared.image), scale_to_grid(
        OcclusionConfig().patch_1mm, config.spacing_mm
    )


def seeded_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def captum_map(
    model: torch.nn.Module,
    image: torch.Tensor,
    patch: tuple[int, int, int],
    batch: int,
    limit: int | None = None,
) -> tuple[np.ndarray | None, int, float]:
    """captum's map; with ``limit``, stop after that many forward calls. Returns (map, copies, s)."""
    from captum.attr import Occlusion

    calls = {"n": 0, "copies": 0}

    class SweepStoppedError(Exception):
        pass

    def forward(x: torch.Tensor) -> torch.Tensor:
        if limit is not None and calls["n"] >= limit:
            raise SweepStoppedError
        calls["n"] += 1
        calls["copies"] += len(x)
        out: torch.Tensor = model(x)
        return out

    started = time.perf_counter()
    try:
        with torch.no_grad():
            attribution = Occlusion(forward).attribute(
                image[None],
                sliding_window_shapes=(1, *patch),
                strides=(1, *patch),
                baselines=0,
                target=1,
                perturbations_per_eval=batch,
            )
        result: np.ndarray | None = attribution[0, 0].numpy()
    except SweepStoppedError:
        result = None
    return result, calls["copies"], time.perf_counter() - started


def monai_map(
    model: torch.nn.Module,
    image: torch.Tensor,
    patch: tuple[int, int, int],
    batch: int,
    b_box: list[int] | None = None,
) -> tuple[np.ndarray, int, float]:
    """MONAI's map as score differences (it returns occluded outputs). Returns (map, copies, s)."""
    from monai.visualize import OcclusionSensitivity

    calls = {"copies": 0}

    class Counted(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls["copies"] += len(x)
            out: torch.Tensor = model(x)
            return out

    occlusion = OcclusionSensitivity(
        Counted(),
        mask_size=list(patch),
        n_batch=batch,
        verbose=False,
        mode=0.0,
        overlap=0.0,
        activate=False,
    )
    started = time.perf_counter()
    with torch.no_grad():
        base = float(model(image[None])[0, 1])
        occluded, _ = occlusion(image[None], b_box=b_box)
    seconds = time.perf_counter() - started
    values = occluded[0, 0, ..., 1] if occluded.ndim == 6 else occluded[0, 1]
    return base - np.asarray(values.cpu().numpy()), calls["copies"], seconds


def quick_size(batch: int) -> dict[str, Any]:
    image, patch = brain_in_canvas("quick")
    model = seeded_model()
    ours = occlusion_map(model, image, patch, batch_size=batch)
    plain = occlusion_map(model, image, patch, batch_size=batch, incremental=False)
    reference, captum_copies, captum_seconds = captum_map(model, image, patch, batch)
    assert reference is not None
    monai, monai_copies, monai_seconds = monai_map(model, image, patch, batch)
    bf16 = occlusion_map(
        model, image, patch, batch_size=batch, inference=Inference(image.device, "bf16")
    )
    scale = float(np.abs(reference).max())
    return {
        "shape": list(image.shape[1:]),
        "patch_voxels": list(patch),
        "windows": ours.windows,
        "batch": batch,
        "sihnet": {
            "seconds": ours.seconds,
            "forwards": ours.forwards,
            "incremental_units": ours.incremental_units,
        },
        "sihnet_skip_only": {"seconds": plain.seconds, "forwards": plain.forwards},
        "captum": {"seconds": captum_seconds, "forwards": captum_copies},
        "monai": {"seconds": monai_seconds, "forwards": monai_copies},
        "max_abs_diff_vs_captum": float(np.abs(ours.map - reference).max()),
        "max_abs_diff_skip_only_vs_captum": float(np.abs(plain.map - reference).max()),
        "max_abs_diff_monai_vs_captum": float(np.abs(monai - reference).max()),
        "map_max_abs": scale,
        "bf16": {
            "seconds": bf16.seconds,
            "max_abs_error_vs_fp32": float(np.abs(bf16.map - ours.map).max()),
            "correlation_vs_fp32": float(np.corrcoef(bf16.map.ravel(), ours.map.ravel())[0, 1]),
        },
    }


def paper_size(subset: int) -> dict[str, Any]:
    image, patch = brain_in_canvas("paper")
    model = seeded_model()
    shape = tuple(int(n) for n in image.shape[1:])
    batch = default_batch_size(shape, torch.device("cpu"))
    starts = windows(shape, patch, patch)
    volume = image[0]
    nonzero = [
        s
        for s in starts
        if bool(
            volume[s[0] : s[0] + patch[0], s[1] : s[1] + patch[1], s[2] : s[2] + patch[2]].any()
        )
    ]
    central = sorted(
        nonzero, key=lambda s: float(np.abs(np.asarray(s) - np.asarray(shape) / 2).sum())
    )[:subset]
    chunk = np.asarray(central)
    x = image.reshape(1, 1, *shape)
    with torch.inference_mode():
        started = time.perf_counter()
        engine = OccludedForward(model, x, incremental=True)
        engine.prepare(patch)
        prepare_seconds = time.perf_counter() - started
        started = time.perf_counter()
        scores = torch.cat(
            [engine.logits(chunk[i : i + batch], patch)[:, 1] for i in range(0, len(chunk), batch)]
        )
        per_copy = (time.perf_counter() - started) / len(chunk)
        check = []
        for start in chunk[:2]:
            occluded = x.clone()
            occluded[
                (0, 0, *(slice(int(a), int(a) + p) for a, p in zip(start, patch, strict=False)))
            ] = 0
            check.append(float(model(occluded)[0, 1]))
    diff = float(np.abs(scores[:2].numpy() - np.asarray(check)).max())
    _, captum_copies, captum_seconds = captum_map(model, image, patch, batch, limit=subset)
    captum_per_copy = captum_seconds / max(captum_copies, 1)
    box = [int(v) for a, p in zip(central[0], patch, strict=False) for v in (a, a + 2 * p - 1)]
    _, monai_copies, monai_seconds = monai_map(model, image, patch, batch, b_box=box)
    monai_per_copy = monai_seconds / max(monai_copies, 1)
    return {
        "shape": list(shape),
        "patch_voxels": list(patch),
        "windows": len(starts),
        "nonzero_windows": len(nonzero),
        "batch": batch,
        "subset_copies": {"sihnet": len(chunk), "captum": captum_copies, "monai": monai_copies},
        "sihnet": {
            "prepare_seconds": prepare_seconds,
            "seconds_per_copy": per_copy,
            "extrapolated_seconds": prepare_seconds + per_copy * len(nonzero),
            "forwards": len(nonzero),
            "max_abs_diff_vs_plain_forward": diff,
        },
        "captum": {
            "seconds_per_copy": captum_per_copy,
            "extrapolated_seconds": captum_per_copy * len(starts),
            "forwards": len(starts),
        },
        "monai": {
            "seconds_per_copy": monai_per_copy,
            "extrapolated_seconds": monai_per_copy * len(starts),
            "forwards": len(starts),
        },
    }


def markdown(results: dict[str, Any]) -> str:
    quick, paper = results.get("quick"), results.get("paper")
    lines = [
        "# Occlusion benchmark",
        "",
        f"{results['machine']}; torch {results['torch']}, {results['threads']} threads.",
        "",
    ]
    if quick:
        lines += [
            f"## quick size {quick['shape']}, patch {quick['patch_voxels']}, {quick['windows']} windows, batch {quick['batch']}",
            "",
            "| method | forwards | seconds | max abs diff vs captum |",
            "|---|---|---|---|",
            f"| sihnet (skip zero + batch + incremental) | {quick['sihnet']['forwards']} | {quick['sihnet']['seconds']:.1f} | {quick['max_abs_diff_vs_captum']:.2e} |",
            f"| sihnet, skip zero + batch only | {quick['sihnet_skip_only']['forwards']} | {quick['sihnet_skip_only']['seconds']:.1f} | {quick['max_abs_diff_skip_only_vs_captum']:.2e} |",
            f"| captum Occlusion | {quick['captum']['forwards']} | {quick['captum']['seconds']:.1f} | 0 |",
            f"| MONAI OcclusionSensitivity (overlap 0) | {quick['monai']['forwards']} | {quick['monai']['seconds']:.1f} | {quick['max_abs_diff_monai_vs_captum']:.2e} |",
            "",
            f"Speed-up vs the fastest peer: **{results['speedup_quick']:.1f}×** (map max |value| {quick['map_max_abs']:.3g}). "
            f"bf16: {quick['bf16']['seconds']:.1f} s, max abs error vs fp32 {quick['bf16']['max_abs_error_vs_fp32']:.3g}, "
            f"correlation {quick['bf16']['correlation_vs_fp32']:.3f}.",
        ]
    if paper:
        lines += [
            "",
            f"## paper size {paper['shape']}, patch {paper['patch_voxels']}, {paper['windows']} windows "
            f"({paper['nonzero_windows']} not all zero), batch {paper['batch']} — EXTRAPOLATED from a subset",
            "",
            "| method | forwards (full sweep) | s per copy (subset) | extrapolated full-sweep seconds |",
            "|---|---|---|---|",
            f"| sihnet | {paper['sihnet']['forwards']} | {paper['sihnet']['seconds_per_copy']:.2f} | {paper['sihnet']['extrapolated_seconds']:.0f} |",
            f"| captum Occlusion | {paper['captum']['forwards']} | {paper['captum']['seconds_per_copy']:.2f} | {paper['captum']['extrapolated_seconds']:.0f} |",
            f"| MONAI OcclusionSensitivity | {paper['monai']['forwards']} | {paper['monai']['seconds_per_copy']:.2f} | {paper['monai']['extrapolated_seconds']:.0f} |",
            "",
            f"Speed-up vs the fastest peer: **{results['speedup_paper']:.1f}×**; sihnet's subset scores vs plain "
            f"forwards: max abs diff {paper['sihnet']['max_abs_diff_vs_plain_forward']:.2e}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--subset", type=int, default=4, help="Occluded copies per method at paper size."
    )
    parser.add_argument("--skip-paper", action="store_true")
    args = parser.parse_args()
    quick = quick_size(batch=8)
    results: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": quick,
        "speedup_quick": min(quick["captum"]["seconds"], quick["monai"]["seconds"])
        / quick["sihnet"]["seconds"],
    }
    if not args.skip_paper:
        paper = paper_size(args.subset)
        results["paper"] = paper
        results["speedup_paper"] = (
            min(paper["captum"]["extrapolated_seconds"], paper["monai"]["extrapolated_seconds"])
            / paper["sihnet"]["extrapolated_seconds"]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "occlusion.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "occlusion.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
