"""Which Python runs a program or a policy pack: the virtualenv named in its options, as the Go host does."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

SUPPORTED_TOOLCHAINS = ("pip", "uv")


class InterpreterError(Exception):
    """The options name an interpreter that does not exist or a toolchain this host does not support."""


@dataclass(frozen=True)
class Interpreter:
    """A Python executable and, when it lives in a virtualenv, that virtualenv."""

    python: str
    virtualenv: Optional[Path] = None

    @classmethod
    def for_options(cls, options: Mapping[str, Any], root: str, environ: Mapping[str, str]) -> "Interpreter":
        """The interpreter for runtime `options` (Pulumi.yaml's `runtime.options`) of a project rooted at `root`.

        Raises:
            InterpreterError: naming the option and how to fix it.
        """
        venv = virtualenv_dir(options, root)
        if venv is None:
            return cls(python=python_on_path(environ))
        python = venv / "bin" / "python"
        if not python.exists():
            raise InterpreterError(
                f"The 'virtualenv' option in Pulumi.yaml is set to {str(options.get('virtualenv') or '.venv')!r}, "
                f"but {venv} "
                f"{'is not a virtual environment' if venv.is_dir() else 'does not exist'}. Create it with: "
                f"python3 -m venv {venv} && {python} -m pip install -r {Path(root) / 'requirements.txt'}")
        return cls(python=str(python), virtualenv=venv)

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with the virtualenv activated (PATH, VIRTUAL_ENV, no PYTHONHOME) and unbuffered output."""
        env = dict(base)
        # Unbuffered, so a program's prints and a pack's port reach the engine as they happen.
        env["PYTHONUNBUFFERED"] = "1"
        if self.virtualenv is not None:
            env["VIRTUAL_ENV"] = str(self.virtualenv)
            env["PATH"] = os.pathsep.join(filter(None, [str(self.virtualenv / "bin"), env.get("PATH")]))
            env.pop("PYTHONHOME", None)
        return env

    def version(self) -> str:
        """The interpreter's version, e.g. "3.11.9"; empty when it cannot be run."""
        try:
            result = subprocess.run([self.python, "-c", "import platform; print(platform.python_version())"],
                                    capture_output=True, text=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return ""
        return result.stdout.strip()


def virtualenv_dir(options: Mapping[str, Any], root: str) -> Optional[Path]:
    """The virtualenv folder runtime `options` name (relative to `root`; uv's default `.venv`), or None.

    Raises:
        InterpreterError: the options name a toolchain this host does not support.
    """
    toolchain = str(options.get("toolchain") or "pip")
    if toolchain not in SUPPORTED_TOOLCHAINS:
        raise InterpreterError(f"runtime option toolchain: {toolchain!r} is not supported by this language "
                               f"host (supported: {', '.join(SUPPORTED_TOOLCHAINS)})")
    virtualenv = options.get("virtualenv") or (".venv" if toolchain == "uv" else None)
    if not virtualenv:
        return None
    venv = Path(str(virtualenv))
    return venv if venv.is_absolute() else Path(root) / venv


def python_on_path(environ: Mapping[str, str]) -> str:
    """PULUMI_PYTHON_CMD, else python3, else python: the Go host's order without a virtualenv."""
    if environ.get("PULUMI_PYTHON_CMD"):
        return environ["PULUMI_PYTHON_CMD"]
    for name in ("python3", "python"):
        found = shutil.which(name, path=environ.get("PATH"))
        if found:
            return found
    raise InterpreterError("no Python found: set runtime.options.virtualenv in Pulumi.yaml, or PULUMI_PYTHON_CMD, "
                           "or put python3 on PATH")
