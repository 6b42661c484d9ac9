"""Locate (or build) the pinned Pulumi CLI and the environment every engine run gets.

The environment is offline by construction: file state backend in the project, no update check,
no plugin downloads, the venv's python for dynamic providers, the engine's folder first on PATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tuning.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = PROJECT_DIR / "tools" / "pulumi" / "build.sh"
# Only the local stack gets a default passphrase: its state holds nothing secret (no cloud credentials).
LOCAL_ONLY_PASSPHRASE = "local-stack-only-not-a-secret"
LOCAL_STACKS = ("local",)


def pulumi_bin_dir() -> Path:
    """The folder holding `pulumi` and `pulumi-resource-pulumi-python` (builds the CLI the first time)."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(result.returncode)
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class EngineDirs:
    """Where one project's engine keeps its state (file backend) and its PULUMI_HOME."""

    state_dir: Path
    home_dir: Path

    @classmethod
    def for_project(cls, project_dir: Path) -> "EngineDirs":
        return cls(state_dir=project_dir / ".pulumi-state", home_dir=project_dir / ".pulumi-home")


def engine_env(bin_dir: Path, dirs: EngineDirs, stack: str, *, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Environment variables for the CLI and the provider processes it starts."""
    base = dict(os.environ if base is None else base)
    env = {
        **base,
        "PULUMI_BACKEND_URL": f"file://{dirs.state_dir}",
        "PULUMI_HOME": str(dirs.home_dir),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
        "PULUMI_PYTHON_CMD": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_DIR), base.get("PYTHONPATH")])),
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), base.get("PATH", "")]),
    }
    if stack in LOCAL_STACKS:
        # Always the local passphrase: the stack file's encryptionsalt was made with it, and a passphrase
        # exported for a real stack must not break the local one.
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        env["PULUMI_CONFIG_PASSPHRASE"] = LOCAL_ONLY_PASSPHRASE
    elif not env.get("PULUMI_CONFIG_PASSPHRASE") and not env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        raise ConfigError("PULUMI_CONFIG_PASSPHRASE", f"stack {stack!r} encrypts its secrets with a passphrase: "
                                                      "set PULUMI_CONFIG_PASSPHRASE (or _FILE) in the environment")
    dirs.state_dir.mkdir(parents=True, exist_ok=True)
    dirs.home_dir.mkdir(parents=True, exist_ok=True)
    return env
