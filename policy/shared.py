"""What the rules share: the type tokens they check, the stack as the pack sees it, and the wording of messages.

The pack learns the stack's name and config from the engine's ConfigureStack, which the language host's
proxy turns into the environment the policy SDK reads (`pulumi.get_stack()`, `pulumi.Config(...)`).

Every rule reads its bounds from its policy config (`--policy-pack-config policy/config/ENV.json`), with the
defaults of its `config_schema`; the engine fills those in too, the pack applies them again so that a rule
never depends on the engine doing it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Sequence, Union

import pulumi
from pulumi_policy import PolicyConfigSchema

TUNING_JOB = "pulumi-python:dynamic/vertex:TuningJob"
TUNING_DATASET = "pulumi-python:dynamic/storage:TuningDataset"
GCP_BUCKET = "gcp:storage/bucket:Bucket"
EMULATOR_BUCKET = "pulumi-python:dynamic/storage:EmulatorBucket"

PROJECT_NAMESPACE = "translation-tuning"
# The program and the provider use this region when the stack sets no gcp:region.
DEFAULT_REGION = "us-central1"
ENVIRONMENTS = ["local", "dev", "prod"]

# Google label values: at most 63 lowercase letters (international ones too), digits, `_` and `-`
# (the same rule as tuning/rules.py, which the pack cannot import: it runs in its own venv).
_LABEL_VALUE = re.compile(r"^[\w-]{0,63}\Z")


def subject(kind: str, name: str) -> str:
    """How a message names a resource: `TuningJob translation-job (stack local)`."""
    return f"{kind} {name} (stack {pulumi.get_stack()})"


def stack_config(key: str) -> Optional[str]:
    """A stack config value by its full key (`gcp:region`), or None when unset or empty."""
    namespace, _, name = key.rpartition(":")
    return pulumi.Config(namespace).get(name) or None


def tuning_region() -> str:
    """The region the stack tunes in: `gcp:region`, else the program's default."""
    return stack_config("gcp:region") or DEFAULT_REGION


def env_label(props: Mapping[str, Any]) -> Optional[str]:
    """The `env` label of a resource, or None."""
    return (props.get("labels") or {}).get("env") or None


def label_value_ok(value: Any) -> bool:
    """True when `value` follows Google's label value rules."""
    return isinstance(value, str) and bool(_LABEL_VALUE.match(value)) and value == value.lower()


def settings(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A policy's config with its defaults under it."""
    return {**defaults, **{key: value for key, value in config.items() if value is not None}}


def schema(defaults: Mapping[str, Any], **properties: dict[str, Any]) -> PolicyConfigSchema:
    """A config schema whose properties carry the defaults in `defaults` (the engine fills them in)."""
    return PolicyConfigSchema(properties={name: {**spec, "default": defaults[name]}
                                          for name, spec in properties.items()})


def string_list(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": description}


def show(value: Any) -> str:
    """A value as a message shows it: strings quoted, whole numbers without `.0` (struct numbers are floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def one_of(values: Sequence[Any]) -> str:
    return ", ".join(str(value) for value in values)


def number(value: Union[int, float]) -> str:
    return show(float(value))
