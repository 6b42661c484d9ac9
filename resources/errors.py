"""Report the project's own errors from a Pulumi program as one clear message, without a stack trace."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pulumi

from tuning.errors import TuningError


@contextmanager
def reported_without_traceback() -> Iterator[None]:
    """Turn a TuningError (bad config key, bad dataset line) into `pulumi.RunError`, which the
    runtime prints as its message alone; unexpected errors keep their traceback."""
    try:
        yield
    except TuningError as error:
        raise pulumi.RunError(str(error)) from error
