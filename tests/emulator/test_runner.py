"""The job runner: the end of a run is atomic with a cancel, bounded memory, a robust metric reader, reset, orphans.

Most tests drive `JobRunner.run` synchronously on a runner that was never started, with a store that serves
local files, and put a cancel at an exact point of the run by wrapping one of the runner's steps (no sleeps).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator import job_runner as runner_module
from emulator import training_data
from emulator.db import Database
from emulator.errors import FailedPrecondition, Internal, NotFound
from emulator.job_runner import JobRunner
from emulator.job_store import JobStore
from emulator.jobs import ENDED_STATES, JobState
from emulator.model import base_model
from emulator.settings import TrainingSettings
from emulator.stats import distribution, supervised_tuning_data_stats
from emulator.trainer_process import METRIC_PREFIX, PARENT_PID_ENV
from emulator.training_data import JobFailed, Reservoir, prepare_training_run
from emulator.tuned_models import TunedModels
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, control, upload
from tests.emulator.helpers import wait_for, wait_until_ended, wait_until_state
from tuning import dataset as dataset_module
from tuning.dataset import example_pairs, iter_examples

TINY = TrainingSettings(d_model=16, n_layers=1, n_heads=2, max_len=64, batch_size=2, steps=4, eval_every=2)
BUCKET = "datasets"


def example_line(i: int) -> str:
    return json.dumps({"contents": [{"role": "user", "parts": [{"text": f"English: sentence {i}. Spanish:"}]},
                                    {"role": "model", "parts": [{"text": f"frase {i}."}]}]})


def write_dataset(path: Path, count: int, *, broken_last_line: bool = False) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            out.write(example_line(i) + "\n")
        if broken_last_line:
            out.write('{"contents": [{"role": "user"\n')
    return path


class LocalStore:
    """The runner's view of the object store (`open_object`), serving local files; counts the opens."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.opens: dict[str, int] = {}

    def add(self, name: str, path: Path) -> str:
        self.files[name] = path
        return f"gs://{BUCKET}/{name}"

    def open_object(self, bucket: str, name: str):
        if name not in self.files:
            raise NotFound(f"No such object: {bucket}/{name}")
        self.opens[name] = self.opens.get(name, 0) + 1
        return open(self.files[name], "rb")


class Harness:
    def __init__(self, root: Path, training: TrainingSettings = TINY) -> None:
        self.root = root
        db = Database(root / "state.sqlite3")
        self.backend = JobStore(db)
        self.tuned_models = TunedModels(db)
        self.store = LocalStore()
        self.runner = JobRunner(self.backend, self.store, training, root / "jobs")

    def create(self, training_uri: str, validation_uri: str | None = None, **hyper: Any) -> str:
        spec: dict[str, Any] = {"trainingDatasetUri": training_uri}
        if validation_uri:
            spec["validationDatasetUri"] = validation_uri
        if hyper:
            spec["hyperParameters"] = hyper
        body = self.backend.insert_job(PROJECT, LOCATION, {"baseModel": "translation-llm-002",
                                                           "supervisedTuningSpec": spec})
        return body["name"].rsplit("/", 1)[1]

    def cancel(self, job_id: str) -> None:
        self.backend.request_cancel(PROJECT, LOCATION, job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.backend.job_by_id(job_id)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def fake_train(harness: Harness, *, cancel: bool = False, fail: bool = False):
    """A stand-in for `JobRunner.train` that writes a model dir, optionally cancels the job as it returns."""
    calls: list[str] = []

    def train(job_id: str, job_dir: Path, *args: Any) -> bool:
        calls.append(job_id)
        (job_dir / "model").mkdir()
        if cancel:
            harness.cancel(job_id)
        if fail:
            raise JobFailed(Internal("training exited with status 1: boom"))
        return True

    train.calls = calls  # type: ignore[attr-defined]
    return train


def assert_cancelled_without_model(harness: Harness, job_id: str) -> None:
    job = harness.job(job_id)
    assert job["state"] == "JOB_STATE_CANCELLED", job
    assert job["error"]["code"] == 1
    assert "endTime" in job and "tunedModel" not in job
    assert harness.tuned_models.of_job(job_id) == []


# --- 1. the final transition and a cancel -----------------------------------------------------------------


def test_cancel_during_validation_of_a_dataset_broken_on_its_last_line_ends_cancelled(harness, tmp_path,
                                                                                          monkeypatch):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 50, broken_last_line=True))
    job_id = harness.create(uri)
    real_validate = training_data.validate_stream

    def cancel_then_validate(*args: Any, **kwargs: Any):
        harness.cancel(job_id)  # the user cancels while the runner reads the data
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(training_data, "validate_stream", cancel_then_validate)

    harness.runner.run(job_id)

    assert_cancelled_without_model(harness, job_id)


def test_cancel_during_preparation_starts_no_trainer(harness, tmp_path, monkeypatch):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 50))
    job_id = harness.create(uri)
    real_prepare = runner_module.prepare_training_run

    def prepare_then_cancel(*args: Any) -> Any:
        result = real_prepare(*args)
        harness.cancel(job_id)
        return result

    def no_child(*args: Any, **kwargs: Any):
        raise AssertionError("a trainer was started for a cancelled job")

    monkeypatch.setattr(runner_module, "prepare_training_run", prepare_then_cancel)
    monkeypatch.setattr(runner_module.subprocess, "Popen", no_child)

    harness.runner.run(job_id)

    assert_cancelled_without_model(harness, job_id)


def test_cancel_as_training_finishes_ends_cancelled_without_a_tuned_model(harness, tmp_path, monkeypatch):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 50))
    job_id = harness.create(uri)
    monkeypatch.setattr(harness.runner, "train", fake_train(harness, cancel=True))

    harness.runner.run(job_id)

    assert_cancelled_without_model(harness, job_id)


def test_cancel_just_before_the_final_transition_ends_cancelled(harness, tmp_path, monkeypatch):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 50))
    job_id = harness.create(uri)
    monkeypatch.setattr(harness.runner, "train", fake_train(harness))
    real_end = harness.backend.end_job

    def cancel_then_end(*args: Any, **kwargs: Any):
        harness.cancel(job_id)
        return real_end(*args, **kwargs)

    monkeypatch.setattr(harness.backend, "end_job", cancel_then_end)

    harness.runner.run(job_id)

    assert_cancelled_without_model(harness, job_id)


def test_cancel_just_after_the_final_transition_is_refused_and_the_model_stays(harness, tmp_path, monkeypatch):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 50))
    job_id = harness.create(uri)
    monkeypatch.setattr(harness.runner, "train", fake_train(harness))

    harness.runner.run(job_id)

    with pytest.raises(FailedPrecondition):
        harness.cancel(job_id)
    job = harness.job(job_id)
    [model] = harness.tuned_models.of_job(job_id)
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    assert job["tunedModel"] == {"model": model.model_name, "endpoint": model.endpoint_name}
    assert Path(model.model_dir).is_dir()


def test_trainer_failure_after_a_cancel_ends_cancelled(harness, tmp_path, monkeypatch):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 50))
    job_id = harness.create(uri)
    monkeypatch.setattr(harness.runner, "train", fake_train(harness, cancel=True, fail=True))

    harness.runner.run(job_id)

    assert_cancelled_without_model(harness, job_id)


def test_runner_crash_after_a_cancel_ends_cancelled_and_the_worker_survives(harness, tmp_path, monkeypatch):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 50))
    job_id = harness.create(uri)

    def crash(job_id: str, *args: Any) -> bool:
        harness.cancel(job_id)
        raise RuntimeError("bug")

    monkeypatch.setattr(harness.runner, "train", crash)
    harness.runner.submit("no-such-job")  # a job a reset forgot: the worker must go on
    harness.runner.start()  # queues the PENDING job after it
    try:
        wait_for(lambda: harness.job(job_id), lambda job: JobState[job["state"]] in ENDED_STATES, timeout=60)
    finally:
        harness.runner.stop()

    assert_cancelled_without_model(harness, job_id)


def test_served_cancel_while_a_broken_dataset_is_read_ends_cancelled(emulator, tmp_path, monkeypatch):
    uri = upload(emulator, BUCKET, "broken.jsonl", write_dataset(tmp_path / "broken.jsonl", 200,
                                                                   broken_last_line=True))
    backend = emulator.state.jobs
    real_validate = training_data.validate_stream

    def cancel_then_validate(*args: Any, **kwargs: Any):
        for job in backend.jobs_in_states({JobState.JOB_STATE_RUNNING}):  # the user cancels through the API
            requests.post(f"{emulator.url}/v1/{job['name']}:cancel", json={}, timeout=30).raise_for_status()
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(training_data, "validate_stream", cancel_then_validate)
    created = requests.post(f"{emulator.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs", timeout=30,
                            json={"baseModel": "translation-llm-002",
                                  "supervisedTuningSpec": {"trainingDatasetUri": uri}}).json()

    ended = wait_until_ended(lambda: requests.get(f"{emulator.url}/v1/{created['name']}", timeout=30).json(),
                             timeout=60)

    assert ended["state"] == "JOB_STATE_CANCELLED", ended
    assert ended["error"]["code"] == 1 and "tunedModel" not in ended


# --- 2. bounded memory, exact stats --------------------------------------------------------------------------


def test_preparation_memory_is_bounded_by_the_sample_not_the_dataset(harness, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_module, "READ_BLOCK_BYTES", 64 * 1024)
    path = write_dataset(tmp_path / "train.jsonl", 20_000)
    job_id = harness.create(harness.store.add("train.jsonl", path))
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    tracemalloc.start()
    try:
        _, data_stats = prepare_training_run(harness.job(job_id), harness.store, TINY, run_dir)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    request = json.loads((run_dir / "request.json").read_text())
    capacity = TINY.steps * TINY.batch_size
    stats = data_stats["supervisedTuningDataStats"]
    # 20,000 examples are ~1.4 MB of file and ~10x that as Python objects; a streamed run holds a few blocks.
    assert peak < path.stat().st_size / 2, f"peak {peak:,} bytes for a {path.stat().st_size:,}-byte dataset"
    assert len(request["train"]) == capacity
    assert stats["tuningDatasetExampleCount"] == "20000"
    with open(path, "rb") as stream:
        expected = supervised_tuning_data_stats((turns for _, turns in iter_examples(stream)),
                                                tuning_step_count=TINY.steps)
    assert stats == expected


def test_sample_is_deterministic_and_a_small_dataset_is_kept_whole_in_order(harness, tmp_path):
    big = harness.store.add("big.jsonl", write_dataset(tmp_path / "big.jsonl", 1000))
    small = harness.store.add("small.jsonl", write_dataset(tmp_path / "small.jsonl", 5))

    def prepared(uri: str) -> list[list[str]]:
        run_dir = tmp_path / f"run-{random.random()}"
        run_dir.mkdir()
        prepare_training_run(harness.job(harness.create(uri)), harness.store, TINY, run_dir)
        return json.loads((run_dir / "request.json").read_text())["train"]

    first, second = prepared(big), prepared(big)
    assert first == second and len(first) == TINY.steps * TINY.batch_size
    assert len({prompt for prompt, _ in first}) == len(first)
    with open(tmp_path / "small.jsonl", "rb") as stream:
        assert prepared(small) == [list(example_pairs(turns)) for _, turns in iter_examples(stream)]


def test_sample_size_counts_the_epochs(harness, tmp_path):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 100))
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    steps, _ = prepare_training_run(harness.job(harness.create(uri, epochCount=3)), harness.store, TINY, run_dir)

    assert steps == 3 * TINY.steps
    assert len(json.loads((run_dir / "request.json").read_text())["train"]) == 3 * TINY.steps * TINY.batch_size


def test_each_dataset_object_is_opened_once(harness, tmp_path):
    train = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 30))
    validation = harness.store.add("validation.jsonl", write_dataset(tmp_path / "validation.jsonl", 10))
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    prepare_training_run(harness.job(harness.create(train, validation)), harness.store, TINY, run_dir)

    assert harness.store.opens == {"train.jsonl": 1, "validation.jsonl": 1}
    assert len(json.loads((run_dir / "request.json").read_text())["validation"]) == 10


def test_reservoir_is_uniform_enough():
    hits = [0] * 100
    for seed in range(400):
        sample = Reservoir(10, seed=seed)
        for item in range(100):
            sample.add(item)
        for item in sample.items:
            hits[item] += 1
    # Each item is expected 40 times; the first and the last ones must not be favoured.
    assert 20 < min(hits) and max(hits) < 65
    assert sum(hits[:10]) < 600 and sum(hits[-10:]) > 200


def _reference_distribution(values: list[int], bucket_count: int = 5) -> dict[str, Any]:
    """The list-based implementation `distribution` replaced, kept as the oracle."""
    if not values:
        return {}
    ordered = sorted(values)
    low, high = ordered[0], ordered[-1]
    width = max(1, math.ceil((high - low + 1) / bucket_count))
    buckets = [{"count": sum(1 for v in ordered if left <= v < left + width), "left": left, "right": left + width}
               for left in range(low, high + 1, width)]

    def percentile(percent: float) -> float:
        rank = (len(ordered) - 1) * percent / 100
        lower, upper = math.floor(rank), math.ceil(rank)
        return ordered[lower] + (ordered[upper] - ordered[lower]) * (rank - lower)

    total = sum(ordered)
    return {"sum": str(total), "billableSum": str(total), "min": low, "max": high, "mean": total / len(ordered),
            "median": percentile(50), "p5": percentile(5), "p95": percentile(95), "buckets": buckets}


@pytest.mark.parametrize("seed", range(20))
def test_counted_distribution_equals_the_list_based_one(seed):
    rng = random.Random(seed)
    values = [rng.randint(1, rng.choice([1, 3, 40, 1000])) for _ in range(rng.randint(1, 300))]

    assert distribution(values) == _reference_distribution(values)
    assert json.dumps(distribution(values)) == json.dumps(_reference_distribution(values))


# --- 3. the metric reader ---------------------------------------------------------------------------------


class FakeChild:
    def __init__(self, lines: list[str]) -> None:
        self.lines = iter(line.encode() for line in lines)
        self.stdout = self.lines


def metric_line(step: int, **metrics: float) -> str:
    return METRIC_PREFIX + json.dumps({"step": step, "metrics": {f"/{k}": v for k, v in metrics.items()}}) + "\n"


def test_metric_reader_drops_non_finite_values_and_keeps_draining(harness):
    job_id = harness.create("gs://datasets/train.jsonl")
    child = FakeChild([
        "warming up\n",
        metric_line(10, train_total_loss=2.5, eval_total_loss=2.7),
        metric_line(20, train_total_loss=float("nan"), eval_total_loss=2.1),
        metric_line(25, train_total_loss=float("inf")),
        METRIC_PREFIX + "{not json\n",
        METRIC_PREFIX + '{"step": 27}\n',
        metric_line(30, train_total_loss=1.5, eval_total_loss=1.9),
    ])

    harness.runner.store_metrics(job_id, child.stdout)

    assert next(child.lines, None) is None  # every line was read
    series = harness.backend.metric_series(job_id)
    assert [(p["step"], p["value"]) for p in series["/train_total_loss"]] == [(10, 2.5), (30, 1.5)]
    assert [(p["step"], p["value"]) for p in series["/eval_total_loss"]] == [(10, 2.7), (20, 2.1), (30, 1.9)]


def test_metric_reader_survives_a_storage_error(harness, monkeypatch):
    job_id = harness.create("gs://datasets/train.jsonl")
    real_add = harness.backend.add_metric_point

    def flaky(job: str, step: int, metrics: dict[str, float]) -> None:
        if step == 10:
            raise RuntimeError("database is locked")
        real_add(job, step, metrics)

    monkeypatch.setattr(harness.backend, "add_metric_point", flaky)
    child = FakeChild([metric_line(10, train_total_loss=2.0), metric_line(20, train_total_loss=1.0)])

    harness.runner.store_metrics(job_id, child.stdout)

    assert [p["step"] for p in harness.backend.metric_series(job_id)["/train_total_loss"]] == [20]


def test_training_that_overruns_its_time_limit_fails(tmp_path, monkeypatch):
    harness = Harness(tmp_path, TINY.model_copy(update={"steps": 100000}))
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 20))
    job_id = harness.create(uri)
    monkeypatch.setattr(runner_module, "TIME_LIMIT_BASE_SECONDS", 1.0)
    monkeypatch.setattr(runner_module, "TIME_LIMIT_PER_STEP_SECONDS", 0.0)

    started = time.monotonic()
    harness.runner.run(job_id)

    job = harness.job(job_id)
    assert job["state"] == "JOB_STATE_FAILED", job
    assert job["error"]["code"] == 4
    assert job["error"]["message"].startswith("DEADLINE_EXCEEDED: training did not finish within 1 s")
    assert harness.tuned_models.of_job(job_id) == []
    assert time.monotonic() - started < 30


def test_time_limit_is_ten_minutes_plus_a_second_and_the_delay_per_step():
    settings = TINY.model_copy(update={"step_delay_seconds": 0.5})

    assert runner_module.training_time_limit(settings, 300) == 600 + 300 * 1.5


# --- 4. reset ---------------------------------------------------------------------------------------------


def test_reset_stops_the_trainer_and_empties_the_jobs_dir(slow_emulator, tmp_path):
    uri = upload(slow_emulator, BUCKET, "train.jsonl", SAMPLE_TRAIN)
    created = requests.post(f"{slow_emulator.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs",
                            json={"baseModel": "translation-llm-002",
                                  "supervisedTuningSpec": {"trainingDatasetUri": uri}}, timeout=30).json()
    wait_until_state(lambda: requests.get(f"{slow_emulator.url}/v1/{created['name']}", timeout=30).json(),
                     "JOB_STATE_RUNNING")
    state = slow_emulator.state
    child = wait_for(lambda: state.runner.trainer, lambda found: found is not None, timeout=60)
    base_model(TINY).save(tmp_path / "loaded")
    state.models.get(str(tmp_path / "loaded"))  # the app's own loaded-model cache holds a model
    assert len(state.models) == 1

    control(slow_emulator, "POST", "reset").raise_for_status()

    assert child.poll() is not None
    assert list(state.runner.work_dir.iterdir()) == []
    assert len(state.models) == 0


def test_runner_reset_without_a_job_keeps_an_empty_work_dir(harness):
    (harness.runner.work_dir / "123" / "run-1").mkdir(parents=True)
    (harness.runner.work_dir / "stray.txt").write_text("x")

    harness.runner.reset()

    assert list(harness.runner.work_dir.iterdir()) == []


# --- 5. orphans and run directories -----------------------------------------------------------------------


def test_a_rerun_uses_a_fresh_directory_and_removes_the_old_runs(harness, tmp_path, monkeypatch):
    uri = harness.store.add("train.jsonl", write_dataset(tmp_path / "train.jsonl", 20))
    job_id = harness.create(uri)
    old_run = harness.runner.work_dir / job_id / "run-old"
    (old_run / "model").mkdir(parents=True)
    monkeypatch.setattr(harness.runner, "train", fake_train(harness))

    harness.runner.run(job_id)

    [model] = harness.tuned_models.of_job(job_id)
    assert not old_run.exists()
    assert Path(model.model_dir).parent.parent == harness.runner.work_dir / job_id


def _slow_request(job_dir: Path) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    settings = TINY.model_copy(update={"steps": 100000, "step_delay_seconds": 0.05})
    (job_dir / "request.json").write_text(json.dumps({"train": [["a", "b"]], "validation": None,
                                                      "settings": settings.model_dump()}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_trainer_dies_when_its_parent_is_killed(tmp_path):
    _slow_request(tmp_path / "job")
    # A stand-in for the emulator: starts the trainer as the runner does, prints its pid, then waits.
    parent_code = (
        "import os, subprocess, sys, time\n"
        f"env = {{**os.environ, {PARENT_PID_ENV!r}: str(os.getpid())}}\n"
        "child = subprocess.Popen([sys.executable, '-m', 'emulator.trainer_process', sys.argv[1]], env=env,\n"
        "                         stdout=subprocess.DEVNULL, start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code, str(tmp_path / "job")], stdout=subprocess.PIPE,
                              cwd=runner_module.PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(runner_module.PROJECT_ROOT)})
    trainer_pid = int(parent.stdout.readline())
    try:
        time.sleep(1.0)  # let the trainer reach its prctl call (it is the first thing it does)
        assert _alive(trainer_pid)

        parent.kill()
        parent.wait()

        wait_for(lambda: _alive(trainer_pid), lambda alive: not alive, timeout=20)
    finally:
        if _alive(trainer_pid):
            os.kill(trainer_pid, signal.SIGKILL)
        parent.stdout.close()


def test_trainer_started_for_a_parent_that_is_gone_exits(tmp_path):
    _slow_request(tmp_path / "job")
    # The trainer's parent is this test process, not the pid the environment names.
    env = {**os.environ, "PYTHONPATH": str(runner_module.PROJECT_ROOT), PARENT_PID_ENV: str(os.getpid() + 1)}

    result = subprocess.run([sys.executable, "-m", "emulator.trainer_process", str(tmp_path / "job")], env=env,
                            cwd=runner_module.PROJECT_ROOT, capture_output=True, timeout=60)

    assert result.returncode == 1
    assert b"is gone" in result.stderr

