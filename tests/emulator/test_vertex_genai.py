"""The unmodified google-genai client (the vertexai SDK's successor) against the served emulator."""

from __future__ import annotations

import re
from typing import Iterator, Optional

import pytest
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, SAMPLE_VALIDATION, emulator_settings, upload
from tests.emulator.helpers import wait_until_ended, wait_until_state

pytestmark = pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def genai_client(emulator: RunningEmulator, api_version: Optional[str] = "v1") -> genai.Client:
    """A Vertex AI client on the emulator; api_version None keeps the client's default (v1beta1)."""
    # AnonymousCredentials fail here: google-genai refreshes credentials that carry no token.
    options = types.HttpOptions(base_url=emulator.url + "/", api_version=api_version)
    return genai.Client(vertexai=True, project=PROJECT, location=LOCATION, credentials=Credentials(token="fake"),
                        http_options=options)


def tune(client: genai.Client, training_uri: str, validation_uri: Optional[str] = None) -> types.TuningJob:
    config = types.CreateTuningJobConfig(
        epoch_count=1, adapter_size="ADAPTER_SIZE_FOUR", learning_rate_multiplier=1.0, tuned_model_display_name="genai",
        validation_dataset=types.TuningValidationDataset(gcs_uri=validation_uri) if validation_uri else None)
    return client.tunings.tune(base_model="translation-llm-002",
                               training_dataset=types.TuningDataset(gcs_uri=training_uri), config=config)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with serve_in_thread(emulator_settings(tmp_path_factory.mktemp("genai-emulator"))) as running:
        yield running


@pytest.fixture(scope="module")
def created(served: RunningEmulator) -> types.TuningJob:
    """The job `tunings.tune` returned (v1)."""
    client = genai_client(served)
    return tune(client, upload(served, "datasets", "train.jsonl", SAMPLE_TRAIN),
                upload(served, "datasets", "validation.jsonl", SAMPLE_VALIDATION))


@pytest.fixture(scope="module")
def succeeded(served: RunningEmulator, created: types.TuningJob) -> types.TuningJob:
    client = genai_client(served)
    job = wait_until_ended(lambda: client.tunings.get(name=created.name))
    assert job.has_succeeded, job.error
    return job


@pytest.fixture
def client(served: RunningEmulator) -> genai.Client:
    # Hold the client in a variable: a collected genai.Client closes the HTTP session its pagers still use.
    return genai_client(served)


def test_tune_returns_pending_job(created):
    assert re.fullmatch(rf"{PARENT}/tuningJobs/\d+", created.name)
    assert created.state == types.JobState.JOB_STATE_PENDING


def test_tune_echoes_hyperparameters(created):
    hyper = created.supervised_tuning_spec.hyper_parameters

    assert (hyper.epoch_count, hyper.adapter_size) == (1, types.AdapterSize.ADAPTER_SIZE_FOUR)


def test_get_of_succeeded_job_has_tuned_endpoint(succeeded):
    assert succeeded.state == types.JobState.JOB_STATE_SUCCEEDED
    assert re.fullmatch(rf"{PARENT}/endpoints/\d+", succeeded.tuned_model.endpoint)


def test_list_returns_the_job(client, succeeded):
    assert [job.name for job in client.tunings.list()] == [succeeded.name]


def test_generate_content_on_tuned_endpoint_returns_text(client, succeeded):
    response = client.models.generate_content(model=succeeded.tuned_model.endpoint,
                                              contents="English: Good morning. Spanish:")

    assert isinstance(response.text, str) and response.text
    assert response.usage_metadata.prompt_token_count > 0
    assert response.usage_metadata.candidates_token_count > 0


def test_generate_content_over_v1beta1_returns_text(served, succeeded):
    client = genai_client(served, api_version=None)

    response = client.models.generate_content(model=succeeded.tuned_model.endpoint,
                                              contents="English: Good morning. Spanish:")

    assert response.text


def test_cancel_of_ended_job_raises_failed_precondition(client, succeeded):
    with pytest.raises(errors.ClientError) as raised:
        client.tunings.cancel(name=succeeded.name)

    assert (raised.value.code, raised.value.status) == (400, "FAILED_PRECONDITION")
    assert raised.value.message == (f"Cannot cancel tuning job {succeeded.name} in state JOB_STATE_SUCCEEDED.")


def test_get_of_missing_job_raises_not_found(client):
    name = f"{PARENT}/tuningJobs/123"

    with pytest.raises(errors.ClientError) as raised:
        client.tunings.get(name=name)

    assert (raised.value.code, raised.value.status) == (404, "NOT_FOUND")
    assert raised.value.message == f"TuningJob {name} not found."


def test_default_v1beta1_client_tunes_and_cancels(emulator, sample_uris):
    client = genai_client(emulator, api_version=None)
    job = tune(client, sample_uris[0])

    client.tunings.cancel(name=job.name)
    ended = wait_until_state(lambda: client.tunings.get(name=job.name), "JOB_STATE_CANCELLED")

    assert ended.has_ended and not ended.has_succeeded
    assert ended.error.code == 1
