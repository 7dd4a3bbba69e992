"""What an exported model's MONAI bundle runs (``configs/inference.json`` points here):

    python -m monai.bundle run --config_file MODEL_DIR/configs/inference.json \\
        --meta_file MODEL_DIR/configs/metadata.json --image IMAGE.nii.gz --output_dir OUT

The preprocessing and the fold ensemble are sihnet's own (``predict``'s path), so the bundle gives
``sihnet predict MODEL_DIR IMAGE``'s probability; ``OUT/predictions.json`` holds it with the
per-fold values. The model folder is verified against its ``model.json`` first: a changed weight
file is one line on stderr and exit 2, as in ``sihnet predict``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from sihnet.atomic import write_text_atomic
from sihnet.config import InferenceConfig
from sihnet.errors import SihnetError
from sihnet.paths import RunPaths


def bundle_root() -> str:
    """The model folder whose bundle is running: the parent of the ``configs/`` folder given to
    ``monai.bundle`` (``--config_file``), else the folder MONAI put first on ``sys.path``, else the
    current folder."""
    arguments = sys.argv
    for flag in ("--config_file", "--meta_file"):
        if flag in arguments[:-1]:
            configs = Path(arguments[arguments.index(flag) + 1].split(",")[0]).resolve().parent
            return str(configs.parent if configs.name == "configs" else configs)
    for entry in sys.path[1:2]:
        if RunPaths(Path(entry)).bundle_inference_config.is_file():
            return str(Path(entry).resolve())
    return str(Path.cwd())


def _refuse(error: SihnetError) -> NoReturn:
    """One line and exit 2, as sihnet's own commands (MONAI's runner would print a traceback)."""
    print(f"sihnet: error: {error}", file=sys.stderr)
    raise SystemExit(2)


def check_bundle_root(root: str) -> None:
    """The model folder a bundle's ``inference.json`` names must be the folder the configuration
    was given from (``--config_file``): an edited ``bundle_root`` would score another model.

    Raises:
        SystemExit: one line and exit 2 when they differ.
    """
    arguments = sys.argv
    if "--config_file" not in arguments[:-1]:
        return
    running = Path(bundle_root()).resolve()
    if Path(root).resolve() != running:
        _refuse(
            SihnetError(
                f"{running.name}/{RunPaths(Path('.')).bundle_inference_config} points at another "
                "model folder "
                f"({Path(root).name}); refused"
            )
        )


class EnsembleNetwork(nn.Module):
    """The exported fold models as one network: (N, 1, X, Y, Z) canvas -> (N, 2) class
    probabilities, the mean of the fold models' softmax (what ``predict`` reports as the
    probability). Loaded without pickle after the folder's identity was checked."""

    def __init__(self, bundle_root: str, device: str = "cpu") -> None:
        from sihnet.inference.ensemble import FoldEnsemble

        super().__init__()
        check_bundle_root(bundle_root)
        try:
            ensemble = FoldEnsemble.load(
                Path(bundle_root), settings=InferenceConfig(device, "fp32")
            )
        except SihnetError as error:
            _refuse(error)
        self.folds = nn.ModuleList(list(ensemble.models.values()))
        self.model_sha256 = ensemble.model_sha256

    def forward(self, image: Any) -> torch.Tensor:
        from sihnet.models.bern_heads import split_outputs

        probabilities = [
            torch.softmax(split_outputs(m(image))[0].float(), dim=1) for m in self.folds
        ]
        return torch.stack(probabilities).mean(dim=0)


def predict_to(bundle_root: str, image: str, output_dir: str, device: str = "cpu") -> Path:
    """Score ``image`` (a NIfTI file or DICOM folder) as ``sihnet predict`` does and write
    ``output_dir/predictions.json``; returns its path. A bad image or model is one line, exit 2."""
    from sihnet.atomic import strict_json
    from sihnet.inference.predict import run_predict
    from sihnet.outputs import check_output_file, starts_with

    check_bundle_root(bundle_root)
    if not image:
        _refuse(SihnetError("give the image: --image IMAGE.nii.gz"))
    try:
        records = run_predict(Path(bundle_root), [Path(image)], InferenceConfig(device=device))
    except SihnetError as error:
        _refuse(error)
    if "error" in records[0]:
        _refuse(SihnetError(records[0]["error"]))
    target = Path(output_dir) / "predictions.json"
    try:  # the checks every sihnet writer makes: never into a model or run, never over a user's file
        check_output_file(target, "bundle", earlier=starts_with('"notice": "research use only'))
        write_text_atomic(target, strict_json(records[0]) + "\n")
    except SihnetError as error:
        _refuse(error)
    except OSError as error:
        _refuse(SihnetError(f"cannot write predictions.json in --output_dir: {error.strerror}"))
    return target
