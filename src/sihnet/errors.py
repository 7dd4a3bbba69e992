"""Exceptions the command line turns into one line: user-fixable errors and stop requests."""

import signal


class SihnetError(Exception):
    """An error the user can fix; the CLI prints it as one line on stderr and exits non-zero."""


class TrainingInterrupted(Exception):  # noqa: N818 - a stop request, not an error
    """Raised after the current training step when SIGINT/SIGTERM asked training to stop.

    Attributes:
        resumable: a fold was started, so ``--resume`` continues it.
        what: what was kept, for the message.
    """

    def __init__(
        self,
        signal_number: int,
        resumable: bool = True,
        what: str = "the last complete epoch of each unfinished fold is saved",
    ) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number, self.resumable, self.what = signal_number, resumable, what
