"""The documented vertexai SDK workflow (sft.train, poll, tuned endpoint, experiment) against the served emulator."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

import pytest
import vertexai
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from vertexai.generative_models import GenerativeModel
from vertexai.tuning import sft

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, SAMPLE_VALIDATION, emulator_settings, upload
from tests.emulator.helpers import wait_for, wait_until_state

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated as of June 24, 2025.*:UserWarning")

JOB_PREFIX = f"projects/{PROJECT}/locations/{LOCATION}"


@contextmanager
def sdk_pointed_at(emulator: RunningEmulator) -> Iterator[None]:
    """`vertexai.init` with the five arguments a plain-http emulator needs (docs/emulator.md), undone afterwards (it mutates the SDK's global config)."""
    config = initializer.global_config
    saved = dict(vars(config))
    vertexai.init(project=PROJECT, location=LOCATION, api_endpoint=emulator.url, api_transport="rest",
                  credentials=AnonymousCredentials())
    try:
        yield
    finally:
        vars(config).clear()
        vars(config).update(saved)


def refreshed(job: sft.SupervisedTuningJob) -> sft.SupervisedTuningJob:
    job.refresh()
    return job


def train_sample(emulator: RunningEmulator) -> sft.SupervisedTuningJob:
    """`sft.train` on the sample datasets, as the translation tuning docs call it."""
    return sft.train(source_model="translation-llm-002",
                     train_dataset=upload(emulator, "datasets", "train.jsonl", SAMPLE_TRAIN),
                     validation_dataset=upload(emulator, "datasets", "validation.jsonl", SAMPLE_VALIDATION),
                     tuned_model_display_name="sdk-tuned")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for the module, so the seed workflow trains once."""
    with serve_in_thread(emulator_settings(tmp_path_factory.mktemp("sdk-emulator"))) as running:
        yield running


@pytest.fixture(scope="module")
def tuned_job(served: RunningEmulator) -> sft.SupervisedTuningJob:
    """The seed workflow: sft.train, then `refresh()` until `has_ended` (bounded)."""
    with sdk_pointed_at(served):
        job = train_sample(served)
        return wait_for(lambda: refreshed(job), lambda current: current.has_ended)


@pytest.fixture
def sdk(served: RunningEmulator) -> Iterator[None]:
    with sdk_pointed_at(served):
        yield


def test_sft_train_job_succeeds(tuned_job, sdk):
    assert tuned_job.has_succeeded, tuned_job.error
    assert tuned_job.state.name == "JOB_STATE_SUCCEEDED"


def test_tuned_model_name_is_a_model_version(tuned_job, sdk):
    assert re.fullmatch(rf"{JOB_PREFIX}/models/\d+@1", tuned_job.tuned_model_name)


def test_tuned_model_endpoint_name_is_an_endpoint(tuned_job, sdk):
    assert re.fullmatch(rf"{JOB_PREFIX}/endpoints/\d+", tuned_job.tuned_model_endpoint_name)


def test_experiment_is_an_aiplatform_experiment(tuned_job, sdk):
    experiment = tuned_job.experiment

    assert isinstance(experiment, aiplatform.Experiment)
    job_id = tuned_job.resource_name.rsplit("/", 1)[1]
    assert experiment.resource_name == f"{JOB_PREFIX}/metadataStores/default/contexts/tuning-experiment-{job_id}"


def test_generate_content_on_tuned_endpoint_returns_text(tuned_job, sdk):
    response = GenerativeModel(tuned_job.tuned_model_endpoint_name).generate_content("English: Hello. Spanish:")

    assert isinstance(response.text, str) and response.text
    assert response.candidates[0].content.role == "model"


def test_generate_content_reports_token_usage(tuned_job, sdk):
    usage = GenerativeModel(tuned_job.tuned_model_endpoint_name).generate_content(
        "English: Hello. Spanish:").usage_metadata

    assert usage.prompt_token_count > 0
    assert usage.candidates_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


def test_list_returns_the_job(tuned_job, sdk):
    listed = sft.SupervisedTuningJob.list()

    assert [job.resource_name for job in listed] == [tuned_job.resource_name]


def test_cancel_running_job_ends_cancelled_with_code_1(slow_emulator):
    with sdk_pointed_at(slow_emulator):
        job = train_sample(slow_emulator)
        wait_until_state(lambda: refreshed(job), "JOB_STATE_RUNNING")

        job.cancel()
        wait_for(lambda: refreshed(job), lambda current: current.has_ended)

        assert job.state.name == "JOB_STATE_CANCELLED"
        assert job.error.code == 1
