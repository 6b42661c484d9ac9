"""Raw HTTP against the served emulator: the documented curl bodies, the error envelope, and the /_emulator/ routes."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
import requests

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import (
    LOCATION,
    PROJECT,
    SAMPLE_TRAIN,
    SAMPLE_VALIDATION,
    control,
    emulator_settings,
    upload,
)
from tests.emulator.helpers import wait_for, wait_until_ended, wait_until_state
from tuning.limits import ALL_METRICS

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def call(emulator: RunningEmulator, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{emulator.url}/{path}", timeout=60, **kwargs)


def create(emulator: RunningEmulator, body: dict[str, Any], version: str = "v1") -> requests.Response:
    return call(emulator, "POST", f"{version}/{PARENT}/tuningJobs", json=body)


def get_job(emulator: RunningEmulator, name: str) -> dict[str, Any]:
    response = call(emulator, "GET", f"v1/{name}")
    response.raise_for_status()
    return response.json()


def documented_body(training_uri: str, validation_uri: str | None = None, **hyper_parameters) -> dict[str, Any]:
    """The create body of the translation tuning docs' curl sample (camelCase)."""
    spec: dict[str, Any] = {"trainingDatasetUri": training_uri}
    if validation_uri:
        spec["validationDatasetUri"] = validation_uri
    if hyper_parameters:
        spec["hyperParameters"] = hyper_parameters
    return {"baseModel": "translation-llm-002", "supervisedTuningSpec": spec, "tunedModelDisplayName": "rest-tuned"}


# --- create bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_create_accepts_camel_case_body(emulator, sample_uris, version):
    response = create(emulator, documented_body(*sample_uris), version)

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["state"] == "JOB_STATE_PENDING"
    assert job["supervisedTuningSpec"] == {"trainingDatasetUri": sample_uris[0],
                                           "validationDatasetUri": sample_uris[1]}


def test_create_accepts_snake_case_body(emulator, sample_uris):
    body = {"base_model": "translation-llm-002",
            "supervised_tuning_spec": {"training_dataset_uri": sample_uris[0]},
            "tuned_model_display_name": "snake"}

    response = create(emulator, body)

    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["baseModel"], job["supervisedTuningSpec"]["trainingDatasetUri"], job["tunedModelDisplayName"]) == (
        "translation-llm-002", sample_uris[0], "snake")


@pytest.mark.parametrize("epoch_count", ["3", 3], ids=["int64-as-string", "int"])
def test_create_accepts_epoch_count_as_string_or_int(emulator, sample_uris, epoch_count):
    response = create(emulator, documented_body(sample_uris[0], epochCount=epoch_count))

    assert response.status_code == 200, response.text
    assert int(response.json()["supervisedTuningSpec"]["hyperParameters"]["epochCount"]) == 3


@pytest.mark.parametrize("adapter_size", [2, "ADAPTER_SIZE_FOUR"], ids=["enum-number", "enum-name"])
def test_create_accepts_adapter_size_as_number_or_name(emulator, sample_uris, adapter_size):
    response = create(emulator, documented_body(sample_uris[0], adapterSize=adapter_size))

    assert response.status_code == 200, response.text
    assert response.json()["supervisedTuningSpec"]["hyperParameters"]["adapterSize"] == "ADAPTER_SIZE_FOUR"


# --- the error envelope -----------------------------------------------------------------------------------


def test_unknown_route_answers_501_unimplemented(emulator):
    path = f"/v1/{PARENT}/datasets"

    response = call(emulator, "GET", path.lstrip("/"))

    assert response.status_code == 501
    assert response.json() == {"error": {"code": 501, "message": f"GET {path} is not implemented by the emulator",
                                         "status": "UNIMPLEMENTED"}}


def test_oversize_json_body_answers_413(emulator):
    limit = emulator.state.settings.max_json_bytes
    body = b'{"baseModel":"' + b"x" * limit + b'"}'

    response = call(emulator, "POST", f"v1/{PARENT}/tuningJobs", data=body,
                    headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"]["message"] == (f"Request body of {len(body)} bytes exceeds the limit of "
                                                   f"{limit} bytes.")


def test_invalid_json_answers_400_invalid_argument(emulator):
    response = call(emulator, "POST", f"v1/{PARENT}/tuningJobs", data=b'{"baseModel": ',
                    headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("Invalid JSON payload received.")


# --- /_emulator/ control routes ---------------------------------------------------------------------------


@pytest.fixture
def job(emulator: RunningEmulator, sample_uris) -> dict[str, Any]:
    """A created job, cancelled at once so the runner stays free."""
    created = create(emulator, documented_body(sample_uris[0])).json()
    call(emulator, "POST", f"v1/{created['name']}:cancel", json={}).raise_for_status()
    return created


def test_health_answers_ok(emulator):
    response = control(emulator, "GET", "health")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_reset_forgets_jobs(emulator, job):
    control(emulator, "POST", "reset").raise_for_status()

    assert call(emulator, "GET", f"v1/{job['name']}").status_code == 404
    assert call(emulator, "GET", f"v1/{PARENT}/tuningJobs").json() == {"tuningJobs": []}


def test_reset_during_training_keeps_the_runner_serving(emulator, sample_uris):
    running = create(emulator, documented_body(sample_uris[0])).json()
    wait_until_state(lambda: get_job(emulator, running["name"]), "JOB_STATE_RUNNING")
    control(emulator, "POST", "reset").raise_for_status()
    uri = upload(emulator, "datasets", "train.jsonl", SAMPLE_TRAIN)

    started = create(emulator, documented_body(uri)).json()

    assert wait_for(lambda: get_job(emulator, started["name"]), lambda current: current["state"] != "JOB_STATE_PENDING",
                    timeout=60)["state"] == "JOB_STATE_RUNNING"


def add_fault(emulator: RunningEmulator, **spec: Any) -> None:
    control(emulator, "POST", "faults", json=spec).raise_for_status()


def test_injected_503_fault_answers_the_given_number_of_times(emulator, job):
    add_fault(emulator, pathRegex="tuningJobs", method="GET", status=503, times=2)

    statuses = [call(emulator, "GET", f"v1/{job['name']}").status_code for _ in range(3)]

    assert statuses == [503, 503, 200]


def test_tuning_api_retries_injected_503(emulator, job, tuning_api):
    add_fault(emulator, pathRegex="tuningJobs", method="GET", status=503, times=2)

    fetched = tuning_api.get_tuning_job(job["name"])

    assert fetched is not None and fetched.name == job["name"]
    assert control(emulator, "GET", "faults").json()["faults"][0]["injected"] == 2


def test_tuning_api_does_not_retry_injected_404(emulator, job, tuning_api):
    add_fault(emulator, pathRegex="tuningJobs", method="GET", status=404, times=1)

    assert tuning_api.get_tuning_job(job["name"]) is None
    assert tuning_api.get_tuning_job(job["name"]).name == job["name"]


def test_injected_latency_delays_the_response(emulator, job):
    add_fault(emulator, pathRegex="tuningJobs", method="GET", latencySeconds=0.5, errorRate=0)
    started = time.monotonic()

    response = call(emulator, "GET", f"v1/{job['name']}")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5


# --- the metrics route ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with serve_in_thread(emulator_settings(tmp_path_factory.mktemp("rest-emulator"))) as running:
        yield running


@pytest.fixture(scope="module")
def twin_jobs(served: RunningEmulator) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two succeeded jobs on the same data and settings (the runner trains them one after the other)."""
    body = documented_body(upload(served, "datasets", "train.jsonl", SAMPLE_TRAIN),
                           upload(served, "datasets", "validation.jsonl", SAMPLE_VALIDATION))
    names = [create(served, body).json()["name"] for _ in range(2)]
    ended = tuple(wait_until_ended(lambda name=name: get_job(served, name)) for name in names)
    assert [job["state"] for job in ended] == ["JOB_STATE_SUCCEEDED"] * 2, ended
    return ended


def metrics(emulator: RunningEmulator, name: str) -> dict[str, Any]:
    response = control(emulator, "GET", f"v1/{name}/metrics")
    response.raise_for_status()
    return response.json()


def test_metrics_have_six_series_of_several_points(served, twin_jobs):
    series = metrics(served, twin_jobs[0]["name"])["series"]

    assert list(series) == list(ALL_METRICS)
    assert all(len(points) >= 2 for points in series.values())


def test_metrics_train_loss_falls(served, twin_jobs):
    loss = metrics(served, twin_jobs[0]["name"])["series"]["/train_total_loss"]

    assert loss[-1]["value"] < loss[0]["value"]


def test_metrics_latest_is_the_last_point_of_each_series(served, twin_jobs):
    body = metrics(served, twin_jobs[0]["name"])

    assert body["latest"] == {name: points[-1]["value"] for name, points in body["series"].items()}


def test_metrics_are_reproducible_for_the_same_data_and_seed(served, twin_jobs):
    def values(job: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
        series = metrics(served, job["name"])["series"]
        return {name: [(point["step"], point["value"]) for point in points] for name, points in series.items()}

    assert values(twin_jobs[0]) == values(twin_jobs[1])


def test_metrics_of_missing_job_answer_404(served):
    name = f"{PARENT}/tuningJobs/123"

    response = control(served, "GET", f"v1/{name}/metrics")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"TuningJob {name} not found."
