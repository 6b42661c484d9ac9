"""The policy pack through the real engine: `pulumi preview --policy-pack policy` on throwaway emulator stacks.

Every rule keys on the TuningJob's `env` label, not on the stack's name, so each one is broken here on purpose
by a stack on the emulator (or by a policy config narrower than the program's own rules, where the program
would refuse the value first). Previews only: nothing is created. The rules no emulator stack can reach (a
GCS bucket, label values the program refuses) are called directly in the pack's venv (rule_runner.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import REPO, emulator_settings
from tests.e2e.cli import PulumiProject, make_project

POLICY_PACK = REPO / "policy"
CONFIGS = POLICY_PACK / "config"
STACK = "policies"
JOB = f"TuningJob translation-job (stack {STACK})"
# `- [mandatory]  policy-name  (type: resource)`, then the policy's description, then the message.
_VIOLATION = re.compile(r"^\s*- \[(?P<level>\w+)\]\s+(?P<policy>\S+)\s+\((?P<resource>[^)]*)\)\s*$")


@dataclass(frozen=True)
class Preview:
    code: int
    stdout: str
    violations: set[tuple[str, str, str]]
    """(enforcement level, policy, message) of each reported violation."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for the module: previews create nothing, so the stacks cannot disturb each other."""
    with serve_in_thread(emulator_settings(tmp_path_factory.mktemp("emulator"))) as running:
        yield running


def jobs(endpoint: str) -> list[dict]:
    body = requests.get(f"{endpoint}/v1/projects/e2e-project/locations/us-central1/tuningJobs", timeout=30).json()
    return body.get("tuningJobs", [])


def buckets(endpoint: str) -> list[dict]:
    return requests.get(f"{endpoint}/storage/v1/b?project=e2e-project", timeout=30).json().get("items", [])


def stack(tmp_path: Path, served: RunningEmulator, **config) -> PulumiProject:
    return make_project(tmp_path, served.url, stack=STACK, **config)


def preview(project: PulumiProject, policy_config: dict | Path | None = None) -> Preview:
    """`pulumi preview --policy-pack <REPO>/policy [--policy-pack-config FILE]`; a dict is written to a file."""
    args = ["preview", "--policy-pack", str(POLICY_PACK)]
    if isinstance(policy_config, dict):
        path = project.dir / "policy-config.json"
        path.write_text(json.dumps(policy_config))
        policy_config = path
    if policy_config is not None:
        args += ["--policy-pack-config", str(policy_config)]
    result = project.run(*args, check=False)
    lines = result.stdout.splitlines()
    violations = {(match["level"], match["policy"], lines[index + 2].strip())
                  for index, line in enumerate(lines) if (match := _VIOLATION.match(line))}
    return Preview(result.returncode, result.stdout, violations)


def passed(result: Preview) -> bool:
    return result.code == 0 and not result.violations


@pytest.mark.parametrize("environment", ["local", "dev", "prod"])
def test_the_compliant_local_configuration_passes_each_committed_config(environment, tmp_path, served):
    result = preview(stack(tmp_path, served), CONFIGS / f"{environment}.json")
    assert passed(result), result.stdout
    assert "✅ translation-tuning@v" in result.stdout


def test_labels_name_the_team_and_a_known_environment(tmp_path, served):
    result = preview(stack(tmp_path, served, labels={"env": "staging"}))
    assert result.code != 0
    assert result.violations == {
        ("mandatory", "tuning-job-required-labels",
         f"{JOB}: labels {{'env': 'staging'}} lack team; every tuning job names its owning team and its environment "
         "(set translation-tuning:labels)"),
        ("mandatory", "tuning-job-required-labels",
         f"{JOB}: label env 'staging' is not one of the environments local, dev, prod (policy config "
         "allowedEnvironments)"),
        # A staging job is not a local one either.
        ("mandatory", "tuning-job-emulator-local-only",
         f"{JOB}: stack config translation-tuning:emulatorEndpoint is '{served.url}' but label env is 'staging'; "
         "only env local may run against the emulator (unset translation-tuning:emulatorEndpoint to tune on "
         "Vertex AI)"),
    }


def test_only_a_local_job_may_use_the_emulator_and_a_preview_creates_nothing(tmp_path, served):
    result = preview(stack(tmp_path, served, labels={"env": "dev", "team": "e2e"}))
    assert result.code != 0
    assert result.violations == {
        ("mandatory", "tuning-job-emulator-local-only",
         f"{JOB}: stack config translation-tuning:emulatorEndpoint is '{served.url}' but label env is 'dev'; "
         "only env local may run against the emulator (unset translation-tuning:emulatorEndpoint to tune on "
         "Vertex AI)"),
    }
    assert jobs(served.url) == [] and buckets(served.url) == []


def test_a_prod_job_is_protected_abandoned_and_kept_on_destroy_and_not_waited_for(tmp_path, served):
    project = stack(tmp_path, served, labels={"env": "prod", "team": "e2e"}, protectJob=False, onDelete="cancel",
                    waitForCompletion=True)
    result = preview(project)
    assert result.code != 0
    safeguards = {violation for violation in result.violations if violation[1] == "tuning-job-prod-safeguards"}
    assert safeguards == {
        ("mandatory", "tuning-job-prod-safeguards",
         f"{JOB}: protect is false; a job with env 'prod' is protected from deletion "
         "(set translation-tuning:protectJob true)"),
        ("mandatory", "tuning-job-prod-safeguards",
         f"{JOB}: onDelete is 'cancel'; a job with env 'prod' is abandoned, never cancelled, by destroy "
         "(set translation-tuning:onDelete abandon)"),
        # On the emulator the tuned model is deleted by default.
        ("mandatory", "tuning-job-prod-safeguards",
         f"{JOB}: tunedModelOnDelete is 'delete'; a job with env 'prod' keeps its tuned model and endpoint on "
         "destroy (set translation-tuning:tunedModelOnDelete keep)"),
        ("mandatory", "tuning-job-prod-safeguards",
         f"{JOB}: waitForCompletion is true; a job with env 'prod' does not block `up` for hours "
         "(set translation-tuning:waitForCompletion false)"),
    }
    # The one other violation: a prod job on the emulator.
    assert {violation[1] for violation in result.violations - safeguards} == {"tuning-job-emulator-local-only"}


def test_a_prod_job_with_its_safeguards_passes(tmp_path, served):
    project = stack(tmp_path, served, labels={"env": "prod", "team": "e2e"}, protectJob=True, onDelete="abandon",
                    tunedModelOnDelete="keep", waitForCompletion=False)
    # The pack sees the resource option `protect`; the emulator rule is what a prod job on the emulator breaks.
    result = preview(project, {"tuning-job-emulator-local-only": "disabled"})
    assert passed(result), result.stdout


def test_hyperparameters_outside_their_bounds_are_mandatory_by_default_and_advisory_locally(tmp_path, served):
    project = stack(tmp_path, served, epochCount=50, learningRateMultiplier="20")
    result = preview(project)
    assert result.code != 0
    assert result.violations == {
        ("mandatory", "tuning-job-hyperparameter-bounds",
         f"{JOB}: epochCount 50 is outside 1..20 (policy config minEpochCount, maxEpochCount)"),
        ("mandatory", "tuning-job-hyperparameter-bounds",
         f"{JOB}: learningRateMultiplier 20 is outside 0.1..10 (policy config minLearningRateMultiplier, "
         "maxLearningRateMultiplier)"),
    }

    project.set_config("translation-tuning:learningRateMultiplier", "0.05")
    project.set_config("translation-tuning:epochCount", "20")
    local = preview(project, CONFIGS / "local.json")
    assert local.code == 0, local.stdout
    assert local.violations == {
        ("advisory", "tuning-job-hyperparameter-bounds",
         f"{JOB}: learningRateMultiplier 0.05 is outside 0.1..10 (policy config minLearningRateMultiplier, "
         "maxLearningRateMultiplier)"),
    }


def test_base_model_and_regions_come_from_the_policy_config(tmp_path, served):
    # The program itself accepts translation-llm-002 in us-central1 only: narrower allow-lists reach the rules.
    result = preview(stack(tmp_path, served), {
        "tuning-job-allowed-base-model": {"allowedBaseModels": ["gemini-2.0-flash"]},
        "tuning-job-allowed-region": {"allowedRegions": ["europe-west4"]},
        "bucket-location": {"allowedRegions": ["europe-west4"]},
    })
    assert result.code != 0
    assert result.violations == {
        ("mandatory", "tuning-job-allowed-base-model",
         f"{JOB}: baseModel 'translation-llm-002' is not an allowed base model (allowed: gemini-2.0-flash; policy "
         "config allowedBaseModels)"),
        ("mandatory", "tuning-job-allowed-region",
         f"{JOB}: region 'us-central1' (stack config gcp:region) is not an allowed tuning region (allowed: "
         "europe-west4; policy config allowedRegions)"),
        ("mandatory", "bucket-location",
         f"Bucket translation-bucket (stack {STACK}): location 'US-CENTRAL1' is not an allowed tuning region "
         "(allowed: europe-west4; policy config allowedRegions)"),
    }


def test_a_validation_set_over_the_configured_limit_stops_the_preview(tmp_path, served):
    # The program refuses more than 1,024 validation examples itself: a lower limit reaches the rule.
    project = stack(tmp_path, served)
    result = preview(project, {"validation-dataset-max-examples": {"maxExamples": 50}})
    assert result.code != 0
    path = project.dir / "data" / "validation.jsonl"
    assert result.violations == {
        ("mandatory", "validation-dataset-max-examples",
         f"TuningDataset translation-validation-data (stack {STACK}): validation set '{path}' has 60 examples; "
         "at most 50 are allowed (policy config maxExamples)"),
    }


def test_a_small_training_set_warns_and_the_preview_passes(tmp_path, served):
    project = stack(tmp_path, served)
    result = preview(project, {"training-dataset-recommended-size": {"minExamples": 500}})
    assert result.code == 0, result.stdout
    path = project.dir / "data" / "train.jsonl"
    assert result.violations == {
        ("advisory", "training-dataset-recommended-size",
         f"TuningDataset translation-training-data (stack {STACK}): training set '{path}' has 230 examples; "
         "at least 500 are recommended (policy config minExamples)"),
    }


# --- rules no emulator stack reaches, and the committed configs ------------------------------------------------

def run_rules(*cases: dict) -> dict:
    """The pack's rules called in its own venv (see rule_runner.py)."""
    result = subprocess.run([str(POLICY_PACK / "venv" / "bin" / "python"), str(Path(__file__).with_name(
        "rule_runner.py"))], input=json.dumps({"cases": list(cases)}), capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


GCP_BUCKET = "gcp:storage/bucket:Bucket"


def test_rules_the_emulator_cannot_reach():
    messages = run_rules(
        {"policy": "bucket-uniform-access", "type": GCP_BUCKET, "name": "b", "props": {"location": "US-CENTRAL1"}},
        {"policy": "bucket-uniform-access", "type": GCP_BUCKET, "name": "b",
         "props": {"location": "US-CENTRAL1", "uniformBucketLevelAccess": True}},
        {"policy": "bucket-uniform-access", "type": "pulumi-python:dynamic/storage:EmulatorBucket", "name": "b",
         "props": {"location": "US-CENTRAL1"}},
        {"policy": "bucket-location", "type": GCP_BUCKET, "name": "b", "props": {"location": "EU"},
         "stackConfig": {"gcp:region": "us-central1"}},
        {"policy": "tuning-job-required-labels", "type": "pulumi-python:dynamic/vertex:TuningJob", "name": "j",
         "props": {"labels": {"env": "local", "team": "ML-Platform"}}},
        {"policy": "tuning-job-required-labels", "type": "pulumi-python:dynamic/vertex:TuningJob", "name": "j",
         "props": {"labels": {"env": "local", "team": "t" * 64}}},
    )["messages"]
    assert messages == [
        ["Bucket b (stack offline): uniformBucketLevelAccess is false; a dataset bucket grants access with IAM only "
         "(uniform bucket-level access, no object ACLs)"],
        [],
        [],  # an emulator bucket has no such setting
        ["Bucket b (stack offline): location 'EU' is not the tuning job's region 'us-central1' (stack config "
         "gcp:region); the datasets live where the job runs"],
        ["TuningJob j (stack offline): label team 'ML-Platform' breaks Google's label rules (at most 63 lowercase "
         "letters, digits, '_' or '-')"],
        [f"TuningJob j (stack offline): label team '{'t' * 64}' breaks Google's label rules (at most 63 lowercase "
         "letters, digits, '_' or '-')"],
    ]


# Enforcement per environment: what differs between the committed configs.
ENFORCEMENT = {
    "local": {"tuning-job-hyperparameter-bounds": "advisory", "training-dataset-recommended-size": "advisory"},
    "dev": {"training-dataset-recommended-size": "advisory"},
    "prod": {},
}


@pytest.mark.parametrize("environment", sorted(ENFORCEMENT))
def test_each_committed_config_sets_every_policy_with_known_keys(environment):
    policies = run_rules()["policies"]
    config = json.loads((CONFIGS / f"{environment}.json").read_text())
    assert set(config) == set(policies)
    for name, values in config.items():
        assert set(values) - {"enforcementLevel"} <= set(policies[name]["properties"]), name
    levels = {name: values["enforcementLevel"] for name, values in config.items()}
    assert levels == {name: ENFORCEMENT[environment].get(name, "mandatory") for name in policies}
