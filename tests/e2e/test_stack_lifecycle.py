"""End to end: plain `pulumi` (the pinned CLI, our language host) runs a throwaway stack against the emulator."""

from __future__ import annotations

import json

import requests

from emulator.server import serve_in_thread
from tests.conftest import REPO, emulator_settings
from tests.e2e.cli import make_project
from tuning.dataset import estimate_tokens, validate_file

TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
POLICY_PACK = str(REPO / "policy")


def jobs(endpoint: str) -> list[dict]:
    body = requests.get(f"{endpoint}/v1/projects/e2e-project/locations/us-central1/tuningJobs", timeout=30).json()
    return body.get("tuningJobs", [])


def objects(endpoint: str, bucket: str) -> list[str]:
    response = requests.get(f"{endpoint}/storage/v1/b/{bucket}/o", timeout=30)
    return [item["name"] for item in response.json().get("items", [])] if response.ok else []


def buckets(endpoint: str) -> list[dict]:
    return requests.get(f"{endpoint}/storage/v1/b?project=e2e-project", timeout=30).json().get("items", [])


def test_full_lifecycle_preview_up_noop_change_refresh_destroy(tmp_path, emulator):
    project = make_project(tmp_path, emulator.url)

    assert project.planned() == {"create": 7}  # stack, component, bucket, 2 datasets, job, evaluation
    assert jobs(emulator.url) == []

    project.run("up", "--yes")
    outputs = project.outputs()
    assert outputs["state"] == "JOB_STATE_SUCCEEDED"
    assert outputs["tunedModelEndpointName"].startswith("projects/e2e-project/locations/us-central1/endpoints/")
    assert set(outputs["metrics"]) == {"train_total_loss", "train_fraction_of_correct_next_step_preds",
                                       "train_num_predictions", "eval_total_loss",
                                       "eval_fraction_of_correct_next_step_preds", "eval_num_predictions"}
    assert outputs["trainingDatasetUri"].startswith(f"gs://{outputs['bucketName']}/datasets/training/")
    for kind, name in (("training", "train.jsonl"), ("validation", "validation.jsonl")):
        report = validate_file(project.dir / "data" / name, kind=kind)
        assert outputs[f"{kind}Dataset"] == {
            "uri": outputs[f"{kind}DatasetUri"], "examples": report.example_count, "bytes": report.bytes,
            "estimatedTokens": estimate_tokens(report.total_characters), "sha256": report.sha256}

    project.run("preview", "--expect-no-changes")
    project.run("up", "--yes")
    assert set(project.last_changes()) == {"same"}

    train = project.dir / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[0] = lines[0].replace("Spanish:", "Spanish: ")  # one changed example
    train.write_text("\n".join(lines) + "\n")
    project.run("up", "--yes")
    assert project.last_changes().get("replace") == 3  # the training dataset, the job and its evaluation
    changed = project.outputs()
    assert changed["tuningJobName"] != outputs["tuningJobName"]
    assert changed["trainingDatasetUri"] != outputs["trainingDatasetUri"]
    assert len(objects(emulator.url, outputs["bucketName"])) == 2  # old training object deleted

    project.run("refresh", "--yes")
    assert set(project.last_changes()) == {"same"}

    project.run("destroy", "--yes")
    assert json.loads(project.run("stack", "export").stdout)["deployment"].get("resources") in (None, [])
    assert all(job["state"] in TERMINAL for job in jobs(emulator.url))
    assert buckets(emulator.url) == []
    # tunedModelOnDelete defaults to delete on the emulator: no endpoint or model is left behind.
    for name in (changed["tunedModelEndpointName"], changed["tunedModelName"].split("@")[0]):
        assert requests.get(f"{emulator.url}/v1/{name}", timeout=30).status_code == 404, name


def test_destroy_cancels_a_running_job(tmp_path):
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=100000, step_delay_seconds=0.05)) as slow:
        project = make_project(tmp_path, slow.url, waitForCompletion=False)
        project.run("up", "--yes")
        assert project.outputs()["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
        project.run("destroy", "--yes")
        assert [job["state"] for job in jobs(slow.url)] == ["JOB_STATE_CANCELLED"]


def test_malformed_dataset_fails_preview_naming_file_and_line(tmp_path, emulator):
    project = make_project(tmp_path, emulator.url)
    train = project.dir / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[4] = '{"contents": [{"role": "model", "parts": [{"text": "Hola."}]}]}'
    train.write_text("\n".join(lines) + "\n")

    preview = project.run("preview", check=False)
    assert preview.returncode != 0
    assert f"{train}:5: contents[0].role" in preview.stdout
    assert "Traceback" not in preview.stdout + preview.stderr
    assert project.run("up", "--yes", check=False).returncode != 0
    assert jobs(emulator.url) == []
    assert buckets(emulator.url) == []


def test_a_bad_config_value_fails_preview_with_one_line_naming_the_key(tmp_path, emulator):
    project = make_project(tmp_path, emulator.url)
    project.set_config("translation-tuning:adapterSize", "8")
    preview = project.run("preview", check=False)
    assert preview.returncode != 0
    errors = [line.strip() for line in preview.stdout.split("Diagnostics:")[-1].splitlines()
              if line.strip().startswith("error:")]
    assert errors == ["error: translation-tuning:adapterSize: Value error, translation-llm-002 supports adapter "
                      "size 4 only, got 8"]
    assert "Traceback" not in preview.stdout + preview.stderr
    assert buckets(emulator.url) == []


def test_interrupted_create_then_new_up_leaves_one_job(tmp_path, emulator):
    project = make_project(tmp_path, emulator.url)
    # The create is served but its response is lost as a non-retryable error: the first up fails
    # after the job exists, like a provider killed right after tuningJobs.create.
    requests.post(f"{emulator.url}/_emulator/faults", timeout=30,
                  json={"pathRegex": "/tuningJobs$", "method": "POST", "status": 400, "times": 1,
                        "afterHandler": True}).raise_for_status()
    assert project.run("up", "--yes", check=False).returncode != 0
    assert len(jobs(emulator.url)) == 1
    project.run("up", "--yes")
    outputs = project.outputs()
    assert outputs["state"] == "JOB_STATE_SUCCEEDED"
    assert [job["name"] for job in jobs(emulator.url)] == [outputs["tuningJobName"]]


def test_the_policy_pack_passes_a_labelled_job_and_stops_an_unlabelled_one(tmp_path, emulator):
    project = make_project(tmp_path, emulator.url, labels={"env": "local"})
    violating = project.run("preview", "--policy-pack", POLICY_PACK, check=False)
    assert violating.returncode != 0
    assert "[mandatory]  tuning-job-required-labels" in violating.stdout
    # The stack name reached the pack through the language host's ConfigureStack proxy.
    assert "TuningJob translation-job (stack e2e): labels {'env': 'local'} lack team" in violating.stdout

    project.run("config", "set", "--path", "translation-tuning:labels.team", "e2e")
    passing = project.run("preview", "--policy-pack", POLICY_PACK)
    assert "✅ translation-tuning@v" in passing.stdout
    assert jobs(emulator.url) == []
