"""What a waiting `up` (or `jobs metrics --follow`) says about a running tuning job, and how often it looks.

`JobProgress` is one snapshot (state, step X/Y, latest training loss, elapsed time); `ProgressLog` decides when
a snapshot is worth a line: when something changed, at most once per interval, and always at the end.
`ProportionalBackoff` spaces the polls so that the job's end is noticed within max(`minimum`, `fraction` of its
elapsed time): a short job is polled often, a job that has run for hours not every few seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Optional, Sequence

if TYPE_CHECKING:  # the provider imports this module for every check: no client types at import time
    from google.cloud.aiplatform_v1 import TuningJob

# (step, value) points of one metric, in step order.
Series = Sequence[tuple[int, float]]
LOSS_METRIC = "train_total_loss"


@dataclass(frozen=True)
class JobProgress:
    """One look at a job: its state, the latest step with a training metric, the total steps, the loss."""

    state: str
    step: Optional[int]
    total_steps: Optional[int]
    loss: Optional[float]
    elapsed_seconds: float

    @property
    def ended(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")

    def what_changed_since(self, other: Optional["JobProgress"]) -> bool:
        return other is None or (self.state, self.step, self.loss) != (other.state, other.step, other.loss)

    def line(self, job_name: str) -> str:
        """`tuning job NAME: RUNNING, step 120/300, train_total_loss 1.234, 34s elapsed`."""
        parts = [self.state]
        if self.step is not None:
            parts.append(f"step {self.step}/{self.total_steps}" if self.total_steps else f"step {self.step}")
        if self.loss is not None:
            parts.append(f"{LOSS_METRIC} {self.loss:.4g}")
        parts.append(f"{format_duration(self.elapsed_seconds)} elapsed")
        return f"tuning job {job_name}: {', '.join(parts)}"


def job_progress(job: TuningJob, series: Mapping[str, Series], *, now: Optional[datetime] = None) -> JobProgress:
    """The progress of `job` given its metric series (`TuningApi.metric_series`)."""
    loss = series.get(LOSS_METRIC) or ()
    steps = [points[-1][0] for name, points in series.items() if name.startswith("train_") and points]
    return JobProgress(state=(job.state.name if job.state else "UNKNOWN").removeprefix("JOB_STATE_"),
                       step=max(steps) if steps else None, total_steps=total_steps(job),
                       loss=loss[-1][1] if loss else None, elapsed_seconds=elapsed_seconds(job, now=now))


def total_steps(job: TuningJob) -> Optional[int]:
    """`tuningDataStats.supervisedTuningDataStats.tuningStepCount`, when known."""
    return job.tuning_data_stats.supervised_tuning_data_stats.tuning_step_count or None


def elapsed_seconds(job: TuningJob, *, now: Optional[datetime] = None) -> float:
    """Seconds from the job's creation to its end, or to `now` while it runs (0 when the service said neither)."""
    from tuning.vertex import has_ended  # loads aiplatform_v1: only a wait gets here, never a preview

    if job.create_time is None:
        return 0.0
    end = job.end_time if has_ended(job) else None
    seconds: float = ((end or now or datetime.now(timezone.utc)) - job.create_time).total_seconds()
    return max(0.0, seconds)


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLog:
    """Says when a progress line is due: a changed snapshot at most every `interval` seconds; the end always."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: Optional[JobProgress] = None
        self._last_at: Optional[float] = None

    def due(self) -> bool:
        """Whether a line may be written now (so a caller fetches the metrics only then)."""
        return self._last_at is None or self._clock() - self._last_at >= self.interval

    def line_for(self, progress: JobProgress, job_name: str) -> Optional[str]:
        """The line to write for this snapshot, or None (nothing changed, or too soon)."""
        if not progress.what_changed_since(self._last) or not (progress.ended or self.due()):
            return None
        self._last, self._last_at = progress, self._clock()
        return progress.line(job_name)


@dataclass(frozen=True)
class ProportionalBackoff:
    """Poll delays of `fraction` of the job's elapsed time, between `minimum` and `maximum` seconds.

    `already_elapsed` is how long the job had run when polling started (an adopted job may be hours old).
    """

    fraction: float = 0.1
    minimum: float = 2.0
    maximum: float = 30.0
    already_elapsed: float = 0.0
    clock: Callable[[], float] = time.monotonic

    def delays(self) -> Iterator[float]:
        started = self.clock()
        while True:
            elapsed = self.already_elapsed + self.clock() - started
            yield min(self.maximum, max(self.minimum, self.fraction * elapsed))
