import pickle
from pathlib import Path

import pytest
import torch

from sihnet.errors import SihnetError
from sihnet.models.weights import load_weights, save_weights


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)


def test_round_trip_and_hash(tmp_path: Path) -> None:
    model = Tiny()
    digest = save_weights(model, tmp_path / "w.safetensors")
    state = load_weights(tmp_path / "w.safetensors", expected_sha256=digest)
    torch.testing.assert_close(state["layer.weight"], model.layer.weight.detach())


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    digest = save_weights(Tiny(), tmp_path / "w.safetensors")
    data = bytearray((tmp_path / "w.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "w.safetensors").write_bytes(bytes(data))
    with pytest.raises(SihnetError, match="SHA-256"):
        load_weights(tmp_path / "w.safetensors", expected_sha256=digest)


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch SENTINEL_FILE",))


def test_a_pickle_is_refused_and_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(SihnetError, match="not a valid safetensors"):
        load_weights(tmp_path / "w.safetensors")
    assert not (tmp_path / "SENTINEL_FILE").exists()


def test_the_same_weights_give_the_same_bytes(tmp_path: Path) -> None:
    model = Tiny()
    assert save_weights(model, tmp_path / "a.safetensors") == save_weights(
        model, tmp_path / "b.safetensors"
    )
