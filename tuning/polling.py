"""The one polling/backoff helper: call until done, sleeping with capped exponential backoff, up to a deadline."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, Optional, Protocol, TypeVar

T = TypeVar("T")


class DelaySchedule(Protocol):
    """Anything that yields the seconds to sleep between polls (`Backoff`, `ProportionalBackoff`)."""

    def delays(self) -> Iterator[float]: ...


@dataclass(frozen=True)
class Backoff:
    """Sleep `initial`, then ×`multiplier` each time, never more than `maximum` seconds."""

    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 1.5

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(self.maximum, delay * self.multiplier)


class DeadlineExceeded(TimeoutError, Generic[T]):
    """`poll_until` ran out of time; `last` holds the last value seen.

    An `except` clause sees `DeadlineExceeded[Any]`: a caller states the type of `last` it knows it polled.
    """

    def __init__(self, message: str, last: T) -> None:
        super().__init__(message)
        self.last = last


def poll_until(fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float,
               backoff: DelaySchedule = Backoff(), sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic, on_poll: Optional[Callable[[T], None]] = None) -> T:
    """Call `fetch()` until `done(value)`; returns that value.

    Raises:
        DeadlineExceeded: `timeout` seconds passed without `done`; carries the last value.
    """
    deadline = clock() + timeout
    for delay in backoff.delays():
        value = fetch()
        if on_poll is not None:
            on_poll(value)
        if done(value):
            return value
        remaining = deadline - clock()
        if remaining <= 0:
            raise DeadlineExceeded(f"not done after {timeout:.0f}s", value)
        sleep(min(delay, remaining))
    raise AssertionError("unreachable")
