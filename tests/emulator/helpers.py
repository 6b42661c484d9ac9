"""Bounded waits on tuning jobs, whichever client fetched them (GAPIC proto, google-genai, vertexai SDK, REST dict)."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from tuning.polling import Backoff, DeadlineExceeded, poll_until

T = TypeVar("T")

# A job trains in ~15-20 s with the conftest's FAST_TRAINING on two busy cores; leave room for a loaded machine.
JOB_TIMEOUT = 180.0
ENDED = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})
_POLL = Backoff(initial=0.2, maximum=1.0, multiplier=1.5)


def state_name(job: Any) -> str:
    """`JOB_STATE_...` of a job: a REST dict, a proto-plus message, a google-genai model or a vertexai job."""
    state = job["state"] if isinstance(job, dict) else job.state
    return getattr(state, "name", state)


def wait_for(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float = JOB_TIMEOUT) -> T:
    """Call `fetch()` until `done(value)`; fails the test with the last value after `timeout` seconds."""
    try:
        return poll_until(fetch, done, timeout=timeout, backoff=_POLL)
    except DeadlineExceeded as error:
        raise AssertionError(f"gave up after {timeout:.0f}s; last value: {error.last!r}") from error


def wait_until_ended(get_fn: Callable[[], T], timeout: float = JOB_TIMEOUT) -> T:
    """Poll `get_fn()` until the job it returns is SUCCEEDED, FAILED, CANCELLED or EXPIRED."""
    return wait_for(get_fn, lambda job: state_name(job) in ENDED, timeout)


def wait_until_state(get_fn: Callable[[], T], state: str, timeout: float = JOB_TIMEOUT) -> T:
    """Poll `get_fn()` until the job is in `state` (e.g. ``JOB_STATE_RUNNING``)."""
    return wait_for(get_fn, lambda job: state_name(job) == state, timeout)
