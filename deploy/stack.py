"""Run preview/up/refresh/destroy of a stack through the Automation API with the pinned engine.

The Python language host (`pulumi-language-python`) cannot be obtained offline, so the program
(`__main__.py`) runs inline in this process; the engine, the state backend and the dynamic
providers are the real ones. With an installed Pulumi CLI, plain `pulumi up` works as well.
"""

from __future__ import annotations

import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from pulumi import automation as auto

from deploy.engine import EngineDirs, engine_env, pulumi_bin_dir
from resources.settings import EMBEDDED, PROJECT_NAMESPACE

ENDPOINT_KEY = f"{PROJECT_NAMESPACE}:emulatorEndpoint"


@dataclass(frozen=True)
class StackRun:
    """One stack of a project folder, with where its engine keeps state."""

    project_dir: Path
    stack: str
    dirs: EngineDirs
    run_dir: Path

    @classmethod
    def for_project(cls, project_dir: Path, stack: str) -> "StackRun":
        return cls(project_dir, stack, EngineDirs.for_project(project_dir), project_dir / ".run")

    def stack_config(self) -> dict[str, Any]:
        path = self.project_dir / f"Pulumi.{self.stack}.yaml"
        if not path.exists():
            raise FileNotFoundError(f"stack {self.stack!r} has no stack file {path.name} in {self.project_dir}")
        return (yaml.safe_load(path.read_text()) or {}).get("config", {})

    def needs_embedded_emulator(self) -> bool:
        return self.stack_config().get(ENDPOINT_KEY) == EMBEDDED

    def config_file(self, emulator_endpoint: Optional[str]) -> Path:
        """The stack file to run with: the committed one, or a copy with the emulator's URL filled in."""
        committed = self.project_dir / f"Pulumi.{self.stack}.yaml"
        if not emulator_endpoint:
            return committed
        document = yaml.safe_load(committed.read_text()) or {}
        document.setdefault("config", {})[ENDPOINT_KEY] = emulator_endpoint
        self.run_dir.mkdir(parents=True, exist_ok=True)
        effective = self.run_dir / f"Pulumi.{self.stack}.yaml"
        effective.write_text("# generated from " + committed.name + " with the running emulator's URL\n"
                             + yaml.safe_dump(document, sort_keys=False))
        return effective

    def open(self, program: Optional[Callable[[], None]] = None) -> auto.Stack:
        bin_dir = pulumi_bin_dir()
        env = engine_env(bin_dir, self.dirs, self.stack)
        main_file = self.project_dir / "__main__.py"
        program = program or (lambda: runpy.run_path(str(main_file), run_name="__main__"))
        workspace = auto.LocalWorkspaceOptions(
            work_dir=str(self.project_dir), pulumi_home=str(self.dirs.home_dir), env_vars=env,
            pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent)))
        return auto.create_or_select_stack(stack_name=self.stack, project_name="translation-tuning",
                                           program=program, opts=workspace)
