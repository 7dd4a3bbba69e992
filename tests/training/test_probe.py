"""``precision: auto`` and ``channels_last: auto`` decided by measurement, and the fp32 fallback of
a fold whose reduced-precision steps go non-finite."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import torch

from sihnet.inference import Inference
from sihnet.training import probe as probe_module
from sihnet.training.probe import kernel_defect, probe
from sihnet.training.step import Batch, StepSettings


class TinyNet(torch.nn.Module):
    """A small 3D classifier standing in for DenseNet (same input and output shapes). Under
    ``flip_under_autocast`` its output changes sign in autocast (a wrong reduced-precision
    kernel); ``slow_fp32`` sleeps outside autocast (reduced precision is then faster),
    ``slow_reduced`` inside it (then slower, whatever the machine's load);
    ``nan_after`` makes autocast outputs NaN after that many calls in autocast."""

    def __init__(
        self, flip_under_autocast: bool = False, slow_fp32: float = 0.0, slow_reduced: float = 0.0
    ) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm3d(4)
        self.out = torch.nn.Linear(4, 2)
        self.flip, self.slow, self.slow_reduced = flip_under_autocast, slow_fp32, slow_reduced
        self.nan_after: int | None = None
        self.autocast_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = torch.is_autocast_enabled(x.device.type)
        if self.slow and not reduced:
            time.sleep(self.slow)
        if self.slow_reduced and reduced:
            time.sleep(self.slow_reduced)
        logits = self.out(torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3, 4)))
        if reduced and self.flip:
            logits = -logits
        if reduced and self.training:
            self.autocast_calls += 1
            if self.nan_after is not None and self.autocast_calls > self.nan_after:
                logits = logits * float("nan")
        return logits


def _batch() -> Batch:
    images = torch.rand(4, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    return Batch(images, torch.tensor([0, 1, 0, 1]))


@pytest.fixture()
def bf16_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe bf16 on this CPU whatever it computes natively (the decision logic is under test)."""
    monkeypatch.setattr(probe_module, "candidate_precision", lambda device: "bf16")


def test_the_probe_keeps_fp32_where_bf16_gradients_disagree(bf16_candidate: None) -> None:
    network = TinyNet(flip_under_autocast=True, slow_fp32=0.05)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    result = probe(network, _batch(), StepSettings(), torch.device("cpu"), "auto", False)
    assert result.precision == "fp32" and "disagrees" in result.reason
    assert result.gradient_cosine is not None and result.gradient_cosine < 0.99
    assert set(result.seconds) == {"fp32", "bf16"}
    for name, value in network.state_dict().items():  # weights and batch-norm statistics kept
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_the_probe_takes_bf16_where_it_agrees_and_is_faster(bf16_candidate: None) -> None:
    result = probe(
        TinyNet(slow_fp32=0.05), _batch(), StepSettings(), torch.device("cpu"), "auto", False
    )
    assert result.precision == "bf16", result.reason
    assert result.gradient_cosine is not None and result.gradient_cosine >= 0.99
    assert result.seconds["fp32"] > 1.1 * result.seconds["bf16"]


def test_the_probe_refuses_bf16_that_is_not_faster_or_not_finite(bf16_candidate: None) -> None:
    # bf16 made slower by a sleep: a tiny net's own timings are noise, and on a loaded machine
    # bf16 once came out faster (a fresh-clone make test, December 2026)
    slow = probe(
        TinyNet(slow_reduced=0.05), _batch(), StepSettings(), torch.device("cpu"), "auto", False
    )
    assert slow.precision == "fp32" and "not faster" in slow.reason
    broken = TinyNet(slow_fp32=0.05)
    broken.nan_after = 0
    nan = probe(broken, _batch(), StepSettings(), torch.device("cpu"), "auto", False)
    assert nan.precision == "fp32" and "non-finite" in nan.reason


def test_without_native_bf16_the_cpu_is_not_probed_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "bf16_native", lambda device: False)
    result = probe(TinyNet(), _batch(), StepSettings(), torch.device("cpu"), "auto", "auto")
    assert result.precision == "fp32" and "not native" in result.reason
    assert set(result.seconds) == {"fp32", "fp32+channels_last"}  # the memory format is measured


class _TripledGradient(torch.autograd.Function):
    """Identity forward; the gradient three times too large (a wrong kernel)."""

    @staticmethod
    def forward(ctx: object, weight: torch.Tensor) -> torch.Tensor:
        return weight.clone()

    @staticmethod
    def backward(ctx: object, gradient: torch.Tensor) -> torch.Tensor:
        return 3 * gradient


@pytest.fixture()
def wrong_at_depth_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Conv3d's weight gradient wrong in autocast when its input has depth 2 (the shape of
    oneDNN's native-bf16 defect), right otherwise."""
    original = torch.nn.Conv3d.forward

    def forward(self: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type) and x.shape[2] == 2:
            return self._conv_forward(x, _TripledGradient.apply(self.weight), self.bias)
        return original(self, x)

    monkeypatch.setattr(torch.nn.Conv3d, "forward", forward)


def test_a_wrong_convolution_kernel_is_found_at_the_shape_it_is_wrong(
    wrong_at_depth_two: None,
) -> None:
    bf16 = Inference(torch.device("cpu"), "bf16")
    network = TinyNet()
    assert kernel_defect(network, torch.rand(2, 1, 8, 8, 8), bf16) is None  # sound at 8x8x8
    defect = kernel_defect(network, torch.rand(2, 1, 2, 4, 4), bf16)
    assert defect is not None and "2x4x4" in defect and "3x3x3" in defect, defect
    assert kernel_defect(network, torch.rand(2, 1, 2, 4, 4), Inference(bf16.device, "fp32")) is None
    # the probe never chooses a precision whose kernels are wrong, however fast it is
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as patch:
        patch.setattr(probe_module, "candidate_precision", lambda device: "bf16")
        batch = Batch(torch.rand(4, 1, 2, 4, 4), torch.tensor([0, 1, 0, 1]))
        result = probe(TinyNet(slow_fp32=0.05), batch, StepSettings(), bf16.device, "auto", False)
    assert result.precision == "fp32" and "weight gradients are wrong" in result.reason


def _tiny_fold(
    tmp_path: Path, precision: str, epochs: int, channels_last: bool | str = False
) -> Path:
    from sihnet.config import load_config
    from sihnet.paths import RunPaths
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.training.fold import FoldData, train_fold
    from sihnet.training.precision import PrecisionPolicy
    from sihnet.training.samples import Samples
    from tests.helpers import brain_like, tiny_config, write_nifti

    overrides = tiny_config(
        training={"precision": precision, "epochs": epochs, "channels_last": channels_last}
    )
    config = load_config("quick", overrides=overrides)
    cache = VolumeCache(tmp_path / "cache")
    entries = [
        cache.get(write_nifti(tmp_path / f"{i}.nii.gz", brain_like(seed=i)), config.preprocessing)
        for i in range(8)
    ]
    samples = Samples([f"p{i}" for i in range(8)], entries, [0, 1] * 4)
    paths = RunPaths(tmp_path / "run")
    policy = PrecisionPolicy(tmp_path / "precision_decisions.json")  # this test's decisions only
    train_fold(0, FoldData(samples, None, samples), config, paths, policy=policy)
    return paths.fold_summary(0)


def test_a_fold_whose_bf16_steps_go_non_finite_finishes_in_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sihnet.training import state as state_module

    network = TinyNet()
    network.nan_after = 2  # epoch 1 (two steps of four scans) is fine, epoch 2 goes non-finite
    monkeypatch.setattr(state_module, "build_model", lambda *args: network)
    with caplog.at_level(logging.WARNING):
        summary = json.loads(_tiny_fold(tmp_path, "bf16", epochs=3).read_text())
    assert summary["precision"] == "fp32"
    fallback = summary["precision_fallback"]
    assert fallback["from"] == "bf16" and fallback["to"] == "fp32" and fallback["epoch"] == 1
    assert any("continuing in fp32 from the last good epoch" in r.message for r in caplog.records)
    history = (tmp_path / "run" / "fold_0" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3  # every epoch recorded once


def test_a_configured_bf16_with_wrong_kernels_trains_in_fp32_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sihnet.training import precision as precision_module

    reason = "bf16 3x3x3 convolution weight gradients are wrong on this cpu at a 2x2x2 feature map"
    monkeypatch.setattr(precision_module, "kernel_defect", lambda *args: reason)
    with caplog.at_level(logging.WARNING):
        summary = json.loads(_tiny_fold(tmp_path, "bf16", epochs=1).read_text())
    assert summary["precision"] == "fp32"
    assert summary["precision_fallback"] == {
        "from": "bf16", "to": "fp32", "epoch": 0, "reason": reason
    }  # fmt: skip
    assert any("bf16 as configured, but" in r.message for r in caplog.records)


def test_an_fp32_fold_that_keeps_skipping_steps_stops_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sihnet.errors import SihnetError
    from sihnet.training import state as state_module

    class NanNet(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * float("nan")

    monkeypatch.setattr(state_module, "build_model", lambda *args: NanNet())
    with pytest.raises(SihnetError, match=r"2 of 2 steps had non-finite gradients .*even in fp32"):
        _tiny_fold(tmp_path, "fp32", epochs=1)


def test_auto_writes_the_probe_into_the_fold_summary(tmp_path: Path) -> None:
    summary = json.loads(_tiny_fold(tmp_path, "auto", epochs=1, channels_last="auto").read_text())
    probed = summary["precision_probe"]
    assert probed["precision"] == summary["precision"] and probed["reason"]
    assert "fp32+channels_last" in probed["seconds"] or "bf16+channels_last" in probed["seconds"]
    assert summary["channels_last"] == probed["channels_last"]


def test_a_decision_is_measured_once_per_machine_and_job_whatever_the_load(
    bf16_candidate: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 31 row 19: the same machine and job train with the same choice when the machine's
    load has changed the timings; another job, or a damaged store, is measured again."""
    from sihnet.training import precision as module
    from sihnet.training.precision import decide

    monkeypatch.setattr(module, "machine_load", lambda: 0.0)  # measured on a quiet machine

    store, job = tmp_path / "precision_decisions.json", {"shapes": [[4, 1, 8, 8, 8]]}
    quiet = decide(TinyNet(slow_fp32=0.05), _batch(), StepSettings(), torch.device("cpu"),
                   "auto", False, job, store)  # fmt: skip
    assert quiet.precision == "bf16" and not quiet.reused and quiet.measured_at
    # now the probe would keep fp32 (bf16's gradient disagrees: not a timing, so never flaky)
    loaded = TinyNet(flip_under_autocast=True)
    again = decide(loaded, _batch(), StepSettings(), torch.device("cpu"), "auto", False, job, store)
    assert again.reused and again.precision == "bf16" and again.measured_at == quiet.measured_at
    other = decide(loaded, _batch(), StepSettings(), torch.device("cpu"), "auto", False,
                   {**job, "bern": True}, store)  # fmt: skip
    assert not other.reused and other.precision == "fp32"
    store.write_text("{not json")
    damaged = decide(
        loaded, _batch(), StepSettings(), torch.device("cpu"), "auto", False, job, store
    )
    assert not damaged.reused and damaged.precision == "fp32"
    assert json.loads(store.read_text())  # written again, whole


def test_a_decision_measured_on_a_busy_machine_is_not_kept(
    bf16_candidate: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 37 row 6: a timing taken beside another job serves its run but is not frozen for
    the machine (channels_last "4.16x faster" under load was 0.98x quiet)."""
    from sihnet.training import precision as module

    store, job = tmp_path / "precision_decisions.json", {"shapes": [[4, 1, 8, 8, 8]]}
    monkeypatch.setattr(module, "machine_load", lambda: 1.5)
    busy = module.decide(TinyNet(slow_fp32=0.05), _batch(), StepSettings(),
                         torch.device("cpu"), "auto", False, job, store)  # fmt: skip
    assert busy.precision == "bf16" and not store.exists()


def test_an_edited_decision_is_measured_again(
    bf16_candidate: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 37 row 6: a kept decision edited to claim bf16 against its own recorded
    measurement (bf16's gradient disagreed with fp32's) is not trusted."""
    from sihnet.training import precision as module

    monkeypatch.setattr(module, "machine_load", lambda: 0.0)
    store, job = tmp_path / "precision_decisions.json", {"shapes": [[4, 1, 8, 8, 8]]}
    disagreeing = TinyNet(flip_under_autocast=True)  # bf16's gradient is not fp32's
    kept = module.decide(disagreeing, _batch(), StepSettings(), torch.device("cpu"), "auto",
                         False, job, store)  # fmt: skip
    assert kept.precision == "fp32"
    decisions = json.loads(store.read_text())
    for value in decisions.values():
        value["precision"] = "bf16"
    store.write_text(json.dumps(decisions))
    again = module.decide(disagreeing, _batch(), StepSettings(), torch.device("cpu"), "auto",
                          False, job, store)  # fmt: skip
    assert not again.reused and again.precision == "fp32"
