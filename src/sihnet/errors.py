"""The one exception type for problems a user can fix (bad input, bad options)."""


class SihnetError(Exception):
    """An error the user can fix; the CLI prints it as one line on stderr and exits non-zero."""
