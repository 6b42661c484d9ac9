"""Retry deadlines of a few seconds (TT_RETRY_DEADLINE), and an emulator holding a tuned model for the read tests."""

from __future__ import annotations

from typing import Iterator

import pytest
import requests

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, SAMPLE_VALIDATION, emulator_settings, upload
from tests.emulator.helpers import wait_until_ended
from tests.faults.helpers import clear_faults
from tuning.client import RETRY_DEADLINE_ENV

# Long enough to ride out the few injected errors of a test on a loaded machine, short enough for a test suite.
CONVERGE_DEADLINE = "20"
# For the tests where retries must run out.
GIVE_UP_DEADLINE = "4"


@pytest.fixture(autouse=True)
def retry_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_DEADLINE_ENV, CONVERGE_DEADLINE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningEmulator, dict]]:
    """An emulator (shared by a module's tests) with one succeeded job: its tuned model, endpoint, experiment."""
    with serve_in_thread(emulator_settings(tmp_path_factory.mktemp("trained") / "emulator")) as running:
        train = upload(running, "datasets", "train.jsonl", SAMPLE_TRAIN)
        validation = upload(running, "datasets", "validation.jsonl", SAMPLE_VALIDATION)
        body = {"baseModel": "translation-llm-002", "tunedModelDisplayName": "faults",
                "supervisedTuningSpec": {"trainingDatasetUri": train, "validationDatasetUri": validation}}
        created = requests.post(f"{running.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs", json=body,
                                timeout=30).json()
        job = wait_until_ended(lambda: requests.get(f"{running.url}/v1/{created['name']}", timeout=30).json())
        assert job["state"] == "JOB_STATE_SUCCEEDED", job
        yield running, job


@pytest.fixture
def trained_emulator(trained: tuple[RunningEmulator, dict]) -> Iterator[RunningEmulator]:
    running, _ = trained
    yield running
    clear_faults(running.url)
