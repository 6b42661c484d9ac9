"""Drive the real `pulumi` binary as a subprocess over a throwaway copy of the project, as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

ENGINE_BIN = Path(subprocess.run(["bash", str(REPO / "tools" / "pulumi" / "build.sh")], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1])
# The program's code is linked, not copied: a user project imports it from its own folder.
PROJECT_FILES = ("Pulumi.yaml", "__main__.py")
LINKED = ("venv", "resources", "tuning", "emulator")


@dataclass
class PulumiProject:
    """A copy of the project in `dir` with its own file backend and PULUMI_HOME; `run` calls plain pulumi."""

    dir: Path
    stack: str
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        return ["pulumi", *args, "--stack", self.stack, "--non-interactive"]

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """`pulumi ARGS --stack STACK --non-interactive` in the project folder; raises on failure when `check`."""
        result = subprocess.run(self.command(*args), cwd=self.dir, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def start(self, *args: str, log: Path) -> subprocess.Popen:
        """Start `pulumi ARGS` (as `run` does) without waiting; stdout and stderr go to the file `log`."""
        with log.open("wb") as out:
            return subprocess.Popen(self.command(*args), cwd=self.dir, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT)

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "output", "--json").stdout)

    def planned(self, *args: str) -> dict[str, int]:
        """The change counts `pulumi preview --json ARGS` plans (e.g. {"create": 7})."""
        return json.loads(self.run("preview", "--json", *args).stdout)["changeSummary"]

    def last_changes(self) -> dict[str, int]:
        """The change counts of the stack's latest update (up, refresh or destroy), from its history."""
        return json.loads(self.run("stack", "history", "--json").stdout)[0]["resourceChanges"]

    def set_config(self, key: str, value: str) -> None:
        self.run("config", "set", key, value)


def engine_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The offline environment `tools/pulumi/activate` sets, with state and PULUMI_HOME under tmp_path."""
    state, home = tmp_path / "state", tmp_path / "home"
    state.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PULUMI_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update({
        "PATH": os.pathsep.join([str(ENGINE_BIN), str(REPO / "venv" / "bin"), os.environ.get("PATH", "")]),
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_HOME": str(home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_CONFIG_PASSPHRASE": "e2e-test-passphrase",
    })
    env.update(extra)
    return env


def copy_project(destination: Path) -> Path:
    """The project as a user has it: Pulumi.yaml, the program, the sample data; code and venv linked."""
    (destination / "data").mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copy(REPO / name, destination / name)
    for name in ("train.jsonl", "validation.jsonl"):
        shutil.copy(REPO / "data" / name, destination / "data" / name)
    for name in LINKED:
        (destination / name).symlink_to(REPO / name)
    return destination


def make_project(tmp_path: Path, endpoint: str, stack: str = "e2e", **config: Any) -> PulumiProject:
    """A project copy with a new stack `stack` pointing at the emulator at `endpoint`."""
    directory = copy_project(tmp_path / "project")
    values = {"gcp:project": "e2e-project", "gcp:region": "us-central1",
              "translation-tuning:emulatorEndpoint": endpoint, "translation-tuning:completionTimeout": 300,
              "translation-tuning:labels": {"env": "local", "team": "e2e"}}
    values.update({f"translation-tuning:{key}": value for key, value in config.items()})
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": values}))
    project = PulumiProject(directory, stack, engine_env(tmp_path))
    subprocess.run(["pulumi", "stack", "init", stack, "--non-interactive"], cwd=directory, env=project.env,
                   check=True, capture_output=True)
    return project
