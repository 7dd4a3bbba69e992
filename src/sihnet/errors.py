"""Exceptions the command line turns into one line: user-fixable errors and stop requests."""

import signal


class SihnetError(Exception):
    """An error the user can fix; the CLI prints it as one line on stderr and exits non-zero."""


class TrainingInterrupted(Exception):  # noqa: N818 - a stop request, not an error
    """Raised after the current training step when SIGINT/SIGTERM asked training to stop."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number
