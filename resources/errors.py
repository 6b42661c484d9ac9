"""Report the project's own errors from a Pulumi program as one clear message, without a stack trace."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pulumi

from tuning.errors import TuningError

# The language host's contract: a program that exits with 32 has already shown its error, so the
# engine adds nothing (exit 1 would add "program exited with non-zero exit code: 1").
EXIT_ALREADY_REPORTED = 32


class ProgramStopped(SystemExit):
    """The program stopped after logging why; `__cause__` holds the TuningError.

    A SystemExit, so the official runner neither wraps it in a traceback nor adds a line of its own.
    """

    def __init__(self) -> None:
        super().__init__(EXIT_ALREADY_REPORTED)


@contextmanager
def reported_without_traceback() -> Iterator[None]:
    """Log a TuningError (bad config key, bad dataset line) as one error line and stop the program;
    unexpected errors keep their traceback."""
    try:
        yield
    except TuningError as error:
        pulumi.log.error(str(error))  # synchronous: no resource to resolve, so it is sent before the exit
        raise ProgramStopped() from error
