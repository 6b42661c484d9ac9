"""Read a stack's settings from the committed files, without the engine: Pulumi.STACK.yaml over the defaults
Pulumi.yaml declares. For CI steps and pre-checks that run before (or without) `pulumi` (dataset summaries, the
evaluation gate); run from the project directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuning.errors import ConfigError


def stack_value(stack: str, key: str) -> tuple[str, Any]:
    """(full key, value) of the project setting `key` (e.g. `minChrf`) on `stack`: the stack file's value, else
    the default Pulumi.yaml declares, else None.

    Raises:
        ConfigError: Pulumi.yaml or the stack file is missing or not a YAML mapping.
    """
    project = read_yaml(Path("Pulumi.yaml"))
    full_key = f"{project.get('name', 'translation-tuning')}:{key}"
    declared = (project.get("config") or {}).get(key)
    default = declared.get("default") if isinstance(declared, dict) else None
    values = read_yaml(Path(f"Pulumi.{stack}.yaml")).get("config") or {}
    return full_key, values.get(full_key, default)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "not found (run from the project directory)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(str(path), "expected a mapping at the top level")
    return loaded
