"""Runs tuning jobs in the background: validate data, train in a child process, publish the tuned model.

One job trains at a time (the machine has few cores); others wait in PENDING. Training runs in a
child process (`emulator.trainer`) so the API stays responsive and a cancel is a signal. Jobs left
PENDING or RUNNING by a previous process are restarted from scratch on start-up; training is
deterministic, so the restarted run produces the same metrics and model.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from emulator.clock import now_rfc3339
from emulator.errors import GoogleApiError, NotFound
from emulator.gcs import ObjectStore
from emulator.settings import TrainingSettings
from emulator.stats import supervised_tuning_data_stats
from emulator.trainer import METRIC_PREFIX
from emulator.tuning_backend import TuningBackend, cancelled_fields, experiment_context_name
from tuning.dataset import example_pairs, iter_examples, validate_stream
from tuning.models import JobState

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_STOP = object()


class JobFailed(Exception):
    """The job cannot succeed; `code` is the google.rpc.Code for the job's error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class JobRunner:
    """A single worker thread that takes job ids from a queue and drives each to an end state."""

    def __init__(self, backend: TuningBackend, store: ObjectStore, training: TrainingSettings, work_dir: Path) -> None:
        self.backend = backend
        self.store = store
        self.training = training
        self.work_dir = work_dir
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._child: Optional[subprocess.Popen] = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._recover()
        self._thread = threading.Thread(target=self._work, name="job-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker; a job in training is left RUNNING so the next start resumes it."""
        self._stopping.set()
        self._kill_child()
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def _recover(self) -> None:
        for job in self.backend.jobs_in_states({JobState.JOB_STATE_CANCELLING}):
            self.backend.update_job(_job_id(job), **cancelled_fields())
        for job in self.backend.jobs_in_states({JobState.JOB_STATE_RUNNING}):
            job_id = _job_id(job)
            self.backend.clear_metrics(job_id)
            self.backend.update_job(job_id, state=JobState.JOB_STATE_PENDING, startTime=None, experiment=None)
            log.warning("tuning job %s was running when the emulator stopped; restarting it", job_id)
        for job in self.backend.jobs_in_states({JobState.JOB_STATE_PENDING, JobState.JOB_STATE_QUEUED}):
            self._queue.put(_job_id(job))

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is _STOP or self._stopping.is_set():
                return
            try:
                self._run(job_id)
            except NotFound:
                # A reset forgot the job mid-run; the worker must survive it (the runner keeps serving).
                log.info("tuning job %s was deleted while it ran", job_id)
                self.backend.clear_metrics(job_id)
            except Exception as error:  # a bug here must not kill the worker or leave the job RUNNING
                log.exception("tuning job %s crashed the runner", job_id)
                if not self._stopping.is_set():
                    self._finish(job_id, JobState.JOB_STATE_FAILED,
                                 error={"code": 13, "message": f"INTERNAL: emulator error: {error}"})

    def _run(self, job_id: str) -> None:
        job = self.backend.job_by_id(job_id)
        project, location = _project_location(job)
        started = self.backend.update_job(job_id, only_if_state_in={JobState.JOB_STATE_PENDING},
                                          state=JobState.JOB_STATE_RUNNING, startTime=now_rfc3339(),
                                          experiment=experiment_context_name(project, location, job_id))
        if started is None:
            return  # cancelled while queued
        job_dir = self.work_dir / job_id
        shutil.rmtree(job_dir, ignore_errors=True)
        job_dir.mkdir(parents=True)
        try:
            self._prepare(job, job_dir)
            self._train(job_id, job_dir)
        except JobFailed as failure:
            self._finish(job_id, JobState.JOB_STATE_FAILED, error={"code": failure.code, "message": str(failure)})
            return
        if self._stopping.is_set() or self._cancelled(job_id):
            return
        record = self.backend.insert_tuned_model(project, location, job_id,
                                                 job.get("tunedModelDisplayName") or job_id,
                                                 str(job_dir / "model"))
        self._finish(job_id, JobState.JOB_STATE_SUCCEEDED,
                     tunedModel={"model": record.model_name, "endpoint": record.endpoint_name})

    def _prepare(self, job: dict[str, Any], job_dir: Path) -> None:
        """Validate both datasets with the project's validator and write the child's request file."""
        spec = job.get("supervisedTuningSpec") or {}
        train = self._read_dataset(spec["trainingDatasetUri"], "training")
        validation = (self._read_dataset(spec["validationDatasetUri"], "validation")
                      if spec.get("validationDatasetUri") else None)
        hyper = spec.get("hyperParameters") or {}
        epochs = int(hyper.get("epochCount") or 1)
        request = {
            "train": [example_pairs(turns) for turns in train],
            "validation": [example_pairs(turns) for turns in validation] if validation else None,
            "settings": self.training.model_dump(),
            "epochs": epochs,
            "learningRateMultiplier": float(hyper.get("learningRateMultiplier") or 1.0),
        }
        stats = supervised_tuning_data_stats(train, tuning_step_count=self.training.steps * epochs)
        self.backend.update_job(_job_id(job), tuningDataStats={"supervisedTuningDataStats": stats})
        (job_dir / "request.json").write_text(json.dumps(request))

    def _read_dataset(self, uri: str, kind: str) -> list[list[tuple[str, str]]]:
        try:
            bucket, name = ObjectStore.parse_gs_uri(uri)
            with self.store.open_object(bucket, name) as stream:
                report = validate_stream(stream, name=uri, kind=kind)
            if not report.ok:
                shown = "; ".join(str(problem) for problem in report.problems[:5])
                more = report.problem_count - 5
                raise JobFailed(3, f"INVALID_ARGUMENT: {kind} dataset {uri} is invalid: {shown}"
                                   + (f" (and {more} more)" if more > 0 else ""))
            with self.store.open_object(bucket, name) as stream:
                return [turns for _line, turns in iter_examples(stream)]
        except GoogleApiError as error:
            raise JobFailed(5 if error.http_status == 404 else 3, f"{error.status}: {kind} dataset: {error.message}")

    def _train(self, job_id: str, job_dir: Path) -> None:
        stderr_path = job_dir / "trainer.log"
        # The persistent compilation cache lets later jobs of the same model shape skip the JIT (~5 s).
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1",
               "JAX_COMPILATION_CACHE_DIR": str(self.work_dir.parent / "jax-cache")}
        with open(stderr_path, "wb") as stderr:
            self._child = child = subprocess.Popen(
                [sys.executable, "-m", "emulator.trainer", str(job_dir)], stdout=subprocess.PIPE,
                stderr=stderr, env=env, cwd=PROJECT_ROOT, start_new_session=True)
            reader = threading.Thread(target=self._read_metrics, args=(job_id, child), daemon=True)
            reader.start()
            while child.poll() is None:
                try:
                    child.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
                if self._stopping.is_set() or self._cancel_requested(job_id):
                    self._kill_child()
            reader.join(timeout=5)
            self._child = None
        if self._stopping.is_set():
            return
        if self._cancel_requested(job_id):
            self.backend.update_job(job_id, **cancelled_fields())
            return
        if child.returncode != 0:
            tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise JobFailed(13, f"INTERNAL: training exited with status {child.returncode}: {' | '.join(tail)}")

    def _read_metrics(self, job_id: str, child: subprocess.Popen) -> None:
        for raw in child.stdout:
            line = raw.decode("utf-8", errors="replace")
            if line.startswith(METRIC_PREFIX):
                point = json.loads(line[len(METRIC_PREFIX):])
                self.backend.add_metric_point(job_id, point["step"], point["metrics"])

    def _kill_child(self) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _cancel_requested(self, job_id: str) -> bool:
        try:
            return self.backend.job_by_id(job_id)["state"] == JobState.JOB_STATE_CANCELLING.value
        except NotFound:
            return True  # deleted by a reset: stop training it like a cancel

    def _cancelled(self, job_id: str) -> bool:
        return self.backend.job_by_id(job_id)["state"] in (JobState.JOB_STATE_CANCELLED.value,
                                                           JobState.JOB_STATE_CANCELLING.value)

    def _finish(self, job_id: str, state: JobState, **fields: Any) -> None:
        self.backend.update_job(job_id, only_if_state_in={JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_PENDING},
                                state=state, endTime=now_rfc3339(), **fields)


def _job_id(job: dict[str, Any]) -> str:
    return job["name"].rsplit("/", 1)[1]


def _project_location(job: dict[str, Any]) -> tuple[str, str]:
    parts = job["name"].split("/")
    return parts[1], parts[3]
