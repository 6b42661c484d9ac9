"""End to end: the real Pulumi engine runs preview/up/refresh/destroy of a throwaway stack against the emulator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
import yaml
from pulumi import automation as auto

from deploy.engine import EngineDirs
from deploy.stack import StackRun
from emulator.server import serve_in_thread
from tests.conftest import REPO, emulator_settings

STACK = "e2e"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def make_project(tmp_path: Path, endpoint: str, **config: object) -> StackRun:
    """A copy of the project's Pulumi.yaml and __main__.py with a stack file pointing at `endpoint`."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(REPO / name, project / name)
    for name in ("train.jsonl", "validation.jsonl"):
        shutil.copy(REPO / "data" / name, project / "data" / name)
    values = {"gcp:project": "e2e-project", "gcp:region": "us-central1",
              "translation-tuning:emulatorEndpoint": endpoint, "translation-tuning:completionTimeout": 300,
              "translation-tuning:labels": {"suite": "e2e"}}
    values.update({f"translation-tuning:{key}": value for key, value in config.items()})
    (project / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": values}))
    return StackRun(project, STACK, EngineDirs(tmp_path / "state", tmp_path / "home"), tmp_path / "run")


def jobs(endpoint: str) -> list[dict]:
    body = requests.get(f"{endpoint}/v1/projects/e2e-project/locations/us-central1/tuningJobs", timeout=30).json()
    return body.get("tuningJobs", [])


def objects(endpoint: str, bucket: str) -> list[str]:
    response = requests.get(f"{endpoint}/storage/v1/b/{bucket}/o", timeout=30)
    return [item["name"] for item in response.json().get("items", [])] if response.ok else []


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "e2e-test-passphrase")


@pytest.fixture
def fast_emulator(tmp_path: Path):
    with serve_in_thread(emulator_settings(tmp_path / "emulator")) as running:
        yield running


def open_stack(run: StackRun) -> auto.Stack:
    return run.open()


def test_full_lifecycle_preview_up_noop_change_refresh_destroy(tmp_path, passphrase, fast_emulator):
    run = make_project(tmp_path, fast_emulator.url)
    stack = open_stack(run)

    preview = stack.preview(diff=True)
    assert preview.change_summary.get("create") == 6  # stack, component, bucket, 2 datasets, job
    assert jobs(fast_emulator.url) == []

    up = stack.up()
    outputs = {key: value.value for key, value in up.outputs.items()}
    assert outputs["state"] == "JOB_STATE_SUCCEEDED"
    assert outputs["tunedModelEndpointName"].startswith("projects/e2e-project/locations/us-central1/endpoints/")
    assert set(outputs["metrics"]) == {"train_total_loss", "train_fraction_of_correct_next_step_preds",
                                       "train_num_predictions", "eval_total_loss",
                                       "eval_fraction_of_correct_next_step_preds", "eval_num_predictions"}
    assert outputs["trainingDatasetUri"].startswith(f"gs://{outputs['bucketName']}/datasets/training/")
    first_job = outputs["tuningJobName"]

    again = stack.up()
    assert set(again.summary.resource_changes) == {"same"}

    train = run.project_dir / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[0] = lines[0].replace("Spanish:", "Spanish: ")  # one changed example
    train.write_text("\n".join(lines) + "\n")
    changed = stack.up()
    assert changed.summary.resource_changes.get("replace") == 2  # the training dataset and the job
    second_job = changed.outputs["tuningJobName"].value
    assert second_job != first_job
    assert changed.outputs["trainingDatasetUri"].value != outputs["trainingDatasetUri"]
    assert len(objects(fast_emulator.url, outputs["bucketName"])) == 2  # old training object deleted

    refresh = stack.refresh()
    assert set(refresh.summary.resource_changes) == {"same"}

    stack.destroy()
    assert stack.export_stack().deployment.get("resources") in (None, [])
    assert all(job["state"] in TERMINAL for job in jobs(fast_emulator.url))


def test_destroy_cancels_a_running_job(tmp_path, passphrase):
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=100000, step_delay_seconds=0.05)) as slow:
        run = make_project(tmp_path, slow.url, waitForCompletion=False)
        stack = open_stack(run)
        up = stack.up()
        assert up.outputs["state"].value in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
        stack.destroy()
        states = [job["state"] for job in jobs(slow.url)]
        assert states == ["JOB_STATE_CANCELLED"]


def test_malformed_dataset_fails_preview_naming_file_and_line(tmp_path, passphrase, fast_emulator):
    run = make_project(tmp_path, fast_emulator.url)
    train = run.project_dir / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[4] = '{"contents": [{"role": "model", "parts": [{"text": "Hola."}]}]}'
    train.write_text("\n".join(lines) + "\n")
    stack = open_stack(run)
    with pytest.raises(auto.CommandError) as failure:
        stack.preview()
    assert f"{train}:5" in str(failure.value)
    with pytest.raises(auto.CommandError):
        stack.up()
    assert jobs(fast_emulator.url) == []
    assert requests.get(f"{fast_emulator.url}/storage/v1/b?project=e2e-project", timeout=30).json().get("items",
                                                                                                        []) == []


def test_interrupted_create_then_new_up_leaves_one_job(tmp_path, passphrase, fast_emulator):
    run = make_project(tmp_path, fast_emulator.url)
    # The create is served but its response is lost as a non-retryable error: the first up fails
    # after the job exists, like a provider killed right after tuningJobs.create.
    requests.post(f"{fast_emulator.url}/_emulator/faults", timeout=30,
                  json={"pathRegex": "/tuningJobs$", "method": "POST", "status": 400, "times": 1,
                        "afterHandler": True}).raise_for_status()
    stack = open_stack(run)
    with pytest.raises(auto.CommandError):
        stack.up()
    assert len(jobs(fast_emulator.url)) == 1
    up = stack.up()
    assert up.outputs["state"].value == "JOB_STATE_SUCCEEDED"
    assert [job["name"] for job in jobs(fast_emulator.url)] == [up.outputs["tuningJobName"].value]
