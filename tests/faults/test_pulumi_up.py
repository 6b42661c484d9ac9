"""The real `pulumi` binary (tests/e2e/cli.py) against an emulator that fails on purpose.

Injected 429/5xx errors and lost answers on every route family the stack calls: `up`, `refresh` and `destroy`
converge, with exactly one tuning job and no traceback. Failures that retries cannot fix (a persistent 503, a
403, an unreachable endpoint) end `up` with one line under the resource that names the call, the resource and
what to do.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import requests

from emulator.server import serve_in_thread
from tests.conftest import emulator_settings
from tests.e2e.cli import PulumiProject, make_project
from tests.faults.conftest import CONVERGE_DEADLINE, GIVE_UP_DEADLINE
from tests.faults.helpers import (
    BUCKET,
    BUCKETS,
    CANCEL,
    JOB,
    JOBS,
    OBJECT,
    UPLOAD,
    add_fault,
    clear_faults,
    not_fully_injected,
)
from tuning.client import RETRY_DEADLINE_ENV

PARENT = "projects/e2e-project/locations/us-central1"
BUCKET_NAME = "e2e-project-tuning-e2e"


def jobs(url: str) -> list[dict]:
    return requests.get(f"{url}/v1/{PARENT}/tuningJobs", timeout=30).json().get("tuningJobs", [])


def buckets(url: str) -> list[str]:
    items = requests.get(f"{url}/storage/v1/b?project=e2e-project", timeout=30).json().get("items", [])
    return [item["name"] for item in items]


def project_for(tmp_path: Path, endpoint: str, deadline: str, **config) -> PulumiProject:
    project = make_project(tmp_path, endpoint, **config)
    project.env[RETRY_DEADLINE_ENV] = deadline  # the engine hands its environment to the program and providers
    return project


def run(project: PulumiProject, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = project.run(*args, check=check)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout
    return result


def resource_errors(output: str, resource: str) -> list[str]:
    """The `error:` lines the Diagnostics section shows under `resource` (e.g. `TuningJob (translation-job)`)."""
    section = output.split("Diagnostics:", 1)[-1]
    found = re.search(rf"^  \S+{re.escape(resource)}:\n(?P<body>(?:    .*\n|\n)*?)(?:  \S|\n\S|\Z)", section, re.M)
    assert found, output
    return [line.strip() for line in found.group("body").splitlines() if line.strip().startswith("error:")]


def test_up_refresh_destroy_converge_through_faults_on_every_route_family(tmp_path, emulator):
    url = emulator.url
    project = project_for(tmp_path, url, CONVERGE_DEADLINE)
    add_fault(url, BUCKET, "GET", 503)                 # buckets.get before the insert
    add_fault(url, BUCKET, "GET", 429)
    add_fault(url, BUCKETS, "POST", 503, lost=True)    # buckets.insert served, answer lost
    add_fault(url, UPLOAD, "POST", 500)                # objects.insert (multipart), both datasets
    add_fault(url, UPLOAD, "POST", 503, lost=True)
    add_fault(url, JOBS, "GET", 503, times=2)          # tuningJobs.list: the idempotency-label look-ups
    add_fault(url, JOBS, "POST", 503, lost=True)       # tuningJobs.create served, answer lost: adopted
    add_fault(url, JOB, "GET", 429)                    # tuningJobs.get while waiting for the end
    add_fault(url, JOB, "GET", 500, lost=True)

    run(project, "up", "--yes")

    assert not_fully_injected(url) == []
    outputs = project.outputs()
    assert outputs["state"] == "JOB_STATE_SUCCEEDED"
    assert [job["name"] for job in jobs(url)] == [outputs["tuningJobName"]]

    clear_faults(url)
    add_fault(url, BUCKET, "GET", 500)
    add_fault(url, OBJECT, "GET", 503, times=2)        # objects.get of both datasets
    add_fault(url, JOB, "GET", 503, lost=True)
    run(project, "refresh", "--yes")
    assert not_fully_injected(url) == []
    assert set(project.last_changes()) == {"same"}

    clear_faults(url)
    add_fault(url, JOB, "GET", 429)
    add_fault(url, OBJECT, "DELETE", 503, lost=True)   # objects.delete served, answer lost: the retry gets 404
    add_fault(url, OBJECT, "DELETE", 500)
    add_fault(url, BUCKET, "DELETE", 503, lost=True)   # buckets.delete served, answer lost
    run(project, "destroy", "--yes")
    assert not_fully_injected(url) == []
    assert buckets(url) == []
    assert [job["name"] for job in jobs(url)] == [outputs["tuningJobName"]]


def test_destroy_cancels_the_running_job_through_cancel_errors_and_a_lost_answer(tmp_path):
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=100000, step_delay_seconds=0.05)) as slow:
        project = project_for(tmp_path, slow.url, CONVERGE_DEADLINE, waitForCompletion=False)
        run(project, "up", "--yes")
        add_fault(slow.url, CANCEL, "POST", 500)
        add_fault(slow.url, CANCEL, "POST", 503, lost=True)  # the cancel lands, its answer is lost
        add_fault(slow.url, JOB, "GET", 503, times=2)

        run(project, "destroy", "--yes")

        assert not_fully_injected(slow.url) == []
        assert [job["state"] for job in jobs(slow.url)] == ["JOB_STATE_CANCELLED"]


def test_a_persistent_503_on_create_ends_up_with_one_line_naming_the_call(tmp_path, emulator):
    project = project_for(tmp_path, emulator.url, GIVE_UP_DEADLINE)
    add_fault(emulator.url, JOBS, "POST", 503, times=None)

    result = run(project, "up", "--yes", check=False)

    assert result.returncode != 0
    [line] = resource_errors(result.stdout, "TuningJob (translation-job)")
    assert re.fullmatch(rf"error: Vertex AI tuningJobs.create in {PARENT}: 503 Service Unavailable \(Injected fault: "
                        rf"POST /v1/{PARENT}/tuningJobs answered 503.\), still after retrying for \d+\.\ds; the "
                        rf"service is failing or overloaded: try again later \({RETRY_DEADLINE_ENV}=SECONDS retries "
                        r"longer\)", line), line
    assert jobs(emulator.url) == []


def test_a_403_on_upload_ends_up_with_one_line_naming_the_object_and_the_role(tmp_path, emulator):
    project = project_for(tmp_path, emulator.url, GIVE_UP_DEADLINE)
    add_fault(emulator.url, UPLOAD, "POST", 403, times=None)

    result = run(project, "up", "--yes", check=False)

    assert result.returncode != 0
    [line] = resource_errors(result.stdout, "TuningDataset (translation-training-data)")
    assert re.fullmatch(rf"error: Cloud Storage objects.insert \(multipart upload\) gs://{BUCKET_NAME}/datasets/"
                        r"training/[0-9a-f]{64}/[0-9a-f]{8}/train.jsonl: permission denied \(403 Forbidden: Injected "
                        r"fault: POST /upload/storage/v1/b/e2e-project-tuning-e2e/o answered 403.\); grant the "
                        r"caller's account Storage Admin \(roles/storage.admin\) on project e2e-project, or run with "
                        r"other credentials \(gcloud auth application-default login\)", line), line
    assert jobs(emulator.url) == []


def test_an_unreachable_endpoint_ends_up_with_one_line_naming_it(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    project = project_for(tmp_path, url, GIVE_UP_DEADLINE)

    result = run(project, "up", "--yes", check=False)

    assert result.returncode != 0
    [line] = resource_errors(result.stdout, "EmulatorBucket (translation-bucket)")
    assert re.fullmatch(rf"error: Cloud Storage buckets.get gs://{BUCKET_NAME}: cannot connect to {url} \(connection "
                        r"refused\), still after retrying for \d+\.\ds; is the emulator running there\? start it "
                        r"\(python -m emulator.background start\) or point to the right one \(stack config "
                        r"translation-tuning:emulatorEndpoint, or --emulator URL\)", line), line
