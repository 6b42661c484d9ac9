"""End to end as a user types it: `. tools/pulumi/activate`, then plain `pulumi` on the `local` stack with
the embedded emulator, and the `make` targets built on the same commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, stop_background
from tests.e2e.cli import copy_project

# The background emulator inherits the engine's environment: train for seconds, not a minute.
FAST_TRAINING_ENV = {"TT_EMULATOR_TRAINING_D_MODEL": "16", "TT_EMULATOR_TRAINING_N_LAYERS": "1",
                     "TT_EMULATOR_TRAINING_N_HEADS": "2", "TT_EMULATOR_TRAINING_MAX_LEN": "96",
                     "TT_EMULATOR_TRAINING_STEPS": "30", "TT_EMULATOR_TRAINING_EVAL_EVERY": "10"}


def user_shell_env(**extra: str) -> dict[str, str]:
    """A user's environment: none of Pulumi's variables, the engine not on PATH."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PULUMI_", "PYTHONPATH", "VIRTUAL_ENV", "TT_"))}
    env.update(FAST_TRAINING_ENV)
    env.update(extra)
    return env


def shell(project: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=project, env=user_shell_env(**env), capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def clone(tmp_path: Path):
    """The files a clone has (engine tooling, stacks, Makefile, policy), with the venv linked."""
    project = copy_project(tmp_path / "clone")
    for name in ("Pulumi.local.yaml", "Pulumi.dev.yaml", "Makefile", "requirements.txt"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "tools", project / "tools")
    (project / "policy").symlink_to(REPO / "policy")
    yield project
    stop_background(project)


def test_activate_then_plain_pulumi_tunes_the_local_stack(clone):
    up = shell(clone, ". tools/pulumi/activate && pulumi stack select --create local && pulumi up --yes "
                      "&& pulumi preview --expect-no-changes && pulumi stack output --json")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    outputs = json.loads(up.stdout[up.stdout.rindex("\n{"):])
    assert outputs["state"] == "JOB_STATE_SUCCEEDED"
    assert len(outputs["metrics"]) == 6
    # The program started the emulator itself, and said where its console is.
    url = (clone / ".run" / "emulator" / "endpoint").read_text().strip()
    assert f"emulator console: {url}/" in up.stdout
    # State went to the project's own file backend; the committed stack file kept `embedded`.
    assert list((clone / ".pulumi-state").rglob("local.json"))
    assert "emulatorEndpoint: embedded" in (clone / "Pulumi.local.yaml").read_text()

    tried = shell(clone, 'make -s try PROMPT="English: Hello. Spanish:"')
    assert tried.returncode == 0, tried.stderr[-3000:]
    assert tried.stdout.strip()

    # A passphrase exported for a real stack does not break the local one.
    again = shell(clone, ". tools/pulumi/activate && pulumi preview --expect-no-changes",
                  PULUMI_CONFIG_PASSPHRASE="a-real-stack's-passphrase")
    assert again.returncode == 0, again.stdout[-3000:]

    destroyed = shell(clone, "make -s destroy && make -s emulator-stop")
    assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-3000:]
    assert "emulator stopped" in destroyed.stdout


def test_a_real_stack_without_a_passphrase_stops_with_a_clear_message(clone):
    result = shell(clone, ". tools/pulumi/activate && pulumi preview --stack dev")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: stack 'dev' encrypts its secrets with a passphrase: export "
                                     "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) first; only the "
                                     "local stack has a built-in one")
    assert not list((clone / ".pulumi-state").rglob("dev.json"))


def test_activate_sets_the_offline_environment_and_deactivate_restores_it(clone):
    script = (". tools/pulumi/activate && type -P pulumi python && env | grep -E '^PULUMI_' | sort "
              "&& pulumi_deactivate && echo \"after: $PATH\" && (type pulumi 2>&1 || true)")
    result = shell(clone, script, PULUMI_BACKEND_URL="gs://team-state")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("/bin/pulumi") and "translation-tuning/pulumi-v" in lines[0]
    assert lines[1] == str(clone / "venv" / "bin" / "python")
    assert "PULUMI_BACKEND_URL=gs://team-state" in lines  # an existing backend is kept
    assert f"PULUMI_HOME={clone / '.pulumi-home'}" in lines
    assert "PULUMI_SKIP_UPDATE_CHECK=true" in lines and "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true" in lines
    after = next(line for line in lines if line.startswith("after: "))
    assert after == "after: " + user_shell_env()["PATH"]
    assert "not found" in lines[-1]


def test_activate_before_the_engine_is_built_says_to_run_make_demo(clone, tmp_path):
    result = shell(clone, ". tools/pulumi/activate", XDG_CACHE_HOME=str(tmp_path / "empty-cache"),
                   PATH="/usr/bin:/bin")
    assert result.returncode == 1
    assert "the project's Pulumi engine is not built yet: run 'make demo'" in result.stderr
