"""One progress bar over a whole job (``sihnet demo``) with an estimate of the time left.

Each stage holds a share of the job's expected time (measured; see :mod:`sihnet.demo`); inside a
stage, progress is linear in its steps (studies synthesised, epochs trained, occluded copies
scored). On a terminal a tqdm bar estimates the time left from the rate so far; elsewhere (a log
file, CI) one log line per 5% says the same. While a job bar is shown, the per-fold epoch bars
and per-epoch log lines are not.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterator, Mapping

from tqdm import tqdm

_RESOLUTION = 1000
_LOG_EVERY = 50  # of _RESOLUTION: a log line per 5% when not on a terminal
log = logging.getLogger(__name__)
_ACTIVE: contextvars.ContextVar[JobProgress | None] = contextvars.ContextVar(
    "sihnet_job_progress", default=None
)


class JobProgress:
    """Where a job is: each stage's fraction done, weighted by its share of the job's time."""

    def __init__(self, shares: Mapping[str, float], bar: tqdm | None, name: str = "job") -> None:
        total = sum(shares.values())
        self.shares = {stage: share / total for stage, share in shares.items()}
        self.done = dict.fromkeys(shares, 0.0)
        self.counts = dict.fromkeys(shares, 0)
        self.bar, self.name = bar, name
        self.position, self.logged, self.started = 0, 0, time.monotonic()

    def update(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` steps of ``stage`` are finished (unknown stages are ignored)."""
        if stage not in self.shares or total <= 0:
            return
        self.done[stage] = min(1.0, done / total)
        position = round(_RESOLUTION * sum(self.shares[s] * f for s, f in self.done.items()))
        step, self.position = max(0, position - self.position), max(position, self.position)
        if self.bar is not None:
            self.bar.set_description_str(f"{self.name} ({stage})", refresh=False)
            self.bar.update(step)
        elif self.position >= self.logged + _LOG_EVERY:
            self.logged = self.position - self.position % _LOG_EVERY
            elapsed = time.monotonic() - self.started
            left = elapsed * (_RESOLUTION - self.position) / max(self.position, 1)
            log.info(
                "%s: %d%% (%s), %.0f min elapsed, about %.0f min left",
                self.name, self.position // 10, stage, elapsed / 60, left / 60,
            )  # fmt: skip

    def step(self, stage: str, total: int) -> None:
        """One more of ``total`` steps of ``stage`` is finished."""
        self.counts[stage] = self.counts.get(stage, 0) + 1
        self.update(stage, self.counts[stage], total)


@contextlib.contextmanager
def job_progress(shares: Mapping[str, float], description: str) -> Iterator[JobProgress]:
    """Show one bar for the job on stderr (log lines when stderr is not a terminal) and make it
    the active one for :func:`active`."""
    with contextlib.ExitStack() as stack:
        bar = None
        if sys.stderr.isatty():
            bar_format = "{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, ~{remaining} left"
            bar = stack.enter_context(
                tqdm(total=_RESOLUTION, desc=description, bar_format=bar_format, file=sys.stderr)
            )
        progress = JobProgress(shares, bar, description)
        token = _ACTIVE.set(progress)
        try:
            yield progress
        finally:
            _ACTIVE.reset(token)


def active() -> JobProgress | None:
    """The job bar being shown in this context, if any."""
    return _ACTIVE.get()
