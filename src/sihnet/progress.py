"""One progress bar over a whole job (``sihnet demo``) with an estimate of the time left.

Each stage holds a share of the job's expected time (measured; see :mod:`sihnet.demo`); inside a
stage, progress is linear in its steps (studies synthesised, epochs trained, occluded copies
scored). tqdm estimates the time left from the rate so far. While a job bar is shown, the
per-fold epoch bars and per-epoch log lines are not.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator, Mapping

from tqdm import tqdm

_RESOLUTION = 1000
_ACTIVE: contextvars.ContextVar[JobProgress | None] = contextvars.ContextVar(
    "sihnet_job_progress", default=None
)


class JobProgress:
    """Where a job is: each stage's fraction done, weighted by its share of the job's time."""

    def __init__(self, shares: Mapping[str, float], bar: tqdm) -> None:
        total = sum(shares.values())
        self.shares = {stage: share / total for stage, share in shares.items()}
        self.done = dict.fromkeys(shares, 0.0)
        self.counts = dict.fromkeys(shares, 0)
        self.bar = bar

    def update(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` steps of ``stage`` are finished (unknown stages are ignored)."""
        if stage not in self.shares or total <= 0:
            return
        self.done[stage] = min(1.0, done / total)
        position = round(_RESOLUTION * sum(self.shares[s] * f for s, f in self.done.items()))
        self.bar.set_postfix_str(stage)
        self.bar.update(max(0, position - self.bar.n))

    def step(self, stage: str, total: int) -> None:
        """One more of ``total`` steps of ``stage`` is finished."""
        self.counts[stage] = self.counts.get(stage, 0) + 1
        self.update(stage, self.counts[stage], total)


@contextlib.contextmanager
def job_progress(shares: Mapping[str, float], description: str) -> Iterator[JobProgress]:
    """Show one bar for the job on stderr (redrawn at most every 30 s when stderr is not a
    terminal) and make it the active one for :func:`active`."""
    interactive = sys.stderr.isatty()
    bar_format = (
        "{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, ~{remaining} left [{postfix}]"
    )
    with tqdm(
        total=_RESOLUTION,
        desc=description,
        bar_format=bar_format,
        mininterval=0.5 if interactive else 30.0,
        file=sys.stderr,
    ) as bar:
        progress = JobProgress(shares, bar)
        token = _ACTIVE.set(progress)
        try:
            yield progress
        finally:
            _ACTIVE.reset(token)


def active() -> JobProgress | None:
    """The job bar being shown in this context, if any."""
    return _ACTIVE.get()
