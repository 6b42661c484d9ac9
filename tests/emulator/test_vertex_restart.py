"""State survives an emulator restart on one data dir: jobs, metrics, endpoints, GCS objects, running jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1 as v1
from google.cloud import storage

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, SAMPLE_VALIDATION, emulator_settings, upload
from tests.emulator.helpers import wait_until_ended, wait_until_state

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SLOW = dict(steps=100000, step_delay_seconds=0.05)


def tuning_client(emulator: RunningEmulator) -> v1.GenAiTuningServiceClient:
    return v1.GenAiTuningServiceClient(client_options={"api_endpoint": emulator.url}, transport="rest",
                                       credentials=AnonymousCredentials())


def start_job(emulator: RunningEmulator) -> v1.TuningJob:
    spec = v1.SupervisedTuningSpec(
        training_dataset_uri=upload(emulator, "datasets", "train.jsonl", SAMPLE_TRAIN),
        validation_dataset_uri=upload(emulator, "datasets", "validation.jsonl", SAMPLE_VALIDATION))
    job = v1.TuningJob(base_model="translation-llm-002", supervised_tuning_spec=spec,
                       tuned_model_display_name="restart")
    return tuning_client(emulator).create_tuning_job(parent=PARENT, tuning_job=job)


def metrics(emulator: RunningEmulator, name: str) -> dict[str, Any]:
    response = requests.get(f"{emulator.url}/_emulator/v1/{name}/metrics", timeout=30)
    response.raise_for_status()
    return response.json()


@dataclass(frozen=True)
class Restarted:
    """A second emulator on the data dir of a first one, and what the first one showed before it stopped."""

    emulator: RunningEmulator
    job: v1.TuningJob
    metrics: dict[str, Any]


@pytest.fixture(scope="module")
def after_success(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restarted]:
    """A job that succeeded, then the emulator restarted."""
    data_dir = tmp_path_factory.mktemp("restart-emulator")
    with serve_in_thread(emulator_settings(data_dir)) as first:
        created = start_job(first)
        job = wait_until_ended(lambda: tuning_client(first).get_tuning_job(name=created.name))
        assert job.state == v1.JobState.JOB_STATE_SUCCEEDED, job.error
        before = metrics(first, job.name)
    with serve_in_thread(emulator_settings(data_dir)) as second:
        yield Restarted(second, job, before)


def test_succeeded_job_survives_restart(after_success):
    assert tuning_client(after_success.emulator).get_tuning_job(name=after_success.job.name) == after_success.job


def test_metrics_survive_restart(after_success):
    assert metrics(after_success.emulator, after_success.job.name) == after_success.metrics


def test_tuned_endpoint_serves_after_restart(after_success):
    client = v1.PredictionServiceClient(client_options={"api_endpoint": after_success.emulator.url},
                                        transport="rest", credentials=AnonymousCredentials())

    response = client.generate_content(model=after_success.job.tuned_model.endpoint, contents=[
        v1.Content(role="user", parts=[v1.Part(text="English: Hello. Spanish:")])])

    assert response.candidates[0].content.parts[0].text


def test_gcs_objects_survive_restart(after_success):
    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": after_success.emulator.url})

    assert client.bucket("datasets").blob("train.jsonl").download_as_bytes() == SAMPLE_TRAIN.read_bytes()


@pytest.fixture
def after_running(tmp_path: Path) -> Iterator[Restarted]:
    """A slow job stopped in the middle of training, then the emulator restarted."""
    with serve_in_thread(emulator_settings(tmp_path / "emulator", **SLOW)) as first:
        created = start_job(first)
        job = wait_until_state(lambda: tuning_client(first).get_tuning_job(name=created.name), "JOB_STATE_RUNNING")
    with serve_in_thread(emulator_settings(tmp_path / "emulator", **SLOW)) as second:
        yield Restarted(second, job, {})


def test_job_running_at_shutdown_restarts_from_scratch(after_running):
    client = tuning_client(after_running.emulator)
    name = after_running.job.name

    restarted = wait_until_state(lambda: client.get_tuning_job(name=name), "JOB_STATE_RUNNING")

    assert restarted.start_time > after_running.job.start_time


def test_job_restarted_after_shutdown_can_be_cancelled(after_running):
    client = tuning_client(after_running.emulator)
    name = after_running.job.name

    client.cancel_tuning_job(name=name)
    ended = wait_until_ended(lambda: client.get_tuning_job(name=name), timeout=60)

    assert ended.state == v1.JobState.JOB_STATE_CANCELLED
    assert ended.error.code == 1
