"""Schedules tuning jobs: one at a time, each prepared, trained in a child process, then ended atomically.

One job trains at a time (the machine has few cores); others wait in PENDING. Training runs in a
child process (`emulator.trainer_process`) so the API stays responsive and a cancel is a signal. Jobs left
PENDING or RUNNING by a previous process are restarted from scratch on start-up; training is
deterministic, so the restarted run produces the same metrics and model.

The job's last transition (`JobStore.end_job`) is atomic with respect to a cancel: a job that was asked
to cancel ends CANCELLED whatever its run reached, and never gets a tuned model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Iterable, Optional

from emulator.clock import now_rfc3339
from emulator.errors import DeadlineExceeded, Internal, NotFound
from emulator.gcs import ObjectStore
from emulator.job_store import JobStore, cancelled_fields
from emulator.jobs import JobState, experiment_context_name, job_error, job_id_of
from emulator.settings import TrainingSettings
from emulator.trainer_process import METRIC_PREFIX, PARENT_PID_ENV
from emulator.training_data import JobFailed, prepare_training_run

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_STOP = object()

# Wall-clock limit of one training run: TIME_LIMIT_BASE_SECONDS (JAX start-up, compilation, saving) plus, per
# step, TIME_LIMIT_PER_STEP_SECONDS and the configured step delay. A step of the default model takes well under
# 0.1 s on a CPU, so only a hung trainer reaches it; the job then FAILS with DEADLINE_EXCEEDED instead of
# holding the runner (and every job queued behind it) forever. Module attributes so tests can lower them.
TIME_LIMIT_BASE_SECONDS = 600.0
TIME_LIMIT_PER_STEP_SECONDS = 1.0
# A trainer that outlives SIGTERM by this long gets SIGKILL.
_KILL_GRACE_SECONDS = 10.0
# Metric lines that fail to be stored are logged with a traceback up to this many times per job.
_LOGGED_METRIC_ERRORS = 5


def training_time_limit(settings: TrainingSettings, total_steps: int) -> float:
    """Seconds a training run of `total_steps` steps may take before the job fails (see TIME_LIMIT_*)."""
    return TIME_LIMIT_BASE_SECONDS + total_steps * (TIME_LIMIT_PER_STEP_SECONDS + settings.step_delay_seconds)


class JobRunner:
    """A single worker thread that takes job ids from a queue and drives each to an end state."""

    def __init__(self, jobs: JobStore, store: ObjectStore, training: TrainingSettings, work_dir: Path) -> None:
        self.jobs = jobs
        self.store = store
        self.training = training
        self.work_dir = work_dir
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self.trainer: Optional[subprocess.Popen] = None  # the trainer child process while one runs
        self._stopping = threading.Event()

    def start(self) -> None:
        self._recover()
        self._thread = threading.Thread(target=self._work, name="job-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker; a job in training is left RUNNING so the next start resumes it."""
        self._stopping.set()
        self._kill_trainer()
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def reset(self) -> None:
        """Forget every job's files: stop the trainer child, then empty the work dir (the worker keeps serving).

        Call it after the job rows are gone (`JobStore.reset`): the worker then sees its job vanish and
        moves on instead of starting another trainer for it.
        """
        child = self.trainer
        self._kill_trainer()
        if child is not None:
            try:  # the worker, whose job is gone, sends SIGKILL after _KILL_GRACE_SECONDS
                child.wait(_KILL_GRACE_SECONDS + 5)
            except subprocess.TimeoutExpired:
                log.error("trainer %d did not exit after SIGKILL", child.pid)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def _recover(self) -> None:
        for job in self.jobs.jobs_in_states({JobState.JOB_STATE_CANCELLING}):
            self.jobs.update_job(job_id_of(job), **cancelled_fields())
        for job in self.jobs.jobs_in_states({JobState.JOB_STATE_RUNNING}):
            job_id = job_id_of(job)
            self.jobs.clear_metrics(job_id)
            self.jobs.update_job(job_id, state=JobState.JOB_STATE_PENDING, startTime=None, experiment=None)
            log.warning("tuning job %s was running when the emulator stopped; restarting it", job_id)
        for job in self.jobs.jobs_in_states({JobState.JOB_STATE_PENDING, JobState.JOB_STATE_QUEUED}):
            self._queue.put(job_id_of(job))

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is _STOP or self._stopping.is_set():
                return
            try:
                self.run(job_id)
            except NotFound:
                # A reset forgot the job mid-run; the worker must survive it (the runner keeps serving).
                log.info("tuning job %s was deleted while it ran", job_id)
                self._quietly(self.jobs.clear_metrics, job_id)
                # Its trainer has exited (`train` waits for it), so nothing writes there any more.
                shutil.rmtree(self.work_dir / job_id, ignore_errors=True)
            except Exception as error:  # a bug here must not kill the worker or leave the job RUNNING
                log.exception("tuning job %s crashed the runner", job_id)
                if not self._stopping.is_set():
                    self._quietly(self._end, job_id, JobState.JOB_STATE_FAILED,
                                  error=job_error(Internal(f"emulator error: {error}")))

    @staticmethod
    def _quietly(action: Any, *args: Any, **kwargs: Any) -> None:
        """Run a clean-up step of the worker loop; nothing it raises may end the worker thread."""
        try:
            action(*args, **kwargs)
        except NotFound:
            pass
        except Exception:  # noqa: BLE001 - logged; the worker goes on with the next job
            log.exception("clean-up after a failed tuning job failed")

    def run(self, job_id: str) -> None:
        """Drive one job from PENDING to its end (what the worker thread does with each submitted job)."""
        job = self.jobs.job_by_id(job_id)
        started = self.jobs.update_job(job_id, only_if_state_in={JobState.JOB_STATE_PENDING},
                                       state=JobState.JOB_STATE_RUNNING, startTime=now_rfc3339(),
                                       experiment=experiment_context_name(job["name"]))
        if started is None:
            return  # cancelled while queued
        run_dir = self._new_run_dir(job_id)
        try:
            total_steps, stats = prepare_training_run(job, self.store, self.training, run_dir)
            self.jobs.update_job(job_id, tuningDataStats=stats)
            if self._stopping.is_set():
                return
            if self._cancel_requested(job_id):  # cancelled while the data was read: start no trainer
                self._end(job_id, JobState.JOB_STATE_CANCELLED)
                return
            if not self.train(job_id, run_dir, total_steps):
                return
        except JobFailed as failure:
            self._end(job_id, JobState.JOB_STATE_FAILED, error=job_error(failure.error))
            return
        self._end(job_id, JobState.JOB_STATE_SUCCEEDED,
                  tuned_model=(job.get("tunedModelDisplayName") or job_id, str(run_dir / "model")))

    def _new_run_dir(self, job_id: str) -> Path:
        """A fresh directory for this run of the job: `work_dir/<job id>/run-<random>/`.

        A run never reuses a directory, so a trainer of an earlier run (before a restart of the emulator) can
        never write into this one. The job's earlier runs are removed: their trainers are gone, since
        the trainer asks Linux (PR_SET_PDEATHSIG) for SIGTERM when the process that started it dies; and a
        trainer that lingered anyway (another OS) would only write into its own, now deleted, directory.
        """
        shutil.rmtree(self.work_dir / job_id, ignore_errors=True)
        run_dir = self.work_dir / job_id / f"run-{secrets.token_hex(4)}"
        run_dir.mkdir(parents=True)
        return run_dir

    def train(self, job_id: str, job_dir: Path, total_steps: int) -> bool:
        """Run the trainer child to its end: True when it trained the model; False when the runner is stopping (the
        job stays RUNNING for the next start) or the job was cancelled (then it is ended here). JobFailed when the
        trainer failed or overran `training_time_limit`."""
        stderr_path = job_dir / "trainer.log"
        limit = training_time_limit(self.training, total_steps)
        deadline = time.monotonic() + limit
        timed_out = False
        # The persistent compilation cache lets later jobs of the same model shape skip the JIT (~5 s).
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1",
               "JAX_COMPILATION_CACHE_DIR": str(self.work_dir.parent / "jax-cache"),
               PARENT_PID_ENV: str(os.getpid())}
        with open(stderr_path, "wb") as stderr:
            self.trainer = child = subprocess.Popen(
                [sys.executable, "-m", "emulator.trainer_process", str(job_dir)], stdout=subprocess.PIPE,
                stderr=stderr, env=env, cwd=PROJECT_ROOT, start_new_session=True)
            reader = threading.Thread(target=self.store_metrics, args=(job_id, child.stdout), daemon=True)
            reader.start()
            killed_at: Optional[float] = None
            try:
                while child.poll() is None:
                    with suppress(subprocess.TimeoutExpired):
                        child.wait(timeout=0.2)
                    stop = self._stopping.is_set() or self._cancel_requested(job_id)
                    if not stop and not timed_out and time.monotonic() > deadline:
                        timed_out = True
                        log.error("tuning job %s: training overran its %.0f s limit; stopping it", job_id, limit)
                    if stop or timed_out:
                        killed_at = killed_at or time.monotonic()
                        self._kill_trainer(signal.SIGKILL if time.monotonic() - killed_at > _KILL_GRACE_SECONDS
                                         else signal.SIGTERM)
            except BaseException:
                self._kill_trainer()  # never leave a trainer behind a failed run
                raise
            reader.join(timeout=5)
            if not reader.is_alive() and child.stdout is not None:
                child.stdout.close()
            self.trainer = None
        if self._stopping.is_set():
            return False
        if self._cancel_requested(job_id):
            self._end(job_id, JobState.JOB_STATE_CANCELLED)
            return False
        if timed_out:
            raise JobFailed(DeadlineExceeded(
                f"training did not finish within {limit:,.0f} s ({TIME_LIMIT_BASE_SECONDS:.0f} s + {total_steps:,} "
                f"steps x {TIME_LIMIT_PER_STEP_SECONDS + self.training.step_delay_seconds:g} s); the trainer was "
                "stopped."))
        if child.returncode != 0:
            tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise JobFailed(Internal(f"training exited with status {child.returncode}: {' | '.join(tail)}"))
        return True

    def store_metrics(self, job_id: str, lines: Iterable[bytes]) -> None:
        """Store the metric points of the trainer's output `lines` until it closes.

        Every line is read whatever happens to the ones before it: a reader that stopped would leave the
        child blocked on a full pipe, and the job RUNNING forever. Non-finite values (NaN, infinity: a
        diverged run) are dropped, not stored; a line that cannot be stored is logged and skipped.
        """
        failures = 0
        for raw in lines:
            try:
                line = raw.decode("utf-8", errors="replace")
                if not line.startswith(METRIC_PREFIX):
                    continue
                point = json.loads(line[len(METRIC_PREFIX):])
                step = int(point["step"])
                metrics = {str(name): float(value) for name, value in point["metrics"].items()}
                finite = {name: value for name, value in metrics.items() if math.isfinite(value)}
                if len(finite) < len(metrics):
                    log.warning("tuning job %s: dropped non-finite metrics at step %d: %s", job_id, step,
                                sorted(set(metrics) - set(finite)))
                if finite:
                    self.jobs.add_metric_point(job_id, step, finite)
            except Exception:  # noqa: BLE001 - keep draining the pipe
                failures += 1
                if failures <= _LOGGED_METRIC_ERRORS:
                    log.exception("tuning job %s: cannot store metric line %r", job_id, raw[:200])
        if failures > _LOGGED_METRIC_ERRORS:
            log.error("tuning job %s: %d metric lines could not be stored", job_id, failures)

    def _kill_trainer(self, sig: int = signal.SIGTERM) -> None:
        child = self.trainer
        if child is not None and child.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(child.pid, sig)

    def _cancel_requested(self, job_id: str) -> bool:
        try:
            return self.jobs.job_by_id(job_id)["state"] == JobState.JOB_STATE_CANCELLING.name
        except NotFound:
            return True  # deleted by a reset: stop training it like a cancel

    def _end(self, job_id: str, state: JobState, **fields: Any) -> None:
        """The job's last transition: to `state`, or to CANCELLED if a cancel came first (atomically)."""
        ended = self.jobs.end_job(job_id, state, **fields)
        if ended is not None and ended["state"] != state.name:
            log.info("tuning job %s was cancelled before it could end %s", job_id, state.name)

