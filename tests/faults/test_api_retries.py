"""Every call family converges through injected 429/5xx errors and lost answers, and repeats nothing it must not.

The adapters (`tuning.client`, `tuning.storage`, `tuning.prediction`, `tuning.models_api`) are called in-process
against a served emulator whose `/_emulator/faults` route answers errors before serving a request, or after it
(`lost=True`: the work is done and its answer lost, the case that makes a careless retry repeat a create).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import requests
from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1 import JobState, TuningJob

from emulator.server import serve_in_thread
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, emulator_settings
from tests.emulator.helpers import wait_until_ended
from tests.faults.helpers import (
    BUCKET,
    BUCKETS,
    CANCEL,
    ENDPOINT,
    GENERATE,
    JOB,
    JOBS,
    METADATA,
    MODEL,
    OBJECT,
    TENSORBOARD,
    UNDEPLOY,
    UPLOAD,
    add_fault,
    big_file,
    not_fully_injected,
)
from tuning.client import RETRY_DEADLINE_ENV, ApiTarget, TuningApi
from tuning.models_api import ModelsApi
from tuning.prediction import PredictionApi
from tuning.storage import CHUNK_BYTES, StorageApi

LABEL = "pulumi-tuning-key"


def jobs(url: str) -> list[dict]:
    response = requests.get(f"{url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs", timeout=30)
    return response.json().get("tuningJobs", [])


def job_request(train_uri: str, value: str = "faults") -> TuningJob:
    return TuningJob(base_model="translation-llm-002", tuned_model_display_name="faults", labels={LABEL: value},
                     supervised_tuning_spec=aiplatform_v1.SupervisedTuningSpec(training_dataset_uri=train_uri))


def create(api: TuningApi, train_uri: str) -> tuple[TuningJob, bool]:
    return api.create_or_adopt(job_request(train_uri), LABEL, "faults", adoptable={
        JobState.JOB_STATE_PENDING, JobState.JOB_STATE_QUEUED, JobState.JOB_STATE_RUNNING,
        JobState.JOB_STATE_SUCCEEDED})


def stored_md5(url: str, bucket: str, name: str) -> str:
    response = requests.get(f"{url}/download/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}",
                            params={"alt": "media"}, timeout=60)
    response.raise_for_status()
    return hashlib.md5(response.content).hexdigest()


# --- Vertex AI tuningJobs ---------------------------------------------------------------------------------

def test_a_create_whose_answer_was_lost_is_adopted_not_repeated(emulator, sample_uris, tuning_api):
    add_fault(emulator.url, JOBS, "GET", 503, times=2)          # the label look-ups before the create
    add_fault(emulator.url, JOBS, "POST", 503, lost=True)       # the job starts, its answer is lost

    job, created = create(tuning_api, sample_uris[0])

    assert created is False  # adopted through its label
    assert [found["name"] for found in jobs(emulator.url)] == [job.name]
    assert not_fully_injected(emulator.url) == []


def test_a_create_refused_with_429_then_500_is_sent_again_and_starts_one_job(emulator, sample_uris, monkeypatch):
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "10")  # after each refused create, the label is looked for 10/8 s
    add_fault(emulator.url, JOBS, "POST", 429)
    add_fault(emulator.url, JOBS, "POST", 500)

    job, created = create(TuningApi(ApiTarget(PROJECT, LOCATION, emulator.url)), sample_uris[0])

    assert created is True
    assert [found["name"] for found in jobs(emulator.url)] == [job.name]
    assert not_fully_injected(emulator.url) == []


def test_get_and_list_ride_out_503_500_and_429(emulator, sample_uris, tuning_api):
    job, _ = create(tuning_api, sample_uris[0])
    for status in (503, 500, 429):
        add_fault(emulator.url, JOB, "GET", status)
        add_fault(emulator.url, JOBS, "GET", status, lost=True)

    assert tuning_api.get_tuning_job(job.name).name == job.name
    assert [listed.name for listed in tuning_api.list_tuning_jobs()] == [job.name]
    assert not_fully_injected(emulator.url) == []


def test_a_cancel_whose_answer_was_lost_still_cancels_the_job(slow_emulator):
    from tests.conftest import upload

    api = TuningApi(ApiTarget(PROJECT, LOCATION, slow_emulator.url))
    job, _ = create(api, upload(slow_emulator, "datasets", "train.jsonl", SAMPLE_TRAIN))
    add_fault(slow_emulator.url, CANCEL, "POST", 500)
    add_fault(slow_emulator.url, CANCEL, "POST", 503, lost=True)

    api.cancel_tuning_job(job.name)

    ended = wait_until_ended(lambda: api.get_tuning_job(job.name), timeout=120)
    assert ended.state == JobState.JOB_STATE_CANCELLED
    assert not_fully_injected(slow_emulator.url) == []


def test_connection_errors_are_retried_until_the_service_answers(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    up, done = threading.Event(), threading.Event()

    def serve_later() -> None:
        time.sleep(1.0)  # the first attempts find nothing listening: connection refused
        settings = emulator_settings(tmp_path / "emulator").model_copy(update={"port": port})
        with serve_in_thread(settings):
            up.set()
            done.wait(120)

    server = threading.Thread(target=serve_later, daemon=True)
    server.start()
    try:
        target = ApiTarget(PROJECT, LOCATION, url)
        started = time.monotonic()
        assert StorageApi(target).bucket_exists("late-bucket") is False
        assert list(TuningApi(target).list_tuning_jobs()) == []
        assert up.is_set() and time.monotonic() - started >= 1.0
    finally:
        done.set()
        server.join(30)


# --- experiment reads (ML Metadata, TensorBoard) ----------------------------------------------------------

def test_the_experiment_read_rides_out_metadata_and_tensorboard_errors(trained, trained_emulator):
    _, created = trained
    api = TuningApi(ApiTarget(PROJECT, LOCATION, trained_emulator.url))
    job = api.get_tuning_job(created["name"])
    expected = api.experiment_metrics(job)
    assert len(expected) == 6
    add_fault(trained_emulator.url, METADATA, "GET", 503, times=2)
    add_fault(trained_emulator.url, METADATA, "GET", 429, lost=True)
    add_fault(trained_emulator.url, TENSORBOARD, "GET", 500, times=2)

    assert api.experiment_metrics(job) == expected
    assert not_fully_injected(trained_emulator.url) == []


# --- Cloud Storage ----------------------------------------------------------------------------------------

def test_bucket_insert_and_patch_whose_answers_were_lost_end_as_asked(emulator):
    storage = StorageApi(ApiTarget(PROJECT, LOCATION, emulator.url))
    add_fault(emulator.url, BUCKET, "GET", 503)
    add_fault(emulator.url, BUCKETS, "POST", 503, lost=True)   # created, answer lost: the retry gets 409

    storage.ensure_bucket("fault-bucket", location="US-CENTRAL1", labels={"team": "ml"})
    add_fault(emulator.url, BUCKET, "PATCH", 429)
    add_fault(emulator.url, BUCKET, "PATCH", 500, lost=True)
    storage.set_bucket_labels("fault-bucket", {"team": "nlp"})

    assert storage.bucket_labels("fault-bucket") == {"team": "nlp"}
    assert not_fully_injected(emulator.url) == []


def test_a_multipart_upload_whose_answer_was_lost_keeps_the_one_object(emulator, tmp_path):
    storage = StorageApi(ApiTarget(PROJECT, LOCATION, emulator.url))
    storage.ensure_bucket("fault-bucket", location="US-CENTRAL1")
    add_fault(emulator.url, UPLOAD, "POST", 429)
    add_fault(emulator.url, UPLOAD, "POST", 503, lost=True)    # stored, answer lost: the retry gets 412

    storage.upload_file("fault-bucket", "datasets/train.jsonl", SAMPLE_TRAIN)

    assert not_fully_injected(emulator.url) == []
    add_fault(emulator.url, OBJECT, "GET", 503, times=2)
    assert storage.object_exists("fault-bucket", "datasets/train.jsonl") is True
    assert stored_md5(emulator.url, "fault-bucket", "datasets/train.jsonl") == \
        hashlib.md5(SAMPLE_TRAIN.read_bytes()).hexdigest()


def test_a_resumable_upload_rides_out_errors_and_lost_answers_on_its_chunks(emulator, tmp_path):
    path = big_file(tmp_path, CHUNK_BYTES + 300_000)  # two chunks
    storage = StorageApi(ApiTarget(PROJECT, LOCATION, emulator.url))
    storage.ensure_bucket("fault-bucket", location="US-CENTRAL1")
    add_fault(emulator.url, UPLOAD, "POST", 503, lost=True)    # the session starts, its answer is lost
    add_fault(emulator.url, UPLOAD, "PUT", 503)                # a chunk refused
    add_fault(emulator.url, UPLOAD, "PUT", 500, lost=True)     # a chunk stored, its answer lost

    storage.upload_file("fault-bucket", "datasets/big.jsonl", path)

    assert not_fully_injected(emulator.url) == []
    assert stored_md5(emulator.url, "fault-bucket", "datasets/big.jsonl") == hashlib.md5(path.read_bytes()).hexdigest()


def test_deletes_whose_answers_were_lost_are_done_not_errors(emulator):
    storage = StorageApi(ApiTarget(PROJECT, LOCATION, emulator.url))
    storage.ensure_bucket("fault-bucket", location="US-CENTRAL1")
    storage.upload_file("fault-bucket", "datasets/train.jsonl", SAMPLE_TRAIN)
    add_fault(emulator.url, OBJECT, "DELETE", 503, lost=True)  # deleted, answer lost: the retry gets 404
    add_fault(emulator.url, BUCKET, "DELETE", 500)
    add_fault(emulator.url, BUCKET, "DELETE", 503, lost=True)

    storage.delete_object("fault-bucket", "datasets/train.jsonl")
    storage.delete_bucket("fault-bucket")

    assert not_fully_injected(emulator.url) == []
    assert storage.bucket_exists("fault-bucket") is False


# --- prediction, endpoints and models (the last test cleans the tuned model up) --------------------------------

def test_generate_content_rides_out_503_and_429(trained, trained_emulator):
    _, job = trained
    add_fault(trained_emulator.url, GENERATE, "POST", 503)
    add_fault(trained_emulator.url, GENERATE, "POST", 429)

    reply = PredictionApi(ApiTarget(PROJECT, LOCATION, trained_emulator.url)).generate(
        job["tunedModel"]["endpoint"], "English: Good night. Spanish:", max_output_tokens=4)

    assert 1 <= reply.candidates_token_count <= 4  # capped by max_output_tokens (words: EOS may come sooner)
    assert not_fully_injected(trained_emulator.url) == []


def test_undeploy_and_deletes_whose_answers_were_lost_complete_the_clean_up(trained, trained_emulator):
    _, job = trained
    endpoint, model = job["tunedModel"]["endpoint"], job["tunedModel"]["model"]
    api = ModelsApi(ApiTarget(PROJECT, LOCATION, trained_emulator.url))
    add_fault(trained_emulator.url, ENDPOINT, "GET", 503)
    add_fault(trained_emulator.url, UNDEPLOY, "POST", 503, lost=True)
    add_fault(trained_emulator.url, ENDPOINT, "DELETE", 500, lost=True)
    add_fault(trained_emulator.url, MODEL, "DELETE", 503, lost=True)

    assert len(list(api.undeploy_all(endpoint))) == 1
    api.delete_endpoint(endpoint)
    api.delete_model(model)

    assert not_fully_injected(trained_emulator.url) == []
    for name in (endpoint, model.split("@")[0]):
        assert requests.get(f"{trained_emulator.url}/v1/{name}", timeout=30).status_code == 404
