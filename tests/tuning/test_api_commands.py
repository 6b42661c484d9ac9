"""`python -m tuning jobs ...` and `generate` against a served emulator."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
import requests

from tests.conftest import LOCATION, PROJECT
from tests.emulator.helpers import wait_until_ended
from tuning.__main__ import main


def run(*argv: str) -> tuple[int, str, str]:
    # Not capsys: the served emulator's logging holds on to the streams pytest swaps per test.
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def succeeded_job(emulator, sample_uris, tuning_api) -> dict:
    body = {"baseModel": "translation-llm-002", "tunedModelDisplayName": "cli",
            "supervisedTuningSpec": {"trainingDatasetUri": sample_uris[0], "validationDatasetUri": sample_uris[1]}}
    created = requests.post(f"{emulator.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs", json=body,
                            timeout=30).json()
    wait_until_ended(lambda: tuning_api.get_tuning_job(created["name"]), timeout=180)
    return requests.get(f"{emulator.url}/v1/{created['name']}", timeout=30).json()


def target(emulator) -> list[str]:
    return ["--project", PROJECT, "--emulator", emulator.url]


def test_jobs_list_prints_name_state_and_display_name(emulator, succeeded_job):
    status, out, _ = run("jobs", "list", *target(emulator))
    assert (status, out) == (0, f"{succeeded_job['name']}\tJOB_STATE_SUCCEEDED\tcli\n")


def test_jobs_metrics_prints_the_six_latest_values(emulator, succeeded_job):
    status, out, _ = run("jobs", "metrics", succeeded_job["name"], *target(emulator))
    metrics = json.loads(out)
    assert status == 0 and len(metrics) == 6
    assert isinstance(metrics["train_num_predictions"], int) and metrics["train_total_loss"] > 0


def test_generate_prints_the_tuned_endpoint_reply_and_token_counts(emulator, succeeded_job):
    endpoint = succeeded_job["tunedModel"]["endpoint"]
    status, out, err = run("generate", endpoint, "English: Good night. Spanish:", "--max-output-tokens",
                           "8", *target(emulator))
    assert status == 0 and out.rstrip("\n")  # the tiny test model may answer with spaces: still text
    finish, output_tokens = re.search(r"finish: (\w+), tokens: \d+ prompt \+ (\d+) output", err).groups()
    # The limit is honoured: either the model stopped by itself, or it was cut at exactly 8 tokens.
    assert (finish == "STOP" and 1 <= int(output_tokens) <= 8) or (finish, output_tokens) == ("MAX_TOKENS", "8")


def test_get_of_a_missing_job_exits_1_naming_it(emulator):
    name = f"projects/{PROJECT}/locations/{LOCATION}/tuningJobs/42"
    status, out, err = run("jobs", "get", name, *target(emulator))
    assert (status, out) == (1, "")
    assert err == f"error: tuning job {name} not found\n"


def test_cancel_of_an_ended_job_exits_1(emulator, succeeded_job):
    status, _, err = run("jobs", "cancel", succeeded_job["name"], *target(emulator))
    assert status == 1 and "already ended" in err


def test_a_missing_project_is_a_clear_error(emulator, monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    status, _, err = run("jobs", "list", "--emulator", emulator.url)
    assert (status, err) == (1, "error: --project: is required (or set GOOGLE_CLOUD_PROJECT)\n")


# --- endpoints undeploy|delete, models delete ---------------------------------------------------------------


def deployed_model_id(emulator, endpoint: str) -> str:
    [deployed] = requests.get(f"{emulator.url}/v1/{endpoint}", timeout=30).json()["deployedModels"]
    return deployed["id"]


def status_code(emulator, name: str) -> int:
    return requests.get(f"{emulator.url}/v1/{name}", timeout=30).status_code


def test_endpoints_undeploy_prints_the_model_it_undeployed(emulator, succeeded_job):
    endpoint = succeeded_job["tunedModel"]["endpoint"]
    deployed = deployed_model_id(emulator, endpoint)

    status, out, _ = run("endpoints", "undeploy", endpoint, *target(emulator))

    assert (status, out) == (0, f"undeployed {deployed} from {endpoint}\n")


def test_endpoints_undeploy_leaves_the_endpoint_without_deployed_models(emulator, succeeded_job):
    endpoint = succeeded_job["tunedModel"]["endpoint"]

    run("endpoints", "undeploy", endpoint, *target(emulator))

    body = requests.get(f"{emulator.url}/v1/{endpoint}", timeout=30).json()
    assert body["name"] == endpoint and "deployedModels" not in body


def test_endpoints_undeploy_of_an_empty_endpoint_does_nothing_and_says_so(emulator, succeeded_job):
    endpoint = succeeded_job["tunedModel"]["endpoint"]
    run("endpoints", "undeploy", endpoint, *target(emulator))

    status, out, err = run("endpoints", "undeploy", endpoint, *target(emulator))

    assert (status, out, err) == (0, "", f"no model is deployed on {endpoint}\n")


def test_endpoints_delete_undeploys_then_deletes(emulator, succeeded_job):
    endpoint = succeeded_job["tunedModel"]["endpoint"]
    deployed = deployed_model_id(emulator, endpoint)

    status, out, _ = run("endpoints", "delete", endpoint, *target(emulator))

    assert (status, out) == (0, f"undeployed {deployed} from {endpoint}\ndeleted {endpoint}\n")
    assert status_code(emulator, endpoint) == 404


def test_endpoints_delete_takes_a_bare_endpoint_id(emulator, succeeded_job):
    endpoint = succeeded_job["tunedModel"]["endpoint"]

    status, out, _ = run("endpoints", "delete", endpoint.rsplit("/", 1)[1], *target(emulator))

    assert status == 0 and out.endswith(f"deleted {endpoint}\n")


def test_models_delete_of_a_deployed_model_exits_1_saying_to_undeploy_first(emulator, succeeded_job):
    model, endpoint = succeeded_job["tunedModel"]["model"], succeeded_job["tunedModel"]["endpoint"]

    status, out, err = run("models", "delete", model, *target(emulator))

    assert (status, out) == (1, "")
    assert err == (f"error: 400 FAILED_PRECONDITION: model {model} is still deployed to {endpoint}; undeploy it "
                   f"first (python -m tuning endpoints undeploy {endpoint}) or delete the endpoint (python -m tuning "
                   f"endpoints delete {endpoint})\n")
    assert status_code(emulator, model) == 200


def test_models_delete_after_the_endpoint_is_deleted_deletes_the_model(emulator, succeeded_job):
    model, endpoint = succeeded_job["tunedModel"]["model"], succeeded_job["tunedModel"]["endpoint"]
    run("endpoints", "delete", endpoint, *target(emulator))

    status, out, _ = run("models", "delete", model, *target(emulator))

    assert (status, out) == (0, f"deleted {model}\n")
    assert status_code(emulator, model) == 404


def test_endpoints_delete_of_a_missing_endpoint_exits_1_naming_it(emulator):
    endpoint = f"projects/{PROJECT}/locations/{LOCATION}/endpoints/42"

    status, out, err = run("endpoints", "delete", endpoint, *target(emulator))

    assert (status, out, err) == (1, "", f"error: endpoint {endpoint} not found\n")


def test_endpoints_undeploy_of_a_missing_endpoint_exits_1_naming_it(emulator):
    endpoint = f"projects/{PROJECT}/locations/{LOCATION}/endpoints/42"

    status, _, err = run("endpoints", "undeploy", endpoint, *target(emulator))

    assert (status, err) == (1, f"error: endpoint {endpoint} not found\n")


def test_models_delete_of_a_missing_model_exits_1_naming_it(emulator):
    model = f"projects/{PROJECT}/locations/{LOCATION}/models/42@1"

    status, out, err = run("models", "delete", model, *target(emulator))

    assert (status, out, err) == (1, "", f"error: model {model} not found\n")


def test_a_malformed_endpoint_name_is_a_clear_error(emulator):
    status, _, err = run("endpoints", "delete", "endpoints/42", *target(emulator))

    assert (status, err) == (1, "error: ENDPOINT: expected projects/P/locations/L/endpoints/ID or an ID, got "
                                "'endpoints/42'\n")


def test_an_endpoint_in_another_location_than_the_target_is_a_clear_error(emulator):
    endpoint = f"projects/{PROJECT}/locations/europe-west4/endpoints/42"

    status, _, err = run("endpoints", "undeploy", endpoint, *target(emulator))

    assert (status, err) == (1, f"error: --location: {endpoint} is in europe-west4; pass --location europe-west4\n")


# --- jobs metrics --follow / --png ---------------------------------------------------------------------------


def start_job(emulator, sample_uris) -> str:
    body = {"baseModel": "translation-llm-002",
            "supervisedTuningSpec": {"trainingDatasetUri": sample_uris[0], "validationDatasetUri": sample_uris[1]}}
    return requests.post(f"{emulator.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs", json=body,
                         timeout=30).json()["name"]


@pytest.fixture
def paced_emulator(tmp_path):
    """Jobs of about 8 s: long enough for several progress bar updates."""
    from emulator.server import serve_in_thread
    from tests.conftest import emulator_settings

    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=80, step_delay_seconds=0.1)) as running:
        yield running


def test_follow_draws_a_progress_bar_until_the_job_succeeds(paced_emulator, tmp_path):
    from tests.conftest import SAMPLE_TRAIN, SAMPLE_VALIDATION, upload

    uris = (upload(paced_emulator, "datasets", "t.jsonl", SAMPLE_TRAIN),
            upload(paced_emulator, "datasets", "v.jsonl", SAMPLE_VALIDATION))
    name = start_job(paced_emulator, uris)
    status, out, err = run("jobs", "metrics", name, "--follow", *target(paced_emulator))
    assert status == 0, err
    assert json.loads(out)["train_total_loss"] > 0
    frames = err.split("\r")
    assert any("RUNNING" in frame for frame in frames) and len(frames) > 2
    assert "SUCCEEDED" in frames[-1] and "80/80" in frames[-1] and "train_total_loss" in frames[-1]


def test_follow_of_a_cancelled_job_exits_1_with_its_state(slow_emulator):
    from tests.conftest import SAMPLE_TRAIN, upload

    name = start_job(slow_emulator, (upload(slow_emulator, "datasets", "t.jsonl", SAMPLE_TRAIN), None))
    requests.post(f"{slow_emulator.url}/v1/{name}:cancel", timeout=30)
    status, _, err = run("jobs", "metrics", name, "--follow", *target(slow_emulator))
    assert status == 1
    assert f"error: tuning job {name} ended JOB_STATE_CANCELLED: " in err


def test_png_draws_the_six_curves_at_the_documented_size(emulator, succeeded_job, tmp_path):
    import numpy
    from matplotlib import image

    from tuning.curves import DPI, HEIGHT_INCHES, WIDTH_INCHES

    path = tmp_path / "curves.png"
    status, _, err = run("jobs", "metrics", succeeded_job["name"], "--png", str(path), *target(emulator))
    assert status == 0 and f"curves: {path}" in err
    pixels = image.imread(path)[:, :, :3]
    assert pixels.shape[:2] == (int(HEIGHT_INCHES * DPI), int(WIDTH_INCHES * DPI))

    def share_of(colour: str) -> float:
        rgb = numpy.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        return float((numpy.abs(pixels - rgb).max(axis=2) < 0.05).mean())

    # Not blank: both the training (blue) and the evaluation (orange) curves are drawn.
    assert share_of("#1a73e8") > 0.001 and share_of("#e8710a") > 0.001
    assert share_of("#ffffff") < 0.97
