"""The unmodified GAPIC v1 clients (tuning and prediction, REST transport) against the served emulator."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1 as v1

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, SAMPLE_VALIDATION, emulator_settings, upload
from tests.emulator.helpers import wait_until_ended, wait_until_state

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
AdapterSize = v1.SupervisedHyperParameters.AdapterSize


def tuning_client(emulator: RunningEmulator) -> v1.GenAiTuningServiceClient:
    return v1.GenAiTuningServiceClient(client_options={"api_endpoint": emulator.url}, transport="rest",
                                       credentials=AnonymousCredentials())


def tuning_job(training_uri: str | None, *, validation_uri: str | None = None, base_model="translation-llm-002",
               labels: dict[str, str] | None = None, adapter_size: AdapterSize | None = None) -> v1.TuningJob:
    hyper = v1.SupervisedHyperParameters(adapter_size=adapter_size) if adapter_size else None
    spec = v1.SupervisedTuningSpec(training_dataset_uri=training_uri, validation_dataset_uri=validation_uri,
                                   hyper_parameters=hyper)
    return v1.TuningJob(base_model=base_model, supervised_tuning_spec=spec, tuned_model_display_name="gapic-tuned",
                        labels=labels or {})


def cancelled(client: v1.GenAiTuningServiceClient, job: v1.TuningJob) -> v1.TuningJob:
    """Cancel `job` and wait until it is CANCELLED (a RUNNING job passes through CANCELLING)."""
    client.cancel_tuning_job(name=job.name)
    return wait_until_state(lambda: client.get_tuning_job(name=job.name), "JOB_STATE_CANCELLED")


def error_status(error: gexc.GoogleAPICallError) -> str:
    """The canonical status of the error envelope (the REST client maps every 400 to BadRequest)."""
    return error.response.json()["error"]["status"]


# --- one successful job, shared by the module -----------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with serve_in_thread(emulator_settings(tmp_path_factory.mktemp("gapic-emulator"))) as running:
        yield running


@pytest.fixture(scope="module")
def created(served: RunningEmulator) -> v1.TuningJob:
    """The create response for a job on the sample datasets."""
    job = tuning_job(upload(served, "datasets", "train.jsonl", SAMPLE_TRAIN),
                     validation_uri=upload(served, "datasets", "validation.jsonl", SAMPLE_VALIDATION))
    return tuning_client(served).create_tuning_job(parent=PARENT, tuning_job=job)


@pytest.fixture(scope="module")
def succeeded(served: RunningEmulator, created: v1.TuningJob) -> v1.TuningJob:
    job = wait_until_ended(lambda: tuning_client(served).get_tuning_job(name=created.name))
    assert job.state == v1.JobState.JOB_STATE_SUCCEEDED, job.error
    return job


def test_create_returns_pending_job_with_server_assigned_name(created):
    assert re.fullmatch(rf"{PARENT}/tuningJobs/\d+", created.name)
    assert created.state == v1.JobState.JOB_STATE_PENDING


def test_create_response_has_no_experiment(created):
    assert created.experiment == ""


def test_get_of_succeeded_job_has_tuned_model_and_endpoint(succeeded):
    assert re.fullmatch(rf"{PARENT}/models/\d+@1", succeeded.tuned_model.model)
    assert re.fullmatch(rf"{PARENT}/endpoints/\d+", succeeded.tuned_model.endpoint)


def test_get_of_succeeded_job_has_experiment(succeeded):
    job_id = succeeded.name.rsplit("/", 1)[1]
    assert succeeded.experiment == f"{PARENT}/metadataStores/default/contexts/tuning-experiment-{job_id}"


def test_tuning_data_stats_count_the_training_examples(succeeded):
    lines = len(SAMPLE_TRAIN.read_text().splitlines())

    stats = succeeded.tuning_data_stats.supervised_tuning_data_stats

    assert stats.tuning_dataset_example_count == lines
    assert stats.total_billable_token_count > 0


def test_list_returns_the_job(served, succeeded):
    assert [job.name for job in tuning_client(served).list_tuning_jobs(parent=PARENT)] == [succeeded.name]


def test_prediction_client_generates_content_on_tuned_endpoint(served, succeeded):
    client = v1.PredictionServiceClient(client_options={"api_endpoint": served.url}, transport="rest",
                                        credentials=AnonymousCredentials())

    response = client.generate_content(model=succeeded.tuned_model.endpoint, contents=[
        v1.Content(role="user", parts=[v1.Part(text="English: Hello. Spanish:")])])

    assert response.candidates[0].content.parts[0].text
    assert response.usage_metadata.prompt_token_count > 0
    assert response.usage_metadata.candidates_token_count > 0


# --- create requests the service rejects ----------------------------------------------------------------

INVALID_CREATES = {
    "gemini-base-model": (LOCATION, dict(base_model="gemini-2.0-flash"),
                          "baseModel: unsupported base model 'gemini-2.0-flash'"),
    "europe-west4": ("europe-west4", {}, "location: translation tuning runs only in us-central1, got 'europe-west4'"),
    "https-uri": (LOCATION, dict(training_uri="https://x/y.jsonl"),
                  "supervisedTuningSpec.trainingDatasetUri: expected gs://BUCKET/OBJECT, got 'https://x/y.jsonl'"),
    "missing-uri": (LOCATION, dict(training_uri=None), "supervisedTuningSpec.trainingDatasetUri: is required"),
    "adapter-size-eight": (LOCATION, dict(adapter_size=AdapterSize.ADAPTER_SIZE_EIGHT),
                           "supervisedTuningSpec.hyperParameters.adapterSize: translation-llm-002 supports adapter "
                           "size 4 only, got 8"),
    "missing-object": (LOCATION, dict(training_uri="gs://datasets/missing.jsonl"),
                       "supervisedTuningSpec.trainingDatasetUri: dataset gs://datasets/missing.jsonl does not exist"),
}


@pytest.mark.parametrize("location, overrides, message", INVALID_CREATES.values(), ids=INVALID_CREATES.keys())
def test_create_rejects_invalid_request_naming_the_field(served, location, overrides, message):
    fields = {"training_uri": upload(served, "datasets", "train.jsonl", SAMPLE_TRAIN)} | overrides
    job = tuning_job(fields.pop("training_uri"), **fields)

    with pytest.raises(gexc.BadRequest) as raised:
        tuning_client(served).create_tuning_job(parent=f"projects/{PROJECT}/locations/{location}", tuning_job=job)

    assert message in raised.value.message
    assert error_status(raised.value) == "INVALID_ARGUMENT"


def test_get_of_missing_job_raises_not_found(served):
    name = f"{PARENT}/tuningJobs/123"

    with pytest.raises(gexc.NotFound) as raised:
        tuning_client(served).get_tuning_job(name=name)

    assert f"TuningJob {name} not found." in raised.value.message


# --- jobs that end early, each test on a fresh emulator -------------------------------------------------


@pytest.fixture
def client(emulator: RunningEmulator) -> v1.GenAiTuningServiceClient:
    return tuning_client(emulator)


@pytest.fixture
def five_jobs(client, sample_uris) -> list[v1.TuningJob]:
    """Five jobs in creation order, each cancelled at once so the runner never trains."""
    jobs = []
    for _ in range(5):
        job = client.create_tuning_job(parent=PARENT, tuning_job=tuning_job(sample_uris[0]))
        client.cancel_tuning_job(name=job.name)
        jobs.append(job)
    return jobs


def test_list_pager_yields_every_job_newest_first(client, five_jobs):
    pager = client.list_tuning_jobs(request=v1.ListTuningJobsRequest(parent=PARENT, page_size=2))

    assert [job.name for job in pager] == [job.name for job in reversed(five_jobs)]


def test_list_pages_hold_at_most_page_size_jobs(client, five_jobs):
    pager = client.list_tuning_jobs(request=v1.ListTuningJobsRequest(parent=PARENT, page_size=2))

    assert [len(page.tuning_jobs) for page in pager.pages] == [2, 2, 1]


@pytest.fixture
def team_jobs(client, sample_uris) -> tuple[v1.TuningJob, v1.TuningJob]:
    """(team a's job, CANCELLED; team b's job, still PENDING or RUNNING)."""
    job_a = client.create_tuning_job(parent=PARENT, tuning_job=tuning_job(sample_uris[0], labels={"team": "a"}))
    job_b = client.create_tuning_job(parent=PARENT, tuning_job=tuning_job(sample_uris[0], labels={"team": "b"}))
    return cancelled(client, job_a), job_b


def test_list_filters_on_label(client, team_jobs):
    listed = client.list_tuning_jobs(request=v1.ListTuningJobsRequest(parent=PARENT, filter='labels.team="a"'))

    assert [job.name for job in listed] == [team_jobs[0].name]


def test_list_filters_on_state(client, team_jobs):
    listed = client.list_tuning_jobs(request=v1.ListTuningJobsRequest(parent=PARENT,
                                                                      filter='state="JOB_STATE_CANCELLED"'))

    assert [job.name for job in listed] == [team_jobs[0].name]


def test_list_rejects_unsupported_filter(client):
    with pytest.raises(gexc.BadRequest) as raised:
        list(client.list_tuning_jobs(request=v1.ListTuningJobsRequest(parent=PARENT, filter='display_name="x"')))

    assert "Unsupported filter term 'display_name=\"x\"': unknown field 'display_name'" in raised.value.message
    assert error_status(raised.value) == "INVALID_ARGUMENT"


def test_cancel_sets_cancelled_state_and_error_code_1(client, sample_uris):
    job = client.create_tuning_job(parent=PARENT, tuning_job=tuning_job(sample_uris[0]))

    ended = cancelled(client, job)

    assert ended.error.code == 1
    assert ended.end_time


def test_cancel_of_ended_job_raises_failed_precondition(client, sample_uris):
    job = cancelled(client, client.create_tuning_job(parent=PARENT, tuning_job=tuning_job(sample_uris[0])))

    with pytest.raises(gexc.BadRequest) as raised:
        client.cancel_tuning_job(name=job.name)

    assert f"Cannot cancel tuning job {job.name} in state JOB_STATE_CANCELLED." in raised.value.message
    assert error_status(raised.value) == "FAILED_PRECONDITION"


@pytest.fixture
def broken_dataset_uri(emulator: RunningEmulator, dataset_files: tuple[Path, Path]) -> str:
    """The sample training file with line 3's model turn given the role "assistant"."""
    train, _ = dataset_files
    lines = train.read_text().splitlines(keepends=True)
    assert '"role":"model"' in lines[2]
    lines[2] = lines[2].replace('"role":"model"', '"role":"assistant"')
    train.write_text("".join(lines))
    return upload(emulator, "datasets", "broken.jsonl", train)


def test_dataset_with_broken_line_fails_job_naming_file_line_and_rule(client, broken_dataset_uri):
    job = client.create_tuning_job(parent=PARENT, tuning_job=tuning_job(broken_dataset_uri))

    ended = wait_until_ended(lambda: client.get_tuning_job(name=job.name))

    assert ended.state == v1.JobState.JOB_STATE_FAILED
    assert ended.error.code == 3
    assert (f'{broken_dataset_uri}:3: contents[1].role: expected "user" or "model", got "assistant"'
            in ended.error.message)
