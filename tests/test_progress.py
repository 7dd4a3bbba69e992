"""The job bar over a whole command (``sihnet demo``)."""

from __future__ import annotations

import logging

import pytest

from sihnet import progress
from sihnet.training.records import epoch_bar


def test_stages_advance_the_bar_by_their_share_and_epochs_step_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not on a terminal (pytest captures stderr): a log line per 5% instead of a bar."""
    caplog.set_level(logging.INFO, logger="sihnet.progress")
    assert progress.active() is None
    with progress.job_progress({"synthesis": 1.0, "training": 3.0}, "job") as job:
        assert progress.active() is job
        job.update("synthesis", 1, 2)
        assert job.position == 125
        job.update("synthesis", 2, 2)
        job.update("nonexistent", 1, 1)
        assert job.position == 250
        assert "job: 25% (synthesis)" in caplog.text and "min left" in caplog.text
        with epoch_bar(2, "fold 0", job_epochs=4) as bar:
            assert bar.silent  # no per-fold bar under the job's
            bar.epoch_done("fold 0 epoch 1", 2, {"loss": 1.0, "val_auroc": 0.5, "inner_auroc": 0.5})
        assert job.position == round(1000 * (0.25 + 0.75 / 4))
    assert progress.active() is None
