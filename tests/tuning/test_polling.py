"""The polling helper: backoff sequence, success, deadline."""

from __future__ import annotations

import pytest

from tuning.polling import Backoff, DeadlineExceeded, poll_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_grows_and_caps():
    delays = Backoff(initial=1, maximum=5, multiplier=2).delays()
    assert [next(delays) for _ in range(5)] == [1, 2, 4, 5, 5]


def test_poll_returns_the_first_done_value():
    clock = FakeClock()
    values = iter(["PENDING", "RUNNING", "SUCCEEDED", "never"])
    result = poll_until(lambda: next(values), lambda v: v == "SUCCEEDED", timeout=100,
                        backoff=Backoff(initial=1, maximum=10, multiplier=2), sleep=clock.sleep,
                        clock=lambda: clock.now)
    assert (result, clock.sleeps) == ("SUCCEEDED", [1, 2])


def test_poll_gives_up_at_the_deadline_with_the_last_value():
    clock = FakeClock()
    with pytest.raises(DeadlineExceeded, match="not done after 10s") as exceeded:
        poll_until(lambda: "RUNNING", lambda v: False, timeout=10, backoff=Backoff(initial=3, maximum=3),
                   sleep=clock.sleep, clock=lambda: clock.now)
    assert exceeded.value.last == "RUNNING"
    assert sum(clock.sleeps) == 10  # never sleeps past the deadline
