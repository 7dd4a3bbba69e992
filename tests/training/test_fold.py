import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from sihnet.config import AugmentationConfig
from sihnet.data.patients import auroc_or_nan
from sihnet.training.augmentation import augment_batch, build_augmentation
from sihnet.training.samples import Samples, class_weights, patient_level


def test_class_weights_are_inverse_class_ratios() -> None:
    weights = class_weights([0] * 30 + [1] * 10)
    np.testing.assert_allclose(weights.numpy(), [40 / 60, 40 / 20])
    # Balanced classes weigh equally.
    np.testing.assert_allclose(class_weights([0, 1, 0, 1]).numpy(), [1.0, 1.0])


def test_patient_level_averages_scans() -> None:
    samples = Samples(["a", "a", "b"], [Path("x"), Path("y"), Path("z")], [1, 1, 0])
    patients, labels, probabilities = patient_level(samples, np.array([0.2, 0.6, 0.3]))
    assert patients == ["a", "b"]
    np.testing.assert_allclose(probabilities, [0.4, 0.3])
    np.testing.assert_array_equal(labels, [1, 0])


def test_auroc_is_nan_with_one_class() -> None:
    assert np.isnan(auroc_or_nan(np.array([1, 1]), np.array([0.1, 0.2])))
    assert auroc_or_nan(np.array([0, 1]), np.array([0.1, 0.2])) == 1.0


@pytest.mark.parametrize("enabled", [True, False])
def test_augmentation_keeps_shape_and_is_seeded(enabled: bool) -> None:
    config = AugmentationConfig(
        enabled=enabled,
        affine_prob=1.0,
        noise_prob=1.0,
        bias_field_prob=1.0,
        histogram_shift_prob=1.0,
    )
    images = torch.rand(2, 1, 16, 20, 24)
    first = augment_batch(images, build_augmentation(config, spacing_mm=4.0, seed=1))
    second = augment_batch(images, build_augmentation(config, spacing_mm=4.0, seed=1))
    assert first.shape == images.shape and type(first) is torch.Tensor
    torch.testing.assert_close(first, second)
    assert (not torch.equal(first, images)) == enabled


class NanModel(torch.nn.Module):
    """Stands in for DenseNet: its logits (and so its gradients) are NaN."""

    def __init__(
        self, activation_checkpointing: bool = False, bern_heads: bool = False, views: object = ()
    ) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.full((images.shape[0], 2), float("nan"))


def test_non_finite_gradients_never_reach_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sihnet.config import load_config
    from sihnet.errors import SihnetError
    from sihnet.paths import RunPaths
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.training import fold as fold_module
    from sihnet.training import state as state_module
    from tests.helpers import TINY_CONFIG, brain_like, write_nifti

    config = load_config("quick", overrides=TINY_CONFIG)
    cache = VolumeCache(tmp_path / "cache")
    entries = [
        cache.get(write_nifti(tmp_path / f"{i}.nii.gz", brain_like(seed=i)), config.preprocessing)
        for i in range(4)
    ]
    samples = Samples(["a", "b", "c", "d"], entries, [0, 1, 0, 1])
    monkeypatch.setattr(state_module, "build_model", NanModel)
    with pytest.raises(SihnetError, match="non-finite gradients"):
        data = fold_module.FoldData(samples, None, samples)
        fold_module.train_fold(0, data, config, RunPaths(tmp_path / "run"))


def test_one_cycle_rises_to_the_learning_rate_then_falls_and_resumes() -> None:
    from sihnet.config import load_config
    from sihnet.training.state import build_scheduler

    settings = load_config(
        "quick",
        overrides={"training": {"schedule": "one_cycle", "epochs": 10, "learning_rate": 2e-3}},
    ).training

    def rates(
        scheduler: torch.optim.lr_scheduler.LRScheduler, optimizer: torch.optim.Optimizer, n: int
    ) -> list[float]:
        out = []
        for _ in range(n):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=settings.learning_rate)
    scheduler = build_scheduler(optimizer, settings)
    first = rates(scheduler, optimizer, 4)
    saved, saved_optimizer = scheduler.state_dict(), optimizer.state_dict()
    rest = rates(scheduler, optimizer, 6)
    lr = first + rest
    assert max(lr) == pytest.approx(2e-3, rel=0.05) and lr[0] < 2e-4 and 0 < lr[-1] < 2e-4
    assert lr.index(max(lr)) in (2, 3) and all(a >= b for a, b in itertools.pairwise(lr[3:]))
    resumed_optimizer = torch.optim.AdamW(
        [torch.nn.Parameter(torch.zeros(1))], lr=settings.learning_rate
    )
    resumed = build_scheduler(resumed_optimizer, settings)
    resumed_optimizer.load_state_dict(saved_optimizer)
    resumed.load_state_dict(saved)
    assert rates(resumed, resumed_optimizer, 6) == pytest.approx(rest)
