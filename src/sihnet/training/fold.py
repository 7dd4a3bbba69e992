"""Train one cross-validation fold: the paper's optimiser, schedule, loss and checkpoint selection."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from sihnet.config import ExperimentConfig
from sihnet.data.patients import auroc_or_nan
from sihnet.errors import SihnetError, TrainingInterrupted
from sihnet.inference import Inference, resolve_device
from sihnet.models.weights import save_weights
from sihnet.paths import RunPaths
from sihnet.training.augmentation import augment_batch
from sihnet.training.checkpoint import check_fingerprints, load_state, save_state, stop_requested
from sihnet.training.dataset import CachedVolumeDataset
from sihnet.training.distributed import (
    EpochPermutation,
    World,
    agree_on_stop,
    barrier,
    device_for,
    gather_scores,
    shard,
)
from sihnet.training.precision import PrecisionPolicy
from sihnet.training.records import (
    FoldSummary,
    epoch_bar,
    fold_summary,
    write_fold_outputs,
    write_history,
)
from sihnet.training.samples import (
    FoldData,
    Loaders,
    Samples,
    class_weights,
    first_batch,
    fold_loaders,
    has_bern,
    patient_level,
    to_batch,
)
from sihnet.training.state import FoldState
from sihnet.training.step import train_step

log = logging.getLogger(__name__)

# A run never skips more than this share of an epoch's steps for non-finite gradients: beyond it
# a reduced-precision fold falls back to fp32, and an fp32 fold stops with an error. In bf16 a
# single non-finite step already falls back (bf16 has fp32's range: its kernels are failing).
MAX_SKIPPED_SHARE = 0.10


class NonFiniteStepsError(Exception):
    """Too many steps of an epoch had non-finite gradients in a reduced precision."""


def train_epoch(
    state: FoldState, loader: DataLoader[tuple[torch.Tensor, int]], where: str
) -> float:
    """One pass over this rank's share of the training data; returns the mean loss of the
    global batches stepped.

    Raises:
        NonFiniteStepsError: a bf16 step, or more than ``MAX_SKIPPED_SHARE`` of fp16 steps, had a
            non-finite gradient (the caller falls back to fp32).
        SihnetError: more than ``MAX_SKIPPED_SHARE`` of fp32 steps had one.
        TrainingInterrupted: after the current step, when SIGINT/SIGTERM asked any rank to stop.
    """
    state.model.train()
    losses, skipped, device = [], 0, state.inference.device
    precision = state.inference.precision
    for items in loader:
        batch = to_batch(items, device)
        batch = dataclasses.replace(batch, images=augment_batch(batch.images, state.augmentation))
        value = train_step(
            state.model, state.network, state.optimizer, state.scaler, batch, state.step,
            state.inference, state.world,
        )  # fmt: skip
        if value is None:
            skipped += 1
            if precision == "bf16":
                raise NonFiniteStepsError("a step had non-finite gradients")
        else:
            losses.append(value)
        signal_number = agree_on_stop(stop_requested(), state.world, device)
        if signal_number is not None:
            raise TrainingInterrupted(signal_number)
    steps = skipped + len(losses)
    if skipped > MAX_SKIPPED_SHARE * steps:
        message = f"{skipped} of {steps} steps had non-finite gradients"
        if precision != "fp32":
            raise NonFiniteStepsError(message)
        raise SihnetError(
            f"{where}: {message} (more than {MAX_SKIPPED_SHARE:.0%}) even in fp32; "
            "check the images and the learning rate"
        )
    if skipped:
        log.warning("%s: %d of %d step(s) skipped for non-finite gradients", where, skipped, steps)
        state.skipped_steps += skipped
    return float(np.mean(losses))


def score(
    state: FoldState, samples: Samples, data: CachedVolumeDataset
) -> tuple[np.ndarray, float]:
    """Patient-level probabilities (first-seen patient order) and their AUROC. Each rank scores
    its share of the scans; the scores are gathered so that every scan counts once."""
    indices = shard(len(data), state.world)
    mine = state.inference.probabilities(state.network, (data[i][0] for i in indices))
    scans = gather_scores(indices, mine, len(data), state.world)
    _, labels, probabilities = patient_level(samples, scans)
    return probabilities, auroc_or_nan(labels, probabilities)


def run_epoch(
    state: FoldState,
    data: FoldData,
    loaders: Loaders,
    where: str,
) -> tuple[dict[str, float], np.ndarray]:
    """Train one epoch, score the validation (and inner validation) patients: one history record."""
    tick, epoch = time.perf_counter(), state.next_epoch
    loader, validation, inner = loaders
    sampler = loader.sampler
    if isinstance(sampler, EpochPermutation):
        sampler.set_epoch(epoch)
    lr = state.optimizer.param_groups[0]["lr"]
    loss = train_epoch(state, loader, where)
    state.scheduler.step()
    probabilities, val_auroc = score(state, data.validation, validation)
    inner_auroc = float("nan")
    if inner is not None and data.inner_validation is not None:
        inner_auroc = score(state, data.inner_validation, inner)[1]
    state.next_epoch = epoch + 1
    record = {
        "epoch": epoch,
        "loss": loss,
        "val_auroc": val_auroc,
        "inner_auroc": inner_auroc,
        "lr": lr,
        "seconds": round(time.perf_counter() - tick, 3),
    }
    return record, probabilities


def _start(
    fold: int,
    data: FoldData,
    config: ExperimentConfig,
    context: tuple[torch.device, World, PrecisionPolicy],
    loaders: Loaders,
    resuming: bool,
) -> FoldState:
    """The fold's state: probed (when ``auto`` and not resuming), heads on when the training
    patients have Bern values."""
    settings, (device, world, policy) = config.training, context
    heads = config.bern_heads.enabled and has_bern(data.train)
    if config.bern_heads.enabled and not heads:
        log.warning("fold %d: no Bern values among the training patients; Bern heads off", fold)
    weight = class_weights(data.train.labels).to(device) if settings.class_weighting else None
    fixed = "fp32" if settings.precision == "auto" else settings.precision
    inference = Inference.resolve(str(device), fixed)
    batch = None if resuming else first_batch(loaders[0], device)
    return FoldState.start(
        config, fold, inference, world, heads, batch, data.train.bern, weight, policy
    )


def _train_epochs(
    state: FoldState, data: FoldData, loaders: Loaders, paths: RunPaths, fold: int,
    fingerprints: dict[str, str], epochs: tuple[int, int],
) -> None:  # fmt: skip
    """The epochs left of ``epochs`` (the fold's, the job's): train, score, select, save the
    resume state; an epoch whose reduced-precision steps go non-finite is trained again in fp32
    from the last good one."""
    (total, job), world = epochs, state.world
    with epoch_bar(total, f"fold {fold}", state.next_epoch, world.main, job) as bar:
        while state.next_epoch < total:
            where = f"fold {fold} epoch {state.next_epoch + 1}"
            good = None
            if state.inference.precision != "fp32":
                good = copy.deepcopy(state.checkpoint(fingerprints))
            try:
                record, probabilities = run_epoch(state, data, loaders, where)
            except NonFiniteStepsError as error:
                assert good is not None
                state.fall_back(good, fold, str(error))
                continue
            if state.selection.update(record, probabilities) and world.main:
                state.weights_sha256 = save_weights(state.network, paths.best_weights(fold))
            state.history.append(record)
            checkpoint = state.checkpoint(fingerprints)  # a collective: every rank takes part
            if world.main:
                write_history(paths.history(fold), state.history)
                save_state(paths.last_state(fold), checkpoint)
            bar.epoch_done(where, total, record)


def train_fold(
    fold: int,
    data: FoldData,
    config: ExperimentConfig,
    paths: RunPaths,
    fingerprints: dict[str, str] | None = None,
    resume: bool = False,
    world: World = World(),
    policy: PrecisionPolicy | None = None,
    device: torch.device | None = None,
) -> FoldSummary:
    """Train one fold and write ``fold_K/{best.safetensors,last.pt,history.csv,predictions.csv,summary.json}``.

    Every epoch scores the outer validation fold (``val_auroc``) and, for ``inner`` selection, the
    inner validation patients (``inner_auroc``). ``best.safetensors`` holds the checkpoint the
    configured selection picks; the last epoch's and the best-validation epoch's (the paper's
    optimistic choice) predictions are kept beside it. ``last.pt`` is saved after every epoch.
    An epoch whose reduced-precision steps go non-finite is trained again in fp32 from the last
    good epoch (said in the log and the summary). Under torchrun every rank trains its share of
    each batch; only rank 0 writes files.

    Args:
        fingerprints: hashes of the configuration, manifest and splits; a resumed fold must match.
        resume: continue from ``last.pt`` (the last complete epoch) when it exists.
        world: the processes training this fold together (one without torchrun).
        policy: the run's precision decisions, shared by its folds (a fresh one when not given).
        device: the run's device, resolved once per run (resolved here when not given).
    """
    settings, fingerprints = config.training, fingerprints or {}
    device = device or resolve_device(device_for(world, settings.device))
    context = (device, world, policy if policy is not None else PrecisionPolicy())
    loaders = fold_loaders(data, config, device, world, config.fold_seed(fold))
    resuming = resume and paths.last_state(fold).is_file()
    state = _start(fold, data, config, context, loaders, resuming)
    paths.fold_dir(fold).mkdir(parents=True, exist_ok=True)
    if resuming:
        saved = load_state(paths.last_state(fold))
        check_fingerprints(saved, fingerprints, fold)
        state.restore(saved, fold)
        log.info("fold %d: resumed after epoch %d (%s)", fold, state.next_epoch,
                 state.inference.precision)  # fmt: skip
    started = time.perf_counter()
    epochs = (settings.epochs, settings.epochs * config.cross_validation.folds)
    _train_epochs(state, data, loaders, paths, fold, fingerprints, epochs)
    if settings.selection == "last" and world.main:
        state.weights_sha256 = save_weights(state.network, paths.best_weights(fold))
    if state.step.bern_weight > 0 and world.main:
        from sihnet.training.bern import write_bern_predictions

        write_bern_predictions(
            paths.fold_bern_predictions(fold), paths.best_weights(fold), fold, data.validation,
            loaders[1], state.inference, config.preprocessing.views,
        )  # fmt: skip
    trained = state.trained(time.perf_counter() - started)
    summary = fold_summary(fold, state.selection, data, config, trained)
    if world.main:
        write_fold_outputs(paths, fold, state.selection, data, summary)
    barrier(world)
    return summary
