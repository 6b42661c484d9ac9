"""Program tier: `__main__.py` under `pulumi.runtime.set_mocks` for every stack file."""

from __future__ import annotations

import asyncio
import json
import logging
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pulumi
import pytest
import yaml

from emulator.background import BackgroundEmulator
from resources.dataset import TuningDatasetProvider
from resources.program_exit import ProgramStopped
from tests.conftest import REPO, stop_background
from tuning.dataset import estimate_tokens, validate_file
from tuning.errors import ConfigError, DatasetError, EmulatorError, TuningError


def make_project(folder: Path) -> Path:
    """A copy of the program in `folder`: the `local` stack's background emulator then lives in
    `folder/.run/emulator`, not in the repository's, and the test can stop it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "__main__.py", folder / "__main__.py")
    (folder / "data").symlink_to(REPO / "data", target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One program copy for the module: `local` runs share its background emulator, stopped at the end."""
    folder = make_project(tmp_path_factory.mktemp("program"))
    yield folder
    stop_background(folder)


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every registration and the stack's exports; answers the one data source the GCP stacks call.

    A TuningDataset's outputs are what its provider's check computes from the file, plus a made-up `uri`.
    """

    def __init__(self) -> None:
        self.resources: dict[str, tuple[str, dict]] = {}
        self.exports: dict[str, object] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources[args.name] = (args.typ, dict(args.inputs))
        outputs = dict(args.inputs)
        if args.typ.endswith("storage:TuningDataset"):
            outputs.update(TuningDatasetProvider().check({}, outputs).inputs, uri=f"gs://mock/{args.name}")
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": "123456789", "projectId": args.args.get("projectId")}
        raise NotImplementedError(args.token)


def stack_config(stack: str) -> dict[str, str]:
    values = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key: json.dumps(value) if isinstance(value, (dict, list)) else json.dumps(value)
            if isinstance(value, bool) else str(value) for key, value in values.items()}


def run_program(stack: str, project: Path, **overrides: str) -> RecordingMocks:
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
        runpy.run_path(str(project / "__main__.py"), run_name="__main__")
        exported = dict(pulumi.runtime.get_root_resource().outputs)
        return pulumi.Output.from_input(exported).apply(mocks.exports.update)

    program()
    return mocks


def by_type(mocks: RecordingMocks, suffix: str) -> list[tuple[str, dict]]:
    return [(name, inputs) for name, (typ, inputs) in mocks.resources.items() if typ.endswith(suffix)]


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_each_stack_declares_datasets_and_one_tuning_job(stack, project):
    mocks = run_program(stack, project)
    jobs = by_type(mocks, "vertex:TuningJob")
    datasets = by_type(mocks, "storage:TuningDataset")
    assert len(jobs) == 1
    assert sorted(inputs["kind"] for _, inputs in datasets) == ["training", "validation"]
    job = jobs[0][1]
    assert job["baseModel"] == "translation-llm-002" and job["adapterSize"] == 4


def dataset_facts(path: Path, kind: str, uri: str) -> dict:
    report = validate_file(path, kind=kind)
    return {"uri": uri, "examples": report.example_count, "estimatedTokens": estimate_tokens(report.total_characters),
            "bytes": report.bytes, "sha256": report.sha256}


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_each_stack_exports_the_facts_of_its_datasets(stack, project):
    exports = run_program(stack, project).exports
    assert exports["trainingDataset"] == dataset_facts(project / "data" / "train.jsonl", "training",
                                                       "gs://mock/translation-training-data")
    assert exports["validationDataset"] == dataset_facts(project / "data" / "validation.jsonl", "validation",
                                                         "gs://mock/translation-validation-data")
    # The outputs that were there before stay.
    assert exports["trainingDatasetUri"] == exports["trainingDataset"]["uri"]
    assert {"bucketName", "validationDatasetUri", "tuningJobName", "state", "tunedModelName",
            "tunedModelEndpointName", "experiment", "metrics"} <= set(exports)


def test_without_a_validation_set_its_output_is_none(project):
    exports = run_program("local", project, **{"translation-tuning:validationDataset": ""}).exports
    assert exports["validationDataset"] is None and exports["validationDatasetUri"] is None
    assert exports["trainingDataset"]["examples"] == len((project / "data" / "train.jsonl").read_text().splitlines())


def test_local_stack_uses_the_emulator_bucket_not_pulumi_gcp(project):
    mocks = run_program("local", project)
    assert by_type(mocks, "storage:EmulatorBucket")
    assert not [typ for typ, _ in mocks.resources.values() if typ.startswith("gcp:")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gcp_stacks_grant_the_tuning_agent_read_access(stack, project):
    mocks = run_program(stack, project)
    bucket = by_type(mocks, "gcp:storage/bucket:Bucket")[0][1]
    member = by_type(mocks, "gcp:storage/bucketIAMMember:BucketIAMMember")[0][1]
    assert bucket["uniformBucketLevelAccess"] is True and bucket["location"] == "US-CENTRAL1"
    assert bucket["forceDestroy"] is False  # destroy never deletes objects the stack did not upload
    assert member["role"] == "roles/storage.objectViewer"
    assert member["member"] == "serviceAccount:service-123456789@gcp-sa-vertex-tune.iam.gserviceaccount.com"


def test_prod_job_is_protected_and_does_not_wait(project):
    mocks = run_program("prod", project)
    job = by_type(mocks, "vertex:TuningJob")[0][1]
    assert (job["waitForCompletion"], job["onDelete"]) == (False, "abandon")


@pytest.mark.parametrize(("stack", "overrides", "expected"), [
    ("local", {}, "delete"), ("dev", {}, "keep"), ("prod", {}, "keep"),
    ("local", {"translation-tuning:tunedModelOnDelete": "keep"}, "keep"),
    ("dev", {"translation-tuning:tunedModelOnDelete": "delete"}, "delete")])
def test_the_tuned_model_is_deleted_on_destroy_by_default_only_on_the_emulator(project, stack, overrides, expected):
    mocks = run_program(stack, project, **overrides)
    assert by_type(mocks, "vertex:TuningJob")[0][1]["tunedModelOnDelete"] == expected


def test_dataset_paths_are_resolved_against_the_project(project):
    mocks = run_program("local", project)
    paths = sorted(inputs["path"] for _, inputs in by_type(mocks, "storage:TuningDataset"))
    assert paths == [str(project / "data" / "train.jsonl"), str(project / "data" / "validation.jsonl")]


def test_empty_validation_dataset_declares_no_validation_upload(project):
    mocks = run_program("local", project, **{"translation-tuning:validationDataset": ""})
    assert [inputs["kind"] for _, inputs in by_type(mocks, "storage:TuningDataset")] == ["training"]


def stopped_program(stack: str, project: Path, caplog: pytest.LogCaptureFixture,
                    **overrides: str) -> tuple[TuningError, list[str]]:
    """Run a program that must stop on one of our errors: (that error, the error lines the program logged)."""
    with pytest.raises(ProgramStopped) as stopped:
        run_program(stack, project, **overrides)
    return stopped.value.__cause__, [record.message for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_bad_config_value_stops_the_program_naming_the_key(project, caplog):
    error, logged = stopped_program("local", project, caplog, **{"translation-tuning:onDelete": "keep"})
    assert isinstance(error, ConfigError) and logged == [str(error)]
    assert logged[0].startswith("translation-tuning:onDelete: ")


def test_a_malformed_dataset_stops_the_program_before_any_resource(project, tmp_path, caplog):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"contents": []}\n')
    error, logged = stopped_program("local", project, caplog, **{"translation-tuning:trainingDataset": str(bad)})
    assert isinstance(error, DatasetError) and logged == [str(error)]
    assert logged[0].startswith(f"{bad}:1: ")


def test_local_stack_starts_the_background_emulator_and_logs_its_console(project, caplog):
    caplog.set_level(logging.INFO)
    run_program("local", project)
    url = BackgroundEmulator.for_project(project).running_endpoint()
    assert url and f"emulator console: {url}/" in caplog.messages


def test_gcp_stacks_start_no_emulator(tmp_path):
    run_program("dev", make_project(tmp_path / "program"))
    assert not (tmp_path / "program" / ".run").exists()


def test_an_emulator_that_cannot_start_stops_the_program_naming_its_log(tmp_path, monkeypatch, caplog):
    program = make_project(tmp_path / "program")
    monkeypatch.setenv("TT_EMULATOR_MAX_JSON_BYTES", "not-a-number")
    try:
        error, logged = stopped_program("local", program, caplog)
    finally:
        stop_background(program)
    assert isinstance(error, EmulatorError) and logged == [str(error)]
    assert str(BackgroundEmulator.for_project(program).log_file) in logged[0]


def test_the_program_and_its_providers_load_no_validation_library_or_cloud_client():
    # Each `pulumi up` runs the program twice and starts the providers' process twice: pydantic, requests and the
    # Google clients would each add tens of milliseconds to every no-op run (docs/performance.md).
    modules = ", ".join(["resources.component", "resources.embedded", "resources.program_exit", "resources.settings",
                         "resources.bucket", "resources.dataset", "resources.tuning_job", "resources.evaluation"])
    script = (f"import sys; import {modules}; "
              "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'requests', 'google.cloud.', "
              "'google.api_core'))))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
