"""Resume state of a fold (``fold_K/last.pt``) and graceful interruption.

The state holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: a pickle that would run code is refused, never executed.
It carries everything a resumed fold needs to continue bit-for-bit on the CPU: model, optimiser,
scheduler (and fp16 loss scaler), epoch, history, best-so-far trackers, every process's RNG states
(torch, CUDA, every MONAI random transform; the data order follows from the seed and the epoch),
the number of processes, and fingerprints of the configuration, manifest, splits and images it
was started with.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

from sihnet.atomic import write_atomic
from sihnet.errors import SihnetError


class _StopRequest:
    signal_number: int | None = None


_STOP = _StopRequest()


def stop_requested() -> int | None:
    """The signal that asked to stop, or None."""
    return _STOP.signal_number


@contextlib.contextmanager
def graceful_interrupt() -> Iterator[None]:
    """While inside, SIGINT/SIGTERM only *request* a stop (the loop ends after its current step);
    a second signal interrupts at once."""

    def handler(number: int, frame: FrameType | None) -> None:
        if _STOP.signal_number is not None:
            raise KeyboardInterrupt
        _STOP.signal_number = number

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _STOP.signal_number = None
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
        _STOP.signal_number = None


def _numpy_state(random_state: np.random.RandomState) -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = random_state.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(position),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _restore_numpy_state(random_state: np.random.RandomState, state: dict[str, Any]) -> None:
    random_state.set_state(
        (
            state["kind"],
            state["keys"].numpy().astype(np.uint32),
            state["pos"],
            state["has_gauss"],
            state["cached"],
        )
    )


def _random_states(transforms: Any) -> list[np.random.RandomState]:
    """The numpy RandomState of every MONAI random transform, including nested ones
    (``RandAffine`` draws from its own ``RandAffineGrid``)."""
    from monai.transforms import Randomizable

    states: list[np.random.RandomState] = []
    if isinstance(transforms, tuple | list):  # one chain per view
        for chain in transforms:
            states += [s for s in _random_states(chain) if all(s is not t for t in states)]
        return states
    for transform in getattr(transforms, "transforms", []) if transforms is not None else []:
        for part in (transform, *vars(transform).values()):
            if isinstance(part, Randomizable) and all(part.R is not s for s in states):
                states.append(part.R)
    return states


def capture_rng(transforms: Any) -> dict[str, Any]:
    """Every random state this process's training draws from (the data order is a function of
    the seed and the epoch: :class:`~sihnet.training.distributed.EpochPermutation`)."""
    randoms = _random_states(transforms)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "transforms": [_numpy_state(r) for r in randoms],
    }


def restore_rng(state: dict[str, Any], transforms: Any) -> None:
    """Put back what :func:`capture_rng` took."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    randoms = _random_states(transforms)
    for random_state, saved in zip(randoms, state["transforms"], strict=True):
        _restore_numpy_state(random_state, saved)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state atomically (the previous file stays loadable until the rename)."""
    write_atomic(path, lambda temp: torch.save(state, temp))


def load_state(path: Path) -> dict[str, Any]:
    """Read a resume state with ``weights_only=True``; anything else is refused with one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SihnetError(
            f"{Path(path).parent.name}/{Path(path).name} is not a safe sihnet resume state ({first[:120]})"
        ) from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise SihnetError(
            f"{Path(path).parent.name}/{Path(path).name} is not a sihnet resume state"
        )
    return state


def check_fingerprints(state: dict[str, Any], fingerprints: dict[str, str], fold: int) -> None:
    """A resumed fold must have been started with the same configuration, manifest, splits and
    image contents (an image replaced before resuming is refused)."""
    for key, what in (
        ("config", "configuration"),
        ("manifest", "manifest"),
        ("splits", "splits"),
        ("images", "content of an image"),
    ):
        stored = state.get("fingerprints", {})
        if key == "images" and key not in stored:
            continue  # a resume state written before image contents were recorded
        accepted = {fingerprints.get(key)}
        if key == "config":  # a state of an older version holds the file's bytes' hash
            accepted.add(fingerprints.get("config_file"))
        if stored.get(key) not in accepted:
            raise SihnetError(f"cannot resume fold {fold}: the {what} changed since it was started")
