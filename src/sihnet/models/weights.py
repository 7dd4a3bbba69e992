"""Model weights as safetensors (no pickle), with a SHA-256 to detect tampering."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sihnet.atomic import write_atomic
from sihnet.errors import SihnetError
from sihnet.hashing import file_sha256


def save_weights(model: torch.nn.Module, path: Path) -> str:
    """Write the model's state dict as safetensors, atomically; the same weights give the same
    bytes (no metadata: safetensors writes a metadata map in no fixed order).

    Returns:
        The SHA-256 of the written file.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    write_atomic(Path(path), lambda temp: save_file(state, str(temp)))
    return file_sha256(Path(path))


def load_weights(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors state dict; never unpickles.

    Args:
        path: a ``.safetensors`` file.
        expected_sha256: when given, the file must hash to it (else it was changed or replaced).

    Raises:
        SihnetError: not a safetensors file (e.g. a pickle), damaged, or the hash differs.
    """
    path = Path(path)
    if not path.is_file():
        raise SihnetError(f"weights {path.name} not found")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise SihnetError(
            f"weights {path.name} do not match the SHA-256 recorded in the run (changed?)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise SihnetError(
            f"weights {path.name} are not a valid safetensors file ({error})"
        ) from None
