"""What ``training.precision: auto`` and ``channels_last: auto`` would choose on this machine, and
the figures behind it: the probe of ``sihnet.training.probe`` on random volumes of a grid and
batch (``--force-bf16`` measures bf16 even where the CPU emulates it, to see what it costs).

    python benchmarks/precision_probe.py --size 48,64,64 --batch 4 [--force-bf16]

``--kernels`` instead checks bf16 convolution weight gradients against fp32 at each of DenseNet-121's
feature-map shapes for several grids (``sihnet.training.probe.kernel_defect``), and prints which
grids a CPU's bf16 kernels get wrong:

    python benchmarks/precision_probe.py --kernels
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="48,64,64")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--force-bf16", action="store_true")
    parser.add_argument("--kernels", action="store_true")
    args = parser.parse_args()
    if args.kernels:
        kernels()
        return
    from sihnet.models.densenet import build_model
    from sihnet.training import probe as probe_module
    from sihnet.training.step import Batch, StepSettings

    if args.force_bf16:
        probe_module.candidate_precision = lambda device: "bf16"  # type: ignore[assignment]
    size = [int(v) for v in args.size.split(",")]
    torch.manual_seed(0)
    network = build_model()
    images = torch.rand(args.batch, 1, *size, generator=torch.Generator().manual_seed(1))
    batch = Batch(images, torch.arange(args.batch) % 2)
    result = probe_module.probe(network, batch, StepSettings(), torch.device("cpu"), "auto", "auto")
    print(
        json.dumps(
            {"bf16_native": probe_module.bf16_native(torch.device("cpu")), **result.as_json()},
            indent=2,
        )
    )


def kernels() -> None:
    """Print, per grid, None or the first bf16 convolution weight gradient that is wrong."""
    from sihnet.inference import Inference, bf16_native
    from sihnet.models.densenet import build_model
    from sihnet.training.probe import kernel_defect

    grids = [(32, 32, 32), (48, 32, 32), (48, 64, 64), (64, 64, 64), (64, 80, 80), (96, 96, 96)]
    network, cpu = build_model(), torch.device("cpu")
    found = {
        "x".join(map(str, grid)): kernel_defect(
            network, torch.rand(1, 1, *grid), Inference(cpu, "bf16")
        )
        for grid in grids
    }
    print(
        json.dumps({"bf16_native": bf16_native(cpu), "torch": torch.__version__, **found}, indent=2)
    )


if __name__ == "__main__":
    main()
