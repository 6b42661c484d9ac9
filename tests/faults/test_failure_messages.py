"""Expected failures end as one line naming the call, the resource and what to do: from the adapters, and from
`python -m tuning ...` (stderr `error: <line>`, exit 1, no traceback).

Kinds: retries exhausted (a persistent 503), quota (a persistent 429), a timeout (no answer within the attempt's
time), an unreachable endpoint, permission denied (403), not authenticated (401, or no credentials at all), and
a request the service rejects (400).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from google.cloud import aiplatform_v1

from tests.conftest import LOCATION, PROJECT, REPO, SAMPLE_TRAIN
from tests.faults.conftest import GIVE_UP_DEADLINE
from tests.faults.helpers import BUCKET, ENDPOINT, GENERATE, JOB, JOBS, UPLOAD, add_fault, faults
from tuning.__main__ import main
from tuning.client import RETRY_DEADLINE_ENV, ApiTarget, TuningApi
from tuning.errors import ApiCallError
from tuning.prediction import PredictionApi
from tuning.storage import StorageApi

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
JOB_NAME = f"{PARENT}/tuningJobs/123"
ENDPOINT_NAME = f"{PARENT}/endpoints/456"


@pytest.fixture(autouse=True)
def give_up_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_DEADLINE_ENV, GIVE_UP_DEADLINE)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed again when the block ends


def failure(call) -> tuple[ApiCallError, float]:
    started = time.monotonic()
    with pytest.raises(ApiCallError) as raised:
        call()
    return raised.value, time.monotonic() - started


def assert_one_line(error: ApiCallError, kind: str) -> None:
    assert error.kind == kind
    assert "\n" not in str(error) and "Traceback" not in str(error)
    assert str(error).startswith(f"{error.call} {error.resource}: ")


def run(*argv: str) -> tuple[int, str, str]:
    # Not capsys: the served emulator's logging holds on to the streams pytest swaps per test.
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


# --- the adapters -----------------------------------------------------------------------------------------

def test_a_persistent_503_exhausts_the_retries_by_the_deadline(emulator):
    add_fault(emulator.url, JOB, "GET", 503, times=None)

    error, seconds = failure(lambda: TuningApi(ApiTarget(PROJECT, LOCATION, emulator.url)).get_tuning_job(JOB_NAME))

    assert_one_line(error, "retries-exhausted")
    assert re.fullmatch(
        rf"Vertex AI tuningJobs.get {JOB_NAME}: 503 Service Unavailable \(Injected fault: GET /v1/{JOB_NAME} "
        rf"answered 503.\), still after retrying for \d+\.\ds; the service is failing or overloaded: try again later "
        rf"\({RETRY_DEADLINE_ENV}=SECONDS retries longer\)", str(error)), str(error)
    # api_core's Retry gives up when its next (jittered) sleep would end past the deadline: before it, never after.
    assert seconds < float(GIVE_UP_DEADLINE) + 10
    assert faults(emulator.url)[0]["injected"] >= 2


def test_a_persistent_429_is_a_quota_problem(emulator):
    storage = StorageApi(ApiTarget(PROJECT, LOCATION, emulator.url))
    storage.ensure_bucket("quota-bucket", location="US-CENTRAL1")
    add_fault(emulator.url, UPLOAD, "POST", 429, times=None)

    error, _ = failure(lambda: storage.upload_file("quota-bucket", "datasets/train.jsonl", SAMPLE_TRAIN))

    assert_one_line(error, "quota")
    assert str(error).startswith("Cloud Storage objects.insert (multipart upload) gs://quota-bucket/datasets/"
                                 "train.jsonl: quota exceeded or rate-limited (429 Too Many Requests: Injected fault")
    assert str(error).endswith(f"; wait a few minutes and try again, or ask for a higher Cloud Storage quota in "
                               f"project {PROJECT} (console: IAM & Admin > Quotas)")


def test_no_answer_within_the_attempt_timeout_is_a_timeout(emulator, monkeypatch):
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "2")  # 1 s per attempt
    add_fault(emulator.url, JOB, "GET", status=0, times=None, latency=4.0)

    error, seconds = failure(lambda: TuningApi(ApiTarget(PROJECT, LOCATION, emulator.url)).get_tuning_job(JOB_NAME))

    assert_one_line(error, "timeout")
    assert re.fullmatch(rf"Vertex AI tuningJobs.get {JOB_NAME}: no answer from {emulator.url} within 1s, still "
                        rf"after retrying for \d+\.\ds; the service is slow or overloaded: try again later "
                        rf"\({RETRY_DEADLINE_ENV}=SECONDS retries longer\)", str(error)), str(error)
    assert seconds < 10


def test_an_unreachable_endpoint_names_it_and_says_what_to_check():
    url = closed_port_url()

    error, _ = failure(lambda: StorageApi(ApiTarget(PROJECT, LOCATION, url)).bucket_exists("some-bucket"))

    assert_one_line(error, "unreachable")
    assert re.fullmatch(
        rf"Cloud Storage buckets.get gs://some-bucket: cannot connect to {url} \(connection refused\), still after "
        r"retrying for \d+\.\ds; is the emulator running there\? start it \(python -m emulator.background start\) or "
        r"point to the right one \(stack config translation-tuning:emulatorEndpoint, or --emulator URL\)",
        str(error)), str(error)


def test_permission_denied_names_the_role_to_grant(emulator):
    add_fault(emulator.url, BUCKET, "GET", 403)

    error, seconds = failure(lambda: StorageApi(ApiTarget(PROJECT, LOCATION, emulator.url)).bucket_exists("b-403"))

    assert_one_line(error, "permission-denied")
    assert str(error) == (
        "Cloud Storage buckets.get gs://b-403: permission denied (403 Forbidden: Injected fault: GET "
        "/storage/v1/b/b-403 answered 403.); grant the caller's account Storage Admin (roles/storage.admin) on "
        f"project {PROJECT}, or run with other credentials (gcloud auth application-default login)")
    assert seconds < 5  # not retried


def test_not_authenticated_says_how_to_sign_in(emulator):
    add_fault(emulator.url, GENERATE, "POST", 401)

    error, _ = failure(lambda: PredictionApi(ApiTarget(PROJECT, LOCATION, emulator.url)).generate(ENDPOINT_NAME, "Hi"))

    assert_one_line(error, "unauthenticated")
    # Anonymous credentials (the emulator's) cannot be refreshed, which is what a client does after a 401.
    assert str(error).startswith(f"Vertex AI endpoints.generateContent {ENDPOINT_NAME}: not authenticated (401 "
                                 "Unauthorized, and the credentials cannot be refreshed: ")
    assert str(error).endswith("; sign in again with `gcloud auth application-default login`, or check "
                               "GOOGLE_APPLICATION_CREDENTIALS")


def test_no_credentials_at_all_says_how_to_sign_in(tmp_path, monkeypatch):
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))          # no gcloud application default credentials file
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")         # not on GCE: do not ask the metadata server

    error, _ = failure(lambda: TuningApi(ApiTarget(PROJECT, LOCATION)))

    assert_one_line(error, "unauthenticated")
    assert str(error) == (f"Vertex AI GenAiTuningService in {PARENT}: no Google credentials found (application "
                          "default credentials); sign in with `gcloud auth application-default login`, or set "
                          "GOOGLE_APPLICATION_CREDENTIALS to a key file")


def test_a_rejected_request_carries_the_service_message(emulator):
    add_fault(emulator.url, JOBS, "POST", 400)
    request = aiplatform_v1.TuningJob(
        base_model="translation-llm-002",
        supervised_tuning_spec=aiplatform_v1.SupervisedTuningSpec(training_dataset_uri="gs://b/t.jsonl"))

    error, _ = failure(lambda: TuningApi(ApiTarget(PROJECT, LOCATION, emulator.url)).create_tuning_job(request))

    assert_one_line(error, "rejected")
    assert str(error) == (f"Vertex AI tuningJobs.create in {PARENT}: 400 Bad Request: Injected fault: POST "
                          f"/v1/{PARENT}/tuningJobs answered 400.")


# --- python -m tuning ... -----------------------------------------------------------------------------------

def target(url: str) -> list[str]:
    return ["--project", PROJECT, "--emulator", url]


def test_cli_jobs_get_after_a_persistent_503(emulator):
    add_fault(emulator.url, JOB, "GET", 503, times=None)

    status, out, err = run("jobs", "get", JOB_NAME, *target(emulator.url))

    assert (status, out) == (1, "")
    assert err.startswith(f"error: Vertex AI tuningJobs.get {JOB_NAME}: 503 Service Unavailable (")
    assert err.endswith(f"; the service is failing or overloaded: try again later ({RETRY_DEADLINE_ENV}=SECONDS "
                        "retries longer)\n")
    assert err.count("\n") == 1


def test_cli_generate_after_a_persistent_429(emulator):
    add_fault(emulator.url, GENERATE, "POST", 429, times=None)

    status, _, err = run("generate", ENDPOINT_NAME, "English: Hi. Spanish:", *target(emulator.url))

    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"error: Vertex AI endpoints.generateContent {ENDPOINT_NAME}: quota exceeded or "
                          "rate-limited (429 Too Many Requests: ")


def test_cli_endpoints_delete_after_a_403(emulator):
    add_fault(emulator.url, ENDPOINT, "GET", 403)

    status, out, err = run("endpoints", "delete", ENDPOINT_NAME, *target(emulator.url))

    assert (status, out) == (1, "")
    assert err.startswith(f"error: Vertex AI endpoints.get {ENDPOINT_NAME}: permission denied (403 Forbidden: ")
    assert err.endswith(f"; grant the caller's account Vertex AI User (roles/aiplatform.user) on project {PROJECT}, "
                        "or run with other credentials (gcloud auth application-default login)\n")


def test_cli_jobs_cancel_without_an_answer_in_time(emulator, monkeypatch):
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "2")
    add_fault(emulator.url, r":cancel$", "POST", status=0, times=None, latency=4.0)

    status, _, err = run("jobs", "cancel", JOB_NAME, *target(emulator.url))

    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"error: Vertex AI tuningJobs.cancel {JOB_NAME}: no answer from {emulator.url} within 1s")


def test_cli_process_against_an_unreachable_endpoint_prints_one_line_and_no_traceback():
    url = closed_port_url()
    env = {**os.environ, RETRY_DEADLINE_ENV: "2", "PYTHONPATH": str(REPO)}

    result = subprocess.run([sys.executable, "-m", "tuning", "jobs", "list", *target(url)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)

    assert (result.returncode, result.stdout) == (1, "")
    assert re.fullmatch(
        rf"error: Vertex AI tuningJobs.list in {PARENT}: cannot connect to {url} \(connection refused\), still after "
        r"retrying for \d+\.\ds; is the emulator running there\? start it \(python -m emulator.background start\) or "
        r"point to the right one \(stack config translation-tuning:emulatorEndpoint, or --emulator URL\)\n",
        result.stderr), result.stderr


@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf"])
def test_a_bad_retry_deadline_setting_is_one_line_naming_the_variable(emulator, monkeypatch, value):
    monkeypatch.setenv(RETRY_DEADLINE_ENV, value)

    status, _, err = run("jobs", "list", *target(emulator.url))

    assert (status, err) == (1, f"error: {RETRY_DEADLINE_ENV}: expected a number of seconds > 0, got {value!r}\n")


def test_a_wait_whose_polls_keep_failing_says_the_job_keeps_running_and_is_adopted_next_time(emulator, sample_uris):
    from resources.tuning_job import TuningJobProvider
    from tests.conftest import configured_provider

    add_fault(emulator.url, JOB, "GET", 503, times=None)  # every poll of the job; create and list still work
    props = {"baseModel": "translation-llm-002", "trainingDatasetUri": sample_uris[0], "adapterSize": 4,
             "labels": {}, "idempotencyKey": "wait", "waitForCompletion": True, "completionTimeoutSeconds": 300,
             "onDelete": "cancel"}

    error, _ = failure(lambda: configured_provider(TuningJobProvider, emulator.url).create(props))

    assert_one_line(error, "retries-exhausted")
    assert re.fullmatch(rf"Vertex AI tuningJobs.get {PARENT}/tuningJobs/\d+: 503 Service Unavailable \(.*\), still "
                        rf"after retrying for \d+\.\ds; the service is failing or overloaded: try again later "
                        rf"\({RETRY_DEADLINE_ENV}=SECONDS retries longer\); tuning job {PARENT}/tuningJobs/\d+ "
                        r"keeps running: the next `pulumi up` adopts it", str(error)), str(error)
