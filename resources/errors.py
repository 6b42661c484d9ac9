"""Report the project's own errors from the dynamic providers as one clear message, without a stack trace
(`report_provider_errors_without_traceback`). The program's side is `resources/program_exit.py`."""

from __future__ import annotations

import sys
from typing import Any

from tuning.errors import TuningError


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
    if host is None or spec is None or spec.name != "pulumi.dynamic.__main__":
        return False
    current = getattr(host, "traceback", None)
    if isinstance(current, _OneLineTracebacks):
        return True
    if current is None or not callable(getattr(current, "format_exc", None)):
        return False  # a host that reports errors differently: leave it alone
    vars(host)["traceback"] = _OneLineTracebacks(current)  # the global its servicer's handlers look up
    return True
