"""Report the project's own errors as one clear message, without a stack trace: from the Pulumi program
(`reported_without_traceback`) and from the dynamic providers (`report_provider_errors_without_traceback`)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

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


# -- in the dynamic provider host ------------------------------------------------------------------------

class _OneLineTracebacks:
    """Stands in for the `traceback` module inside `pulumi.dynamic.__main__`: `format_exc()` of a TuningError is
    its message alone; every other exception keeps its full traceback."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def format_exc(self, *args: Any, **kwargs: Any) -> str:
        error = sys.exc_info()[1]
        if isinstance(error, TuningError):
            return str(error)
        return self._module.format_exc(*args, **kwargs)


def report_provider_errors_without_traceback() -> bool:
    """In the dynamic provider host, make the engine show a provider's TuningError as its message alone.

    The host (`python -m pulumi.dynamic`, started by `pulumi-resource-pulumi-python`) answers every exception a
    provider method raises with `context.abort(UNKNOWN, traceback.format_exc())`, and the engine prints that text
    under the resource: the whole Python traceback, even for an expected failure such as a call whose retries ran
    out. The host offers no hook for this, so the `traceback` name of its `__main__` module is replaced by
    `_OneLineTracebacks`, and the engine then prints `error: <the message>`. Unexpected errors (bugs) keep their
    traceback. Elsewhere (tests, the program) this does nothing.

    Returns:
        True when the host's error reporting is (now) one line for TuningError.
    """
    host = sys.modules.get("__main__")
    spec = getattr(host, "__spec__", None)
    if spec is None or spec.name != "pulumi.dynamic.__main__":
        return False
    current = getattr(host, "traceback", None)
    if isinstance(current, _OneLineTracebacks):
        return True
    if current is None or not callable(getattr(current, "format_exc", None)):
        return False  # a host that reports errors differently: leave it alone
    host.traceback = _OneLineTracebacks(current)
    return True
