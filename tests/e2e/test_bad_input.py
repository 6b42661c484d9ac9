"""Bad input, end to end: every malformed dataset and stack config in tests/data/bad/ stops plain `pulumi preview`
before anything exists, with one message naming FILE:LINE (datasets) or the config key (configs) and the rule.

One emulator and one project (one stack) serve the whole module: each case only rewrites the stack file, so a
case costs one preview. Datasets are referenced in place by absolute path (the stack takes absolute paths), so
`pulumi preview` and `python -m tuning validate` name the very same file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from emulator.server import serve_in_thread
from tests.conftest import REPO, emulator_settings
from tests.e2e.cli import PulumiProject, make_project

BAD = REPO / "tests" / "data" / "bad"
DATASETS = yaml.safe_load((BAD / "datasets.yaml").read_text(encoding="utf-8"))
CONFIGS = yaml.safe_load((BAD / "configs.yaml").read_text(encoding="utf-8"))
REJECTED: list[dict[str, Any]] = DATASETS["rejected"]
ACCEPTED: list[dict[str, Any]] = DATASETS["accepted"]
CONFIG_KEY = {"training": "translation-tuning:trainingDataset", "validation": "translation-tuning:validationDataset"}

GOOD_LINE = ('{"contents":[{"role":"user","parts":[{"text":"English: Good night. Spanish:"}]},'
             '{"role":"model","parts":[{"text":"Buenas noches."}]}]}\n')


def case_id(case: dict[str, Any]) -> str:
    return Path(case.get("file") or case["generate"]).stem


def config_id(case: dict[str, Any]) -> str:
    value = "unset" if case["value"] is None else json.dumps(case["value"])
    return f"{case['key'].split(':')[1]}={value[:24]}"


# -- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serve_in_thread(emulator_settings(tmp_path_factory.mktemp("bad-input-emulator"))) as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory, served) -> "Stack":
    return Stack(make_project(tmp_path_factory.mktemp("bad-input"), served.url))


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The cases too big to commit: 1,025 validation examples, and a line over the 1 MiB line limit."""
    folder = tmp_path_factory.mktemp("generated")
    (folder / "too-many-validation-examples.jsonl").write_text(GOOD_LINE * 1025, encoding="utf-8")
    long_text = "a" * (1024**2 + 100_000)
    (folder / "overlong-line.jsonl").write_text(
        GOOD_LINE + '{"contents":[{"role":"user","parts":[{"text":"' + long_text + '"}]}]}\n', encoding="utf-8")
    return folder


class Stack:
    """The module's one stack; `preview(config)` rewrites its stack file from the base config first."""

    def __init__(self, project: PulumiProject) -> None:
        self.project = project
        self.file = project.dir / f"Pulumi.{project.stack}.yaml"
        self.base: dict[str, Any] = yaml.safe_load(self.file.read_text())["config"]

    def preview(self, changes: dict[str, Any]) -> subprocess.CompletedProcess:
        config = dict(self.base)
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        self.file.write_text(yaml.safe_dump({"config": config}, allow_unicode=True))
        return self.project.run("preview", check=False, timeout=300)


def dataset_path(case: dict[str, Any], generated: Path) -> Path:
    return BAD / case["file"] if "file" in case else generated / f"{case['generate']}.jsonl"


def error_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("error:")]


def assert_nothing_created(served) -> None:
    """No bucket, no object, no tuning job: the emulator is as the module found it."""
    buckets = requests.get(f"{served.url}/storage/v1/b?project=e2e-project", timeout=30).json().get("items", [])
    jobs = requests.get(f"{served.url}/v1/projects/e2e-project/locations/us-central1/tuningJobs",
                        timeout=30).json().get("tuningJobs", [])
    assert buckets == [] and jobs == []
    blobs = served.state.store.root / "blobs"
    assert [path for path in blobs.rglob("*") if path.is_file()] == []


def validate_cli(path: Path, kind: str) -> subprocess.CompletedProcess:
    args = ["--validation", str(path)] if kind == "validation" else [str(path)]
    return subprocess.run([sys.executable, "-m", "tuning", "validate", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


# -- datasets -----------------------------------------------------------------------------------------------


def test_the_corpus_is_complete():
    assert len(REJECTED) >= 30 and len(CONFIGS) >= 10
    files = {path.name for path in (BAD / "datasets").iterdir()}
    assert files == {Path(case["file"]).name for case in REJECTED if "file" in case}, "manifest and files differ"


@pytest.mark.parametrize("case", REJECTED, ids=case_id)
def test_validate_names_the_file_line_and_rule(case, generated):
    path = dataset_path(case, generated)
    result = validate_cli(path, case["kind"])
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{path}:{case['line']}: "), first
    assert case["problem"] in first
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("case", REJECTED, ids=case_id)
def test_preview_stops_naming_the_file_line_and_rule(case, generated, stack, served):
    path = dataset_path(case, generated)
    result = stack.preview({CONFIG_KEY[case["kind"]]: str(path)})

    assert result.returncode != 0
    # One error, the dataset's: its first problem on the `error:` line, the others (if any) below it.
    errors = error_lines(result.stdout + result.stderr)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: {path}:{case['line']}: "), errors[0]
    assert case["problem"] in errors[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert_nothing_created(served)


@pytest.mark.parametrize("case", ACCEPTED, ids=case_id)
def test_validate_accepts_the_near_misses(case):
    """They look malformed but follow the documented rules."""
    result = validate_cli(BAD / case["file"], case["kind"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


# Two near misses per preview (one as the training set, one as the validation set): half the previews.
ACCEPTED_PAIRS = [ACCEPTED[index:index + 2] for index in range(0, len(ACCEPTED), 2)]


@pytest.mark.parametrize("pair", ACCEPTED_PAIRS, ids=lambda pair: "+".join(case_id(case) for case in pair))
def test_preview_plans_the_stack_with_the_near_misses(pair, stack, served):
    # strict=False: with an odd number of near misses the last pair holds one case, used as the training set only.
    changes = {CONFIG_KEY[kind]: str(BAD / case["file"])
               for kind, case in zip(("training", "validation"), pair, strict=False)}
    preview = stack.preview(changes)
    assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]
    assert "7 to create" in preview.stdout
    assert_nothing_created(served)


# -- configs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONFIGS, ids=config_id)
def test_a_bad_config_value_stops_preview_naming_the_key(case, stack, served):
    result = stack.preview({case["key"]: case["value"]})
    output = result.stdout + result.stderr

    assert result.returncode != 0
    assert case["message"] in output
    assert "Traceback" not in output
    errors = error_lines(output)
    if case["stage"] == "program":
        # The settings model's one line (or, for a dataset path, the validator's), and nothing else.
        assert len(errors) == 1 and errors[0].startswith("error: ") and case["message"] in errors[0], errors
        if ":0: " not in case["message"]:
            assert errors[0].startswith(f"error: {case['key']}: "), errors
    elif case["stage"] == "engine":
        # Pulumi.yaml declares the key's type: the engine refuses before any program runs.
        assert errors == [f"error: validating stack config: Stack '{stack.project.stack}' with {case['message']}"]
    else:
        # Caught by the TuningJob's check; the engine then adds "Resource monitor has terminated".
        assert case["message"] in errors[0] or case["message"] in errors[-1], errors
    assert_nothing_created(served)


def test_after_all_the_cases_the_stack_holds_nothing(stack, served):
    """Runs after every preview case (pytest keeps file order): none left anything in the state or the emulator."""
    exported = json.loads(stack.project.run("stack", "export").stdout)
    assert exported["deployment"].get("resources") in (None, [])
    assert_nothing_created(served)


def test_the_request_rules_anchor_at_the_very_end():
    """`$` also matches before a trailing newline; the rules use `\\Z`, so "team\\n" is no label value."""
    from tuning.rules import label_violations, parse_gs_uri

    assert [v.field for v in label_violations({"env": "local\n", "team\n": "ml", "÷x": "ml"})] == [
        "labels.env", "labels.team\n", "labels.÷x"]
    assert label_violations({"env": "local", "équipe": "ml"}) == []
    with pytest.raises(ValueError):
        parse_gs_uri("gs://bucket/train.jsonl\n")
    assert parse_gs_uri("gs://bucket/datasets/train.jsonl") == ("bucket", "datasets/train.jsonl")
