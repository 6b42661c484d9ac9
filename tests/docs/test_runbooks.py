"""Every runbook in docs/gitops.md, run as written against the emulator after the failure it is for."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from emulator.server import serve_in_thread
from tests.conftest import REPO, emulator_settings
from tests.e2e.cli import PulumiProject, make_project

GUIDE = REPO / "docs" / "gitops.md"
RUNBOOK = re.compile(r"<!-- runbook: ([a-z-]+) -->\n```sh\n(.*?)```", re.S)
JOB_URN = ("urn:pulumi:e2e::translation-tuning::translation-tuning:index:TranslationTuning"
           "$pulumi-python:dynamic/vertex:TuningJob::translation-job")


def runbooks() -> dict[str, str]:
    return dict(RUNBOOK.findall(GUIDE.read_text()))


def run_runbook(name: str, project: PulumiProject, endpoint: str) -> subprocess.CompletedProcess:
    """The runbook's block in `bash -euo pipefail`, in the project, as the guide says to prepare the shell."""
    env = {**project.env, "STACK": project.stack, "GOOGLE_CLOUD_PROJECT": "e2e-project",
           "TT_EMULATOR_ENDPOINT": endpoint, "PULUMI_SKIP_CONFIRMATIONS": "true"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", runbooks()[name]], cwd=project.dir, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"runbook {name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def jobs(endpoint: str) -> list[dict]:
    body = requests.get(f"{endpoint}/v1/projects/e2e-project/locations/us-central1/tuningJobs", timeout=30).json()
    return body.get("tuningJobs", [])


def test_the_guide_has_the_four_runbooks_the_tests_cover():
    assert set(runbooks()) == {"interrupted-deploy", "failed-or-cancelled-job", "drift-found",
                               "tuned-model-clean-up"}


def test_interrupted_deploy(tmp_path):
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=100000, step_delay_seconds=0.05)) as slow:
        project = make_project(tmp_path, slow.url, completionTimeout=20)
        # `pulumi up` killed with its whole process group once the job exists: a lost runner.
        deploy = subprocess.Popen(["pulumi", "up", "--yes", "--stack", project.stack, "--non-interactive"],
                                  cwd=project.dir, env=project.env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not jobs(slow.url) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert jobs(slow.url), "the interrupted up never created its job"
        os.killpg(deploy.pid, signal.SIGKILL)
        deploy.wait()
        locked = project.run("up", "--yes", check=False)
        assert "the stack is currently locked" in locked.stdout + locked.stderr

        result = run_runbook("interrupted-deploy", project, slow.url)
        listed = [line for line in result.stdout.splitlines() if line.startswith("projects/")]  # jobs list rows
        assert "adopted tuning job" in result.stdout
        assert len(listed) == 1 and len(jobs(slow.url)) == 1
        assert project.outputs()["tuningJobName"] == jobs(slow.url)[0]["name"]


def test_failed_or_cancelled_job(tmp_path):
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=100000, step_delay_seconds=0.05)) as slow:
        project = make_project(tmp_path, slow.url, waitForCompletion=False)
        project.run("up", "--yes")
        first = project.outputs()["tuningJobName"]
        # Cancelled outside the stack (the console, or a quota error's FAILED, would do the same).
        requests.post(f"{slow.url}/v1/{first}:cancel", json={}, timeout=30).raise_for_status()

        result = run_runbook("failed-or-cancelled-job", project, slow.url)
        assert "JOB_STATE_CANCELLED" in result.stdout  # recorded by refresh, shown by the job's details
        second = project.outputs()["tuningJobName"]
        assert second != first
        assert {job["name"]: job["state"] for job in jobs(slow.url)}[first] == "JOB_STATE_CANCELLED"
        assert project.outputs()["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")


def test_drift_found(tmp_path):
    with serve_in_thread(emulator_settings(tmp_path / "emulator")) as emulator:
        project = make_project(tmp_path, emulator.url)
        project.run("up", "--yes")
        outputs = project.outputs()
        # Someone deletes the uploaded training object by hand.
        client = storage.Client(project="e2e-project", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": emulator.url})
        bucket, _, name = outputs["trainingDatasetUri"].removeprefix("gs://").partition("/")
        client.bucket(bucket).blob(name).delete()
        project.run("refresh", "--yes")
        drift = project.run("preview", "--expect-no-changes", check=False)
        assert drift.returncode != 0  # what the scheduled drift check reports

        run_runbook("drift-found", project, emulator.url)
        restored = project.outputs()
        assert restored["trainingDatasetUri"] != outputs["trainingDatasetUri"]
        assert client.bucket(bucket).blob(restored["trainingDatasetUri"].partition(f"{bucket}/")[2]).exists()


def test_tuned_model_clean_up(tmp_path):
    with serve_in_thread(emulator_settings(tmp_path / "emulator")) as emulator:
        project = make_project(tmp_path, emulator.url)
        project.run("up", "--yes")
        outputs = project.outputs()
        result = run_runbook("tuned-model-clean-up", project, emulator.url)
        endpoint, model = outputs["tunedModelEndpointName"], outputs["tunedModelName"]
        assert f"deleted {endpoint}" in result.stdout and f"deleted {model}" in result.stdout
        assert requests.get(f"{emulator.url}/v1/{endpoint}", timeout=30).status_code == 404
        assert requests.get(f"{emulator.url}/v1/{model}", timeout=30).status_code == 404


@pytest.mark.parametrize("name", ["interrupted-deploy", "failed-or-cancelled-job", "drift-found",
                                  "tuned-model-clean-up"])
def test_runbook_commands_target_the_chosen_stack(name):
    # Every pulumi command in a runbook names the stack: a runbook must not act on whatever is selected.
    for line in runbooks()[name].splitlines():
        for command in re.findall(r"(?:^|\$\(|&& )pulumi ([^)]*)", line):
            assert '--stack "$STACK"' in command, f"{name}: {line}"
