"""Program tier: `__main__.py` under `pulumi.runtime.set_mocks` for every stack file."""

from __future__ import annotations

import asyncio
import json
import runpy

import pulumi
import pytest
import yaml

from tests.conftest import REPO

class RecordingMocks(pulumi.runtime.Mocks):
    """Records every registration; answers the one data source the GCP stacks call."""

    def __init__(self) -> None:
        self.resources: dict[str, tuple[str, dict]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources[args.name] = (args.typ, dict(args.inputs))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": "123456789", "projectId": args.args.get("projectId")}
        raise NotImplementedError(args.token)


def stack_config(stack: str) -> dict[str, str]:
    values = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key: json.dumps(value) if isinstance(value, (dict, list)) else json.dumps(value)
            if isinstance(value, bool) else str(value) for key, value in values.items()}


def run_program(stack: str, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> RecordingMocks:
    mocks = RecordingMocks()
    # pulumi.runtime.test runs on the current event loop; earlier tests (asyncio.run) may have closed it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(mocks, project="translation-tuning", stack=stack, preview=False)
    config = {**stack_config(stack), **overrides}
    pulumi.runtime.config.CONFIG.set({})
    pulumi.runtime.set_all_config(config)

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")
        return pulumi.Output.from_input(True)

    program()
    return mocks


def by_type(mocks: RecordingMocks, suffix: str) -> list[tuple[str, dict]]:
    return [(name, inputs) for name, (typ, inputs) in mocks.resources.items() if typ.endswith(suffix)]


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_each_stack_declares_datasets_and_one_tuning_job(stack, monkeypatch):
    mocks = run_program(stack, monkeypatch)
    jobs = by_type(mocks, "vertex:TuningJob")
    datasets = by_type(mocks, "storage:TuningDataset")
    assert len(jobs) == 1
    assert sorted(inputs["kind"] for _, inputs in datasets) == ["training", "validation"]
    job = jobs[0][1]
    assert job["baseModel"] == "translation-llm-002" and job["adapterSize"] == 4


def test_local_stack_uses_the_emulator_bucket_not_pulumi_gcp(monkeypatch):
    mocks = run_program("local", monkeypatch)
    assert by_type(mocks, "storage:EmulatorBucket")
    assert not [typ for typ, _ in mocks.resources.values() if typ.startswith("gcp:")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gcp_stacks_grant_the_tuning_agent_read_access(stack, monkeypatch):
    mocks = run_program(stack, monkeypatch)
    bucket = by_type(mocks, "gcp:storage/bucket:Bucket")[0][1]
    member = by_type(mocks, "gcp:storage/bucketIAMMember:BucketIAMMember")[0][1]
    assert bucket["uniformBucketLevelAccess"] is True and bucket["location"] == "US-CENTRAL1"
    assert bucket["forceDestroy"] is False  # destroy never deletes objects the stack did not upload
    assert member["role"] == "roles/storage.objectViewer"
    assert member["member"] == "serviceAccount:service-123456789@gcp-sa-vertex-tune.iam.gserviceaccount.com"


def test_prod_job_is_protected_and_does_not_wait(monkeypatch):
    mocks = run_program("prod", monkeypatch)
    job = by_type(mocks, "vertex:TuningJob")[0][1]
    assert (job["waitForCompletion"], job["onDelete"]) == (False, "abandon")


def test_dataset_paths_are_resolved_against_the_project(monkeypatch):
    mocks = run_program("local", monkeypatch)
    paths = sorted(inputs["path"] for _, inputs in by_type(mocks, "storage:TuningDataset"))
    assert paths == [str(REPO / "data" / "train.jsonl"), str(REPO / "data" / "validation.jsonl")]


def test_empty_validation_dataset_declares_no_validation_upload(monkeypatch):
    mocks = run_program("local", monkeypatch, **{"translation-tuning:validationDataset": ""})
    assert [inputs["kind"] for _, inputs in by_type(mocks, "storage:TuningDataset")] == ["training"]


def test_a_bad_config_value_stops_the_program_naming_the_key(monkeypatch):
    from tuning.errors import ConfigError

    with pytest.raises(pulumi.RunError, match="translation-tuning:onDelete") as stopped:
        run_program("local", monkeypatch, **{"translation-tuning:onDelete": "keep"})
    assert isinstance(stopped.value.__cause__, ConfigError)


def test_a_malformed_dataset_stops_the_program_before_any_resource(monkeypatch, tmp_path):
    from tuning.errors import DatasetError

    bad = tmp_path / "train.jsonl"
    bad.write_text('{"contents": []}\n')
    with pytest.raises(pulumi.RunError, match=rf"{bad}:1: ") as stopped:
        run_program("local", monkeypatch, **{"translation-tuning:trainingDataset": str(bad)})
    assert isinstance(stopped.value.__cause__, DatasetError)
