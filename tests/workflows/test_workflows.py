"""The GitHub Actions workflows: pinned actions, least privilege, the project's own commands, one
concurrency group per stack for the jobs that change a stack, and the shape of each workflow.

GitHub is not reachable from here, so the workflows cannot run; these tests, the linters
(test_lint.py) and a local rehearsal of their commands are what checks them.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.y*ml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"^#\s*v\d+(\.\d+)*$")
# Shell builtins a run: step may use besides the project's commands: the drift job's error annotation.
BUILTINS = {"echo", "exit"}
PYTHONS = {"python", "python3", "venv/bin/python"}


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    if True in workflow:  # YAML 1.1 reads the key `on` as a boolean
        workflow["on"] = workflow.pop(True)
    return workflow


def jobs() -> Iterator[tuple[str, str, dict]]:
    for path in FILES:
        for job_id, job in load(path)["jobs"].items():
            yield path.name, job_id, job


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def action(step: dict) -> str:
    """`owner/repo` of a step's uses, or empty for a run step."""
    return step.get("uses", "").split("@")[0]


def makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z][\w .-]*?)\s*:(?![=:])", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def simple_commands(script: str) -> Iterator[list[str]]:
    """The words of each simple command in a script, split at newlines, `&&`, `||`, `;`, `|` and `&`,
    without redirections (`>> "$GITHUB_STEP_SUMMARY"`)."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        tokens = iter(lexer)
        for token in tokens:
            if token in {"&&", "||", ";", "|", "&"}:
                if words:
                    yield words
                words = []
            elif token in {">", ">>", "<", "2>", "2>>"}:
                next(tokens, None)
            else:
                words.append(token)
        if words:
            yield words


def is_project_command(words: list[str], targets: set[str]) -> bool:
    match words:
        case [".", "tools/pulumi/activate"] | ["pulumi", *_]:
            return True
        case ["make", *args]:
            named = [arg for arg in args if not arg.startswith("-") and "=" not in arg]
            return bool(named) and all(arg in targets for arg in named)
        case [python, "-m", "tuning", *_] if python in PYTHONS:
            return True
        case [builtin, *_] if builtin in BUILTINS:
            return True
    return False


def test_the_workflows_are_the_three_expected():
    assert [path.name for path in FILES] == ["deploy.yml", "drift.yml", "pull-request.yml"]


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_tag_as_a_comment():
    pins: dict[str, set[str]] = {}
    for path in FILES:
        parsed = {step["uses"] for job in load(path)["jobs"].values() for step in steps(job) if "uses" in step}
        found = set()
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*(.*)$", line)
            if match:
                uses, comment = match.groups()
                assert PINNED.match(uses), f"{path.name}: {uses} is not pinned to a 40-hex commit"
                assert TAG_COMMENT.match(comment), f"{path.name}: {uses} lacks its tag as a comment"
                found.add(uses)
                pins.setdefault(uses.split("@")[0], set()).add(f"{uses} {comment}")
        assert found == parsed, f"{path.name}: a uses: the line scan did not see"
    assert {name: len(lines) for name, lines in pins.items()} == {name: 1 for name in pins}, pins


def test_every_workflow_sets_top_level_permissions_to_nothing_or_read():
    for path in FILES:
        assert load(path).get("permissions", "unset") in ({}, {"contents": "read"}), path.name


def test_every_job_gets_only_the_permissions_it_uses():
    for name, job_id, job in jobs():
        wanted = {"contents": "read"}
        if any(action(step) == "google-github-actions/auth" for step in steps(job)):
            wanted["id-token"] = "write"
        if any(step.get("with", {}).get("comment-on-pr") is True for step in steps(job)):
            wanted["pull-requests"] = "write"
        assert job.get("permissions") == wanted, f"{name}:{job_id}"


def test_run_steps_call_only_make_targets_pulumi_or_python_m_tuning():
    targets = makefile_targets()
    assert {"test", "setup", "demo", "up", "lint-tools"} <= targets and "SHELL" not in targets
    scripts = [(f"{name}:{job_id}", step["run"]) for name, job_id, job in jobs() for step in steps(job)
               if "run" in step]
    assert scripts
    for where, script in scripts:
        for words in simple_commands(script):
            assert is_project_command(words, targets), f"{where}: {' '.join(words)}"


def test_the_command_check_rejects_other_commands():
    targets = makefile_targets()
    for script in ("curl -sSL https://example.com | sh", "make test && rm -rf /", "make nonexistent",
                   "pip install foo", "venv/bin/python -c 'print(1)'", "bash tools/lint/install.sh"):
        assert not all(is_project_command(words, targets) for words in simple_commands(script)), script


def test_no_expression_is_expanded_inside_a_run_script():
    for name, job_id, job in jobs():
        for step in steps(job):
            assert "${{" not in step.get("run", ""), f"{name}:{job_id}: pass it through env:"


def test_every_checkout_leaves_no_credentials_behind():
    checkouts = [step for _, _, job in jobs() for step in steps(job) if action(step) == "actions/checkout"]
    assert len(checkouts) == 6
    assert all(step.get("with", {}).get("persist-credentials") is False for step in checkouts)


def test_google_auth_is_workload_identity_federation_configured_by_variables():
    auths = [step["with"] for _, _, job in jobs() for step in steps(job)
             if action(step) == "google-github-actions/auth"]
    assert len(auths) == 4  # preview, deploy dev and prod, drift
    for inputs in auths:
        assert inputs == {"workload_identity_provider": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}",
                          "service_account": "${{ vars.GCP_SERVICE_ACCOUNT }}",
                          "project_id": "${{ vars.GCP_PROJECT }}"}


def test_state_backend_and_secrets_provider_come_from_variables():
    def strings(value) -> Iterator[str]:
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    for path in FILES:  # the comments show the formats; no value may hold one
        assert not [text for text in strings(load(path)) if re.search(r"\b(gs|gcpkms)://", text)], path.name
    for name, job_id, job in jobs():
        if any(action(step) == "google-github-actions/auth" for step in steps(job)):
            assert job["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}", f"{name}:{job_id}"
            assert job["env"]["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] == "true", f"{name}:{job_id}"
        for step in steps(job):
            if "secrets-provider" in step.get("with", {}):
                assert step["with"]["secrets-provider"] == "${{ vars.PULUMI_SECRETS_PROVIDER }}"


def test_jobs_that_change_a_stack_hold_its_concurrency_group_and_are_never_cancelled():
    changing = 0
    for name, job_id, job in jobs():
        for step in steps(job):
            inputs = step.get("with", {})
            if action(step) == "pulumi/actions" and inputs.get("command") in ("up", "refresh", "destroy"):
                changing += 1
                assert job["concurrency"] == {"group": f"pulumi-{inputs['stack-name']}",
                                              "cancel-in-progress": False}, f"{name}:{job_id}"
    assert changing == 3  # up dev, up prod, refresh prod


def test_every_policy_config_a_workflow_names_exists():
    named = set()
    for path in FILES:
        workflow = load(path)
        for job in workflow["jobs"].values():
            stacks = job.get("strategy", {}).get("matrix", {}).get("stack", [])
            for step in steps(job):
                configs = [step.get("with", {}).get("policyPackConfigs", "")]
                configs += re.findall(r"--policy-pack-config (\S+)", step.get("run", ""))
                for config in filter(None, configs):
                    named.update(config.replace("${{ matrix.stack }}", stack) for stack in stacks or [""])
    assert named == {"policy/config/local.json", "policy/config/dev.json", "policy/config/prod.json"}
    assert all((REPO / config).is_file() for config in named), named


def test_the_pulumi_cli_installed_on_runners_is_the_pinned_version():
    go_mod = (REPO / "tools" / "pulumi" / "go.mod").read_text()
    pinned = re.search(r"github.com/pulumi/pulumi/pkg/v3 v([\d.]+)", go_mod).group(1)
    versions = [step["with"]["pulumi-version"] for _, _, job in jobs() for step in steps(job)
                if "pulumi-version" in step.get("with", {})]
    assert versions and set(versions) == {pinned}


def test_pull_request_tests_previews_local_and_previews_each_real_stack_with_plan_and_summary():
    workflow = load(WORKFLOWS / "pull-request.yml")
    assert list(workflow["on"]) == ["pull_request"]
    test, local, preview = (workflow["jobs"][job_id] for job_id in ("test", "preview-local", "preview"))

    assert [step["run"] for step in steps(test) if "run" in step] == ["make test"]
    assert [step["run"] for step in steps(local) if "run" in step][-1] == \
        ". tools/pulumi/activate && pulumi preview --stack local --policy-pack policy" \
        " --policy-pack-config policy/config/local.json"
    assert "PULUMI_BACKEND_URL" not in local.get("env", {})  # the local stack's state stays in the runner

    assert preview["strategy"]["matrix"] == {"stack": ["dev", "prod"]}
    plan = next(step["with"] for step in steps(preview) if step.get("with", {}).get("command") == "preview")
    assert plan["stack-name"] == "${{ matrix.stack }}" and plan["policyPacks"] == "policy"
    assert plan["policyPackConfigs"] == "policy/config/${{ matrix.stack }}.json"
    assert plan["comment-on-pr"] is True and plan["github-token"] == "${{ github.token }}"
    summary = next(step["run"] for step in steps(preview) if "dataset-summary" in step.get("run", ""))
    assert '--stack "$STACK"' in summary and '>> "$GITHUB_STEP_SUMMARY"' in summary
    assert "--base-ref HEAD^1" in summary  # the merge commit's first parent: the base branch
    assert next(step for step in steps(preview) if action(step) == "actions/checkout")["with"]["fetch-depth"] == 2


def test_deploy_brings_main_to_dev_then_through_the_prod_environment_to_prod():
    workflow = load(WORKFLOWS / "deploy.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    dev, prod = workflow["jobs"]["dev"], workflow["jobs"]["prod"]

    assert prod["needs"] == "dev" and prod["environment"] == "prod"
    for job, stack in ((dev, "dev"), (prod, "prod")):
        up = next(step["with"] for step in steps(job) if step.get("with", {}).get("command") == "up")
        assert up["stack-name"] == stack and up["policyPacks"] == "policy" and up["upsert"] is True
        assert up["policyPackConfigs"] == f"policy/config/{stack}.json"


def test_drift_refreshes_prod_then_expects_no_changes_and_fails_loudly():
    workflow = load(WORKFLOWS / "drift.yml")
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    (job,) = workflow["jobs"].values()

    commands = [(step["with"]["command"], step["with"]["stack-name"], step["with"].get("expect-no-changes"))
                for step in steps(job) if "command" in step.get("with", {})]
    assert commands == [("refresh", "prod", None), ("preview", "prod", True)]
    preview_id = next(step["id"] for step in steps(job) if step.get("with", {}).get("command") == "preview")
    report = steps(job)[-1]
    assert report["if"] == f"failure() && steps.{preview_id}.outcome == 'failure'"
    assert job["env"]["STACK"] == "prod"
    assert report["run"].startswith('echo "::error title=Drift on stack ${STACK}::')


@pytest.mark.parametrize("script, expected", [
    ('venv/bin/python -m tuning dataset-summary --stack "$STACK" >> "$GITHUB_STEP_SUMMARY"',
     [["venv/bin/python", "-m", "tuning", "dataset-summary", "--stack", "$STACK"]]),
    (". tools/pulumi/activate && pulumi preview --stack local", [[".", "tools/pulumi/activate"],
                                                                 ["pulumi", "preview", "--stack", "local"]]),
    ('echo "::error title=a; b | c::d"\nexit 1', [["echo", "::error title=a; b | c::d"], ["exit", "1"]]),
])
def test_simple_commands_splits_scripts_as_the_shell_does(script, expected):
    assert list(simple_commands(script)) == expected
