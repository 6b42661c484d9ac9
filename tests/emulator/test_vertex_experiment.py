"""A tuning job's metrics through Vertex AI Experiments (ML Metadata + TensorBoard), read with the unmodified SDK.

The SDK's path to a job's metrics: `job.experiment.get_data_frame()` (one row per run, the latest value of each
metric in `time_series_metric.<name>`) and `aiplatform.ExperimentRun(run, experiment=...).
get_time_series_data_frame()` (every point), compared with the emulator's own metrics route.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import pytest
import requests
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from vertexai.tuning import sft

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, SAMPLE_VALIDATION, control, emulator_settings, upload
from tests.emulator.helpers import wait_for, wait_until_ended, wait_until_state
from tests.emulator.test_vertex_sdk import refreshed, sdk_pointed_at
from tuning.client import ApiTarget, TuningApi
from tuning.limits import ALL_METRICS, TRAIN_METRICS

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated as of June 24, 2025.*:UserWarning")

STORE = f"projects/{PROJECT}/locations/{LOCATION}/metadataStores/default"
PREFIX = "time_series_metric."


# --- helpers ---------------------------------------------------------------------------------------------


def route_metrics(emulator: RunningEmulator, job_name: str) -> dict[str, Any]:
    """The emulator's documented metrics route: `{series: {metric: [{step, value, time}]}, latest: {...}}`."""
    response = control(emulator, "GET", f"v1/{job_name}/metrics")
    response.raise_for_status()
    return response.json()


def records(frame: Any) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def time_series_columns(row: dict[str, Any]) -> dict[str, float]:
    """`{metric: value}` of a data-frame row's `time_series_metric.*` columns that hold a value."""
    return {column[len(PREFIX):]: value for column, value in row.items()
            if column.startswith(PREFIX) and value == value}


def curves(frame: Any) -> dict[str, list[tuple[int, float]]]:
    """`{metric: [(step, value), ...]}` from `get_time_series_data_frame()` (one row per step and wall time)."""
    found: dict[str, list[tuple[int, float]]] = {}
    for row in records(frame):
        for metric in ALL_METRICS:
            value = row.get(metric, math.nan)
            if value == value:
                found.setdefault(metric, []).append((int(row["step"]), value))
    return found


def train(emulator: RunningEmulator, training_uri: str, validation_uri: str | None) -> sft.SupervisedTuningJob:
    return sft.train(source_model="translation-llm-002", train_dataset=training_uri,
                     validation_dataset=validation_uri, tuned_model_display_name="experiment-tuned")


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for the tests that only read the succeeded job, so it trains once."""
    with serve_in_thread(emulator_settings(tmp_path_factory.mktemp("experiment-emulator"))) as running:
        yield running


@pytest.fixture(scope="module")
def succeeded_job_name(served: RunningEmulator) -> str:
    """A job with a validation set, trained to SUCCEEDED through `sft.train`."""
    with sdk_pointed_at(served):
        job = train(served, upload(served, "datasets", "train.jsonl", SAMPLE_TRAIN),
                    upload(served, "datasets", "validation.jsonl", SAMPLE_VALIDATION))
        wait_until_ended(lambda: refreshed(job))
        assert job.has_succeeded, job.error
        return job.resource_name


@pytest.fixture
def succeeded_job(served: RunningEmulator, succeeded_job_name: str) -> Iterator[sft.SupervisedTuningJob]:
    with sdk_pointed_at(served):
        yield sft.SupervisedTuningJob(succeeded_job_name)


# --- the SDK path ----------------------------------------------------------------------------------------


def test_data_frame_has_one_run_with_latest_value_of_six_metrics(served, succeeded_job):
    rows = records(succeeded_job.experiment.get_data_frame())

    assert len(rows) == 1
    assert rows[0]["run_type"] == "system.ExperimentRun"
    assert rows[0]["state"] == "COMPLETE"
    assert time_series_columns(rows[0]) == route_metrics(served, succeeded_job.resource_name)["latest"]
    assert set(time_series_columns(rows[0])) == set(ALL_METRICS)


def test_time_series_data_frame_has_every_point_of_every_metric(served, succeeded_job):
    experiment = succeeded_job.experiment
    run_name = records(experiment.get_data_frame())[0]["run_name"]

    frame = aiplatform.ExperimentRun(run_name, experiment=experiment).get_time_series_data_frame()

    series = route_metrics(served, succeeded_job.resource_name)["series"]
    assert curves(frame) == {metric: [(point["step"], point["value"]) for point in points]
                             for metric, points in series.items()}
    assert len(records(frame)) == len(series["/train_total_loss"]) > 1


def test_job_without_validation_has_only_the_train_columns(emulator, sample_uris):
    with sdk_pointed_at(emulator):
        job = train(emulator, sample_uris[0], None)
        wait_until_ended(lambda: refreshed(job))

        rows = records(job.experiment.get_data_frame())

    assert job.has_succeeded, job.error
    assert len(rows) == 1
    assert set(time_series_columns(rows[0])) == set(TRAIN_METRICS)
    assert time_series_columns(rows[0]) == route_metrics(emulator, job.resource_name)["latest"]


def test_running_job_shows_its_metrics_so_far_and_they_grow(slow_emulator):
    with sdk_pointed_at(slow_emulator):
        job = train(slow_emulator, upload(slow_emulator, "datasets", "train.jsonl", SAMPLE_TRAIN),
                    upload(slow_emulator, "datasets", "validation.jsonl", SAMPLE_VALIDATION))
        wait_until_state(lambda: refreshed(job), "JOB_STATE_RUNNING")
        run = aiplatform.ExperimentRun("run", experiment=job.experiment)
        first = wait_for(lambda: curves(run.get_time_series_data_frame()),
                         lambda found: set(found) == set(ALL_METRICS))
        row = records(job.experiment.get_data_frame())[0]

        later = wait_for(lambda: curves(run.get_time_series_data_frame()),
                         lambda found: len(found["/train_total_loss"]) > len(first["/train_total_loss"]))
        series = route_metrics(slow_emulator, job.resource_name)["series"]
        job.cancel()

    assert row["state"] == "RUNNING"
    for metric in ALL_METRICS:
        so_far = [(point["step"], point["value"]) for point in series[metric]]
        assert first[metric] == so_far[:len(first[metric])]
        assert later[metric] == so_far[:len(later[metric])]
        assert row[PREFIX + metric] in [value for _, value in so_far]


# --- tuning.client's real-GCP branch ---------------------------------------------------------------------


def test_experiment_metrics_equal_the_emulator_shortcut_and_leave_sdk_config_alone(served, succeeded_job_name):
    api = TuningApi(ApiTarget(project=PROJECT, location=LOCATION, emulator_endpoint=served.url))
    job = api.get_tuning_job(succeeded_job_name)
    config_before = dict(vars(initializer.global_config))

    from_experiment = api.experiment_metrics(job)

    assert {name.lstrip("/"): value for name, value in from_experiment.items()} == api.latest_metrics(job)
    assert len(from_experiment) == len(ALL_METRICS)
    assert dict(vars(initializer.global_config)) == config_before


def test_experiment_time_series_equal_the_emulator_metrics_route(served, succeeded_job_name):
    api = TuningApi(ApiTarget(project=PROJECT, location=LOCATION, emulator_endpoint=served.url))
    job = api.get_tuning_job(succeeded_job_name)

    from_experiment = api.experiment_series(job)

    from_route = api.metric_series(job)
    assert {name.lstrip("/"): sorted(points) for name, points in from_experiment.items()} == from_route
    assert len(from_route) == len(ALL_METRICS) and all(len(points) > 1 for points in from_route.values())


# --- REST details ----------------------------------------------------------------------------------------


def test_context_list_rejects_a_filter_the_emulator_does_not_support(emulator):
    response = requests.get(f"{emulator.url}/v1/{STORE}/contexts",
                            params={"filter": 'create_time>"2025-01-01T00:00:00Z"'}, timeout=30)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("Unsupported filter 'create_time>\"2025-01-01T00:00:00Z\"': ")


def test_run_context_of_an_unknown_job_is_not_found(emulator):
    response = requests.get(f"{emulator.url}/v1/{STORE}/contexts/tuning-experiment-123-run", timeout=30)

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": 404, "status": "NOT_FOUND",
        "message": f"Context {STORE}/contexts/tuning-experiment-123-run not found."}


def test_batch_read_rejects_a_series_of_another_tensorboard(served, succeeded_job_name):
    job_id = succeeded_job_name.rsplit("/", 1)[1]
    board = f"projects/{PROJECT}/locations/{LOCATION}/tensorboards/{job_id}"
    other = f"projects/{PROJECT}/locations/{LOCATION}/tensorboards/1/experiments/e/runs/run/timeSeries/x"

    response = requests.get(f"{served.url}/v1/{board}:batchRead", params={"timeSeries": other}, timeout=30)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"Time series {other!r} is not a TensorboardTimeSeries of {board}."
