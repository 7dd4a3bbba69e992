"""``sihnet export … --onnx``: each fold's network as ``onnx/fold_K.onnx`` for onnxruntime or Triton.

The graph takes the model-input canvas (``image``: N × 1 × X × Y × Z float32, and one input per
view, named after it) with a dynamic batch, and returns ``logits`` (N × 2) and, for models with the
Bern heads, ``bern`` (N × 6, raw: sign logits, standardised distances). Opset 17. PyTorch's
TorchScript-based exporter is used (``dynamo=False``): it writes DenseNet-121 in seconds where the
``torch.export``-based one took half a minute per fold here; both give the same graph to 1e-7.
The preprocessing stays sihnet's: :func:`onnx_inputs` gives a scan's inputs as ``predict`` makes
them (aligned to MNI152 where the model is, one array per view), after checking the model folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from sihnet.config import ExperimentConfig
from sihnet.errors import SihnetError

OPSET = 17


def input_names(config: ExperimentConfig) -> list[str]:
    return ["image", *(view.name for view in config.preprocessing.views)]


def onnx_inputs(
    model: str | Path, image: str | Path, cache: str | Path | None = None
) -> dict[str, np.ndarray]:
    """The ONNX graphs' inputs for one scan, as ``sihnet predict`` makes them.

    Args:
        model: an exported model folder (checked against its ``model.json`` first) or a run.
        image: a NIfTI file or a DICOM folder.
        cache: the preprocessed-volume cache [default: ``$SIHNET_CACHE_DIR`` or ~/.cache/sihnet].

    Returns:
        ``{"image": (1, 1, X, Y, Z) float32, VIEW: (1, 1, ...) float32 per view}``, named as the
        graphs' inputs.

    Raises:
        SihnetError: the model folder fails its checks, or the scan cannot be read or aligned.
    """
    from sihnet.inference.ensemble import FoldEnsemble
    from sihnet.ingest.resolve import convert_dicom_inputs
    from sihnet.preprocessing.cache import VolumeCache, read_cached

    config = FoldEnsemble.load(Path(model)).config
    volumes = VolumeCache.open(None if cache is None else Path(cache))
    convert_dicom_inputs([Path(image)], volumes)
    prepared = read_cached(volumes.get(Path(image), config.preprocessing))
    parts = prepared.model_input()
    arrays = parts if isinstance(parts, tuple) else (parts,)
    names = input_names(config)
    return {n: np.asarray(a, np.float32)[None] for n, a in zip(names, arrays, strict=True)}


def measured_fusion(
    model: str | Path,
    image: str | Path,
    network: float,
    fold: int = 0,
    cache: str | Path | None = None,
) -> float:
    """A fold's probability as ``sihnet predict`` gives it, from its network's: fused with the
    fold's model of the automatic reader's measures (``fold_K/measured_model.json``) when the
    model has one, else the network's unchanged.

    Args:
        model: an exported model folder or a run; ``image`` the scan the network scored.
        network: the fold network's fistula probability (the ONNX graph's softmax).

    Raises:
        SihnetError: the model folder fails its checks, or the scan cannot be read.
    """
    from sihnet.inference.ensemble import FoldEnsemble
    from sihnet.inference.predict import measured_record
    from sihnet.ingest.resolve import convert_dicom_inputs
    from sihnet.preprocessing.cache import VolumeCache

    ensemble = FoldEnsemble.load(Path(model))
    if not ensemble.measured:
        return float(network)
    volumes = VolumeCache.open(None if cache is None else Path(cache))
    convert_dicom_inputs([Path(image)], volumes)
    features = measured_record(Path(image), volumes, []).get("features", {})
    return ensemble.fused({fold: float(network)}, features)["probability"][fold]


def export_fold(network: torch.nn.Module, config: ExperimentConfig, target: Path) -> None:
    """Write one fold's network (eval mode, CPU, fp32) to ``target``.

    Raises:
        SihnetError: the ``onnx`` package is missing.
    """
    try:
        import onnx
    except ImportError:
        raise SihnetError("--onnx needs the onnx package: pip install 'sihnet[onnx]'") from None
    from sihnet.models.bern_heads import has_heads

    prep = config.preprocessing
    shapes = [prep.size, *(view.size for view in prep.views)]
    example = tuple(torch.zeros(1, 1, *size) for size in shapes)
    names = input_names(config)
    outputs = ["logits", "bern"] if has_heads(network) else ["logits"]
    arguments = (example,) if prep.views else example
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice
        torch.onnx.export(
            network.eval().cpu(), arguments, str(target), input_names=names, output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [*names, *outputs]},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    onnx.checker.check_model(str(target))
