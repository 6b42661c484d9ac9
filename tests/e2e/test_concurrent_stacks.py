"""Four stacks run `pulumi up` at the same time against one emulator: four jobs, all succeed, none duplicated.

Each stack is its own copy of the project (tests/e2e/cli.py) with its own state backend and PULUMI_HOME, as four
engineers (or four CI runs) would have; only the emulator is shared. The emulator trains one job at a time, so the
stacks also wait for each other's training while they poll.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import requests

from resources.tuning_job import IDEMPOTENCY_LABEL
from tests.conftest import REPO
from tests.e2e.cli import PulumiProject, make_project

STACKS = ("team-a", "team-b", "team-c", "team-d")
PARENT = "projects/e2e-project/locations/us-central1"
# Four engines and four trainings queued on 2 shared cores: room for the last job to wait for the three before it.
COMPLETION_TIMEOUT = 900
UP_TIMEOUT = 1200
ARTIFACT = REPO / "tests" / "artifacts" / "concurrent_stacks.json"


def up_all_at_once(projects: list[PulumiProject], logs: Path) -> list[tuple[int, str]]:
    """Start `pulumi up --yes` in every project together; (exit code, output) of each."""
    logs.mkdir()
    started = [(project.start("up", "--yes", log=logs / f"{project.stack}.log"), logs / f"{project.stack}.log")
               for project in projects]
    results = []
    for process, log in started:
        try:
            code = process.wait(timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired:
            for other, _ in started:
                other.kill()
            raise
        results.append((code, log.read_text(errors="replace")))
    return results


def jobs(url: str) -> list[dict]:
    return requests.get(f"{url}/v1/{PARENT}/tuningJobs", params={"pageSize": 100}, timeout=30).json()["tuningJobs"]


def object_size(url: str, uri: str) -> int:
    bucket, name = uri.removeprefix("gs://").split("/", 1)
    response = requests.get(f"{url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", timeout=30)
    response.raise_for_status()
    return int(response.json()["size"])


def test_four_stacks_up_at_once_make_four_distinct_jobs_that_all_succeed(tmp_path, emulator):
    url = emulator.url
    projects = [make_project(tmp_path / stack, url, stack=stack, completionTimeout=COMPLETION_TIMEOUT)
                for stack in STACKS]

    began = time.monotonic()
    results = up_all_at_once(projects, tmp_path / "logs")
    wall = time.monotonic() - began
    print(f"\nfour concurrent `pulumi up`: {wall:.1f} s wall")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps({"stacks": len(STACKS), "wall_seconds": round(wall, 1)}, indent=2) + "\n")

    for stack, (code, output) in zip(STACKS, results, strict=True):  # one result per project, in order
        assert code == 0, f"pulumi up of {stack} exited {code}:\n{output[-4000:]}"
        assert "Traceback" not in output, output
    outputs = {project.stack: project.outputs() for project in projects}

    # Exactly one job per stack: four jobs, four idempotency keys, and each stack names its own.
    listed = {job["name"]: job for job in jobs(url)}
    assert len(listed) == len(STACKS), sorted(listed)
    assert {job["state"] for job in listed.values()} == {"JOB_STATE_SUCCEEDED"}
    assert len({job["labels"][IDEMPOTENCY_LABEL] for job in listed.values()}) == len(STACKS)
    assert sorted(output["tuningJobName"] for output in outputs.values()) == sorted(listed)
    for stack, output in outputs.items():
        assert output["state"] == "JOB_STATE_SUCCEEDED", stack
        job = listed[output["tuningJobName"]]
        assert output["tunedModelEndpointName"] == job["tunedModel"]["endpoint"]
        assert job["supervisedTuningSpec"]["trainingDatasetUri"] == output["trainingDatasetUri"]  # its own data

    # Each stack's own bucket holds its two datasets, whole.
    bucket_names = {item["name"] for item in
                    requests.get(f"{url}/storage/v1/b", params={"project": "e2e-project"}, timeout=30).json()["items"]}
    assert bucket_names == {f"e2e-project-tuning-{stack}" for stack in STACKS}
    for stack, output in outputs.items():
        assert output["bucketName"] == f"e2e-project-tuning-{stack}"
        for kind in ("training", "validation"):
            facts = output[f"{kind}Dataset"]
            assert facts["uri"].startswith(f"gs://{output['bucketName']}/datasets/{kind}/")
            assert object_size(url, facts["uri"]) == facts["bytes"]
