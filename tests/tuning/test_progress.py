"""tuning.progress: the progress line, when it is due, and the poll delays, on made-up snapshots."""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import islice

from tuning.progress import JobProgress, ProgressLog, ProportionalBackoff, format_duration, job_progress
from tuning.vertex import from_rest_json


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def running_job(**fields):
    """A job as the service writes it (REST JSON), with `fields` changed; a None field is left out."""
    body = {
        "name": "projects/p/locations/us-central1/tuningJobs/1", "state": "JOB_STATE_RUNNING",
        "createTime": "2026-11-30T10:00:00Z",
        "tuningDataStats": {"supervisedTuningDataStats": {"tuningStepCount": "300"}}, **fields}
    return from_rest_json({key: value for key, value in body.items() if value is not None})


def test_job_progress_takes_the_latest_training_step_and_loss():
    series = {"train_total_loss": [(25, 3.5), (50, 2.25)], "eval_total_loss": [(50, 2.5), (75, 2.4)],
              "train_num_predictions": [(50, 900)]}
    progress = job_progress(running_job(), series, now=datetime(2026, 11, 30, 10, 1, 5, tzinfo=timezone.utc))
    assert progress == JobProgress(state="RUNNING", step=50, total_steps=300, loss=2.25, elapsed_seconds=65.0)
    assert progress.line("J") == "tuning job J: RUNNING, step 50/300, train_total_loss 2.25, 1m05s elapsed"


def test_an_ended_job_counts_its_time_to_its_end_and_a_new_one_shows_no_step():
    ended = running_job(state="JOB_STATE_SUCCEEDED", endTime="2026-11-30T10:00:42.500Z")
    assert job_progress(ended, {}).elapsed_seconds == 42.5
    fresh = job_progress(running_job(state="JOB_STATE_PENDING", tuningDataStats=None), {},
                         now=datetime(2026, 11, 30, 10, 0, 3, tzinfo=timezone.utc))
    assert fresh.line("J") == "tuning job J: PENDING, 3s elapsed"


def test_a_line_only_when_something_changed_and_at_most_every_interval_but_the_end_always():
    clock = FakeClock()
    log = ProgressLog(interval=10, clock=clock)
    step = lambda n, state="RUNNING": JobProgress(state, n, 300, 1.0, clock.now)  # noqa: E731
    assert log.line_for(step(1), "J") is not None
    clock.now = 5
    assert not log.due() and log.line_for(step(2), "J") is None  # changed, too soon
    clock.now = 10
    assert log.line_for(step(1), "J") is None  # due, but nothing changed since the last line
    assert log.line_for(step(3), "J") is not None
    clock.now = 11
    assert log.line_for(step(300, "SUCCEEDED"), "J").startswith("tuning job J: SUCCEEDED, step 300/300")


def test_poll_delays_are_a_tenth_of_the_elapsed_time_between_the_bounds():
    clock = FakeClock()
    delays = ProportionalBackoff(fraction=0.1, minimum=2, maximum=30, already_elapsed=100, clock=clock).delays()
    assert next(delays) == 10
    clock.now = 500
    assert next(delays) == 30
    clock = FakeClock()
    assert list(islice(ProportionalBackoff(clock=clock).delays(), 2)) == [2, 2]


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (0, 59.9, 61, 3600 * 2 + 7 * 60)] == ["0s", "59s", "1m01s", "2h07m"]
