"""The MONAI bundle files of an exported model, in MONAI's own layout::

    MODEL_DIR/configs/metadata.json    MONAI's bundle metadata (its schema's keys)
    MODEL_DIR/configs/inference.json   the runnable config: sihnet's preprocessing and the ensemble
    MODEL_DIR/configs/logging.conf     MONAI's runner's logging: its input summary (which names the
                                       --image path, often a folder named after the patient) is not logged
    MODEL_DIR/models/fold_K.safetensors  the weights (safetensors: no pickle to run)
    MODEL_DIR/docs/README.md           the model card
    MODEL_DIR/LICENSE

The network (config id ``network_def``) is :class:`sihnet.inference.bundle.EnsembleNetwork`: the
model-input canvas in, the fold models' mean class probabilities out (a softmax: probabilities of
two classes, not logits). sihnet is a listed requirement: the preprocessing (MNI152 alignment,
canvases, intensity scaling) is its own code, referenced by ``_target_``.
"""

from __future__ import annotations

import os
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from sihnet.atomic import write_json_atomic, write_text_atomic
from sihnet.config import ExperimentConfig
from sihnet.paths import RunPaths

NOTICE = "research use only; not a medical device; not for clinical decisions"
LICENSE_TEXT = """sihnet model weights and configuration

Licensed under the Apache License, Version 2.0 (the "License"); you may not use these files except
in compliance with the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the License
is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or
implied. See the License for the specific language governing permissions and limitations under the
License.

Research use only: not a medical device, not for clinical decisions.
"""


def _input(name: str, spacing: float, size: tuple[int, ...], note: str) -> dict[str, Any]:
    return {
        "type": "image",
        "format": "magnitude",
        "modality": "MR",
        "num_channels": 1,
        "spatial_shape": list(size),
        "dtype": "float32",
        "value_range": [0, 1],
        "is_patch_data": False,
        "channel_def": {"0": f"contrast-enhanced T1 ({name}), {spacing} mm canvas, {note}"},
    }


def metadata(config: ExperimentConfig, model_sha256: str) -> dict[str, Any]:
    """``configs/metadata.json`` for MONAI's bundle schema."""
    import monai
    import torch

    prep = config.preprocessing
    where = "aligned to MNI152" if prep.align == "mni152" else "centred on the field of view"
    scale = f"{where}; the head's {prep.upper_percentile}th percentile = 1"
    inputs = {"image": _input("whole head", prep.spacing_mm, prep.size, scale)}
    for view in prep.views:
        inputs[view.name] = _input(view.name, view.spacing_mm, view.size, scale)
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": version("sihnet"),
        "changelog": {version("sihnet"): "exported by sihnet"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {
            "sihnet": version("sihnet"),
            "nibabel": version("nibabel"),
            "safetensors": version("safetensors"),
            "SimpleITK": version("SimpleITK"),
        },
        "name": "sihnet fold ensemble",
        "task": "Classification of a spinal CSF-venous fistula from one brain contrast-enhanced T1 MRI",
        "description": "Fold ensemble of MONAI DenseNet-121 (3D, 1 channel, 2 classes), SIHnet (AJNR 2024)",
        "authors": "sihnet",
        "copyright": "Apache-2.0; " + NOTICE,
        "intended_use": NOTICE,
        "model_sha256": model_sha256,
        "network_data_format": {
            "inputs": inputs,
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classes",
                    "num_channels": 2,
                    "spatial_shape": [2],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_onehot": False,
                    "channel_def": {"0": "no CSF-venous fistula", "1": "CSF-venous fistula"},
                }
            },
        },
    }


# The bundle logging config MONAI's runner applies by default (``configs/logging.conf``). It logs at
# INFO as the model zoo's bundles do, except ``monai.bundle.scripts``, whose input summary lists every
# argument given on the command line: ``--image`` is a path, and a DICOM folder is often named after the
# patient, which sihnet writes nowhere.
LOGGING_CONF = """[loggers]
keys=root,summary

[handlers]
keys=console

[formatters]
keys=plain

[logger_root]
level=INFO
handlers=console

[logger_summary]
level=WARNING
handlers=console
propagate=0
qualname=monai.bundle.scripts

[handler_console]
class=StreamHandler
level=INFO
formatter=plain
args=(sys.stdout,)

[formatter_plain]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def inference_config() -> dict[str, Any]:
    """``configs/inference.json``: config ids ``image`` and ``output_dir`` set on the command line."""
    module = "sihnet.inference.bundle"
    return {
        "imports": [f"$import {module} as sihnet_bundle"],
        "bundle_root": "$sihnet_bundle.bundle_root()",
        "image": "",
        "output_dir": "$@bundle_root + '/eval'",
        "device": "cpu",
        "network_def": {
            "_target_": f"{module}.EnsembleNetwork",
            "bundle_root": "@bundle_root",
            "device": "@device",
        },
        "network": "@network_def",
        "run": ["$sihnet_bundle.predict_to(@bundle_root, @image, @output_dir, @device)"],
    }


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link (one copy on disk), or a copy where the file system has none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_bundle_files(folder: Path, folds: list[int]) -> None:
    """``models/``, ``configs/inference.json`` and ``LICENSE`` (the metadata and the model card are
    written once the model's identity is known)."""
    paths = RunPaths(folder)
    for k in folds:
        link_or_copy(paths.best_weights(k), paths.exported_weights(k))
    write_json_atomic(paths.bundle_inference_config, inference_config())
    write_text_atomic(paths.bundle_logging_config, LOGGING_CONF)
    write_text_atomic(folder / "LICENSE", LICENSE_TEXT)


def write_metadata(folder: Path, config: ExperimentConfig, model_sha256: str) -> None:
    write_json_atomic(RunPaths(folder).bundle_metadata, metadata(config, model_sha256))
