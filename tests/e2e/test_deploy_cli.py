"""End to end through the entry point `make demo` uses: `python -m deploy` with the embedded emulator."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import REPO


def deploy(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy", *args, "--project-dir", str(project)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_local_stack_up_outputs_destroy_with_the_embedded_emulator(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    for name in ("Pulumi.yaml", "__main__.py", "Pulumi.local.yaml", "data/train.jsonl", "data/validation.jsonl"):
        shutil.copy(REPO / name, project / name)
    try:
        up = deploy(project, "up")
        assert up.returncode == 0, up.stderr[-3000:]
        endpoint = (project / ".run" / "emulator" / "endpoint").read_text().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        assert f"emulator console: {endpoint}/" in up.stderr

        outputs = deploy(project, "outputs")
        values = json.loads(outputs.stdout)
        assert values["state"] == "JOB_STATE_SUCCEEDED" and len(values["metrics"]) == 6
        tried = deploy(project, "try", "English: Good morning. Spanish:")
        assert tried.returncode == 0 and tried.stdout.rstrip("\n"), tried.stderr[-3000:]
        assert f"({values['tunedModelEndpointName']}: " in tried.stderr

        # The committed stack file keeps `embedded`; the URL only goes into the generated copy.
        assert "emulatorEndpoint: embedded" in (project / "Pulumi.local.yaml").read_text()

        destroyed = deploy(project, "destroy")
        assert destroyed.returncode == 0, destroyed.stderr[-3000:]
        assert requests.get(f"{endpoint}/storage/v1/b?project=local-project", timeout=10).json().get("items",
                                                                                                   []) == []
        forgotten = deploy(project, "forget")
        assert forgotten.returncode == 0, forgotten.stderr[-3000:]
        assert not list((project / ".pulumi-state").rglob("local.json"))
    finally:
        stopped = deploy(project, "emulator-stop")
    assert stopped.stdout.strip() == "emulator stopped"
    assert not (project / ".run" / "emulator" / "endpoint").exists()


def test_a_bad_config_value_fails_naming_the_key(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(REPO / name, project / name)
    (project / "Pulumi.local.yaml").write_text(
        (REPO / "Pulumi.local.yaml").read_text().replace("emulatorEndpoint: embedded",
                                                         "emulatorEndpoint: embedded\n  translation-tuning:onDelete: keep"))
    try:
        result = deploy(project, "preview")
    finally:
        deploy(project, "emulator-stop")
    assert result.returncode == 1
    assert "translation-tuning:onDelete: Input should be 'cancel' or 'abandon'" in result.stdout + result.stderr


def test_a_real_stack_without_a_passphrase_says_which_variable_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "__main__.py", "Pulumi.dev.yaml"):
        shutil.copy(REPO / name, project / name)
    result = deploy(project, "preview", "--stack", "dev")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("error: PULUMI_CONFIG_PASSPHRASE: stack 'dev' encrypts its secrets with "
                                          "a passphrase: set PULUMI_CONFIG_PASSPHRASE (or _FILE) in the environment")
    assert not (project / ".pulumi-state").exists()  # stopped before the engine touched anything


def test_forget_refuses_real_stacks(tmp_path):
    result = deploy(tmp_path, "forget", "--stack", "prod")
    assert result.returncode == 2 and "only for local" in result.stderr
