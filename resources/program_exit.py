"""How the Pulumi program (`__main__.py`, and only it) ends: after one error line for our own errors, and at once
on the user's Ctrl-C, with the exit status the language host reads as "already reported".

Library code in tuning/ and resources/ raises and never exits: this module is the program's side of the contract.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
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


def stop_quietly_on_interrupt(program_dir: Path) -> bool:
    """When this process runs the program for the engine, make SIGINT end it at once and without a traceback.

    On the user's Ctrl-C the engine cancels the update and the language host sends the program SIGINT: Python's
    default answer is a KeyboardInterrupt traceback, printed under the stack, for a stop the user asked for. The
    engine reports the cancellation itself ("update canceled"). Nothing happens when the program runs in-process
    elsewhere (the tests' mocks), where Ctrl-C must keep its usual meaning.

    Returns:
        True when the handler was installed.
    """
    # The official runner sets argv[0] to the program's path: the project folder or its __main__.py.
    running_the_program = Path(sys.argv[0]).resolve() in (program_dir, program_dir / "__main__.py")
    if not running_the_program or threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(EXIT_ALREADY_REPORTED))
    return True
