"""The stack's configuration as one typed object, read once; every key is declared in Pulumi.yaml.

Each field names its rule (`resources.config_values`); `load_settings` applies them in field order and reports the
first bad key. A plain dataclass, not a pydantic model: the program runs twice per `pulumi up`, and pydantic's
imports were most of its own start-up (docs/performance.md).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional, get_args, get_type_hints

from resources.config_values import (
    InvalidValue,
    Rule,
    boolean,
    bounded,
    checked,
    integer,
    number,
    one_of,
    string_map,
    text,
)
from resources.embedded import EMBEDDED
from tuning.errors import ConfigError
from tuning.limits import SUPPORTED_ADAPTER_SIZES, SUPPORTED_BASE_MODELS, SUPPORTED_REGIONS, BaseModelName, Region
from tuning.rules import label_violations

PROJECT_NAMESPACE = "translation-tuning"


def setting(default: Any, rule: Rule, *, key: Optional[str] = None) -> Any:
    """A StackSettings field: its default (MISSING: required; `dict`: a new empty dict), the rule its config value
    must pass, and its config key when it is not `translation-tuning:<camelCase name>`."""
    metadata = {"rule": rule, "key": key}
    if default is dict:
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


def _adapter_size_problem(value: int) -> Optional[str]:
    if value in SUPPORTED_ADAPTER_SIZES:
        return None
    return f"translation-llm-002 supports adapter size {', '.join(map(str, SUPPORTED_ADAPTER_SIZES))} only, got {value}"


def _label_problems(labels: dict[str, str]) -> Optional[str]:
    return "; ".join(problem.message + f" ({problem.field})" for problem in label_violations(labels)) or None


def _endpoint_problem(value: str) -> Optional[str]:
    if value != EMBEDDED and not value.startswith(("http://", "https://")):
        return f"expected an http(s):// URL or '{EMBEDDED}', got {value!r}"
    return None


def _zero_is_unset(rule: Rule) -> Rule:
    """`0` epochs means "unset" (the service default), as an empty value does."""
    return lambda value: None if value in (0, "0") else rule(value)


@dataclass(frozen=True, kw_only=True)
class StackSettings:
    """Every `translation-tuning:*` key (camelCase in the stack files) plus `gcp:project` and `gcp:region`.

    Build it with `load_settings` (or `read_stack_settings`), which applies the rules; the constructor does not.
    """

    training_dataset: str = setting("data/train.jsonl", text)
    """Local path of the training JSONL."""
    validation_dataset: Optional[str] = setting("data/validation.jsonl", text)
    """Local path of the validation JSONL; empty for none."""
    evaluation_dataset: Optional[str] = setting(None, text)
    """Local path of the evaluation JSONL; default the validation dataset."""
    min_chrf: float = setting(0, bounded(number, ge=0, le=100))
    """Lowest tuned chrF that passes the evaluation; 0 = no gate."""
    base_model: BaseModelName = setting("translation-llm-002", one_of(*SUPPORTED_BASE_MODELS))
    """Model to tune."""
    tuned_model_display_name: Optional[str] = setting(None, text)
    """Display name of the tuned model."""
    epoch_count: Optional[int] = setting(None, _zero_is_unset(bounded(integer, ge=1, le=100)))
    """Epochs; service default when unset."""
    learning_rate_multiplier: Optional[float] = setting(None, bounded(number, gt=0, le=100))
    """Learning-rate multiplier."""
    adapter_size: int = setting(4, checked(integer, _adapter_size_problem))
    """Adapter size; translation-llm-002: 4."""
    labels: dict[str, str] = setting(dict, checked(string_map, _label_problems))
    """Labels on the bucket and the job."""
    wait_for_completion: bool = setting(True, boolean)
    """Block `up` until the job ends (bounded)."""
    completion_timeout: int = setting(3600, bounded(integer, ge=1))
    """Seconds to wait for completion at most."""
    on_delete: Literal["cancel", "abandon"] = setting("cancel", one_of("cancel", "abandon"))
    """What destroy does to a running job."""
    protect_job: bool = setting(False, boolean)
    """Protect the job from deletion (Pulumi `protect`)."""
    tuned_model_on_delete: Optional[Literal["keep", "delete"]] = setting(None, one_of("keep", "delete"))
    """What destroy does to the tuned model and endpoint; default delete on the emulator, keep on GCP."""
    emulator_endpoint: Optional[str] = setting(None, checked(text, _endpoint_problem))
    """Emulator URL, `embedded`, or empty for real GCP."""
    bucket_name: Optional[str] = setting(None, text)
    """Dataset bucket; default `<project>-tuning-<stack>`."""
    dataset_prefix: str = setting("datasets", text)
    """Object prefix of the uploaded datasets."""
    project: str = setting(MISSING, text, key="gcp:project")
    """GCP project id."""
    region: Region = setting("us-central1", one_of(*SUPPORTED_REGIONS), key="gcp:region")
    """Tuning region."""

    @property
    def uses_emulator(self) -> bool:
        return self.emulator_endpoint is not None

    @property
    def resolved_tuned_model_on_delete(self) -> str:
        """`delete` on the emulator (nothing there is worth keeping), `keep` on GCP (a tuned model is costly
        to remake and may serve traffic), unless the stack says otherwise."""
        return self.tuned_model_on_delete or ("delete" if self.uses_emulator else "keep")

    def resolved_bucket_name(self, stack: str) -> str:
        return self.bucket_name or f"{self.project}-tuning-{stack}".lower()


_FIELDS = {spec.name: spec for spec in fields(StackSettings)}
# Pulumi.yaml declares "" as the default of the optional keys: for an Optional field, empty means None.
_EMPTY_IS_NONE = frozenset(name for name, hint in get_type_hints(StackSettings).items() if type(None) in get_args(hint))


def config_key(field_name: str) -> str:
    """The fully qualified stack config key of a StackSettings field (e.g. `translation-tuning:epochCount`)."""
    key = _FIELDS[field_name].metadata["key"]
    if key:
        return str(key)
    first, *rest = field_name.split("_")
    return f"{PROJECT_NAMESPACE}:{first}{''.join(word.capitalize() for word in rest)}"


def load_settings(raw: dict[str, Optional[str]]) -> StackSettings:
    """Build settings from raw config strings keyed by full key (`namespace:name`).

    Raises:
        ConfigError: naming the first bad key, the rule, and the allowed values where there is a set.
    """
    # Every value is parsed (JSON) before any is checked: a malformed JSON value is reported first.
    texts = {name: raw.get(config_key(name)) for name in _FIELDS}
    values = {name: _parse_value(config_key(name), text) for name, text in texts.items() if text is not None}
    settings: dict[str, Any] = {}
    for name, spec in _FIELDS.items():
        key = config_key(name)
        if name not in values:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ConfigError(key, "is required (set it with `pulumi config set " + key + " VALUE`)")
        elif values[name] == "" and name in _EMPTY_IS_NONE:
            settings[name] = None
        else:
            try:
                settings[name] = spec.metadata["rule"](values[name])
            except InvalidValue as problem:
                raise ConfigError(key, str(problem)) from None
    return StackSettings(**settings)


def _parse_value(key: str, text: str) -> Any:
    """Stack config values arrive as strings; objects, numbers and booleans as their JSON text."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped)
        except ValueError as error:
            raise ConfigError(key, f"invalid JSON value: {error}") from None
    return text


def read_stack_settings() -> StackSettings:
    """Read the current stack's config through the Pulumi runtime (only inside a Pulumi program)."""
    import pulumi

    raw: dict[str, Optional[str]] = {}
    for name in _FIELDS:
        namespace, _, simple = config_key(name).rpartition(":")
        raw[config_key(name)] = pulumi.Config(namespace).get(simple)
    return load_settings(raw)


def secret_config_fields() -> frozenset[str]:
    """The StackSettings fields whose stack config value is a secret (`pulumi config set --secret`);
    inputs built from them must stay secret in the state (only inside a Pulumi program)."""
    from pulumi.runtime.config import is_config_secret

    return frozenset(name for name in _FIELDS if is_config_secret(config_key(name)))


def dataset_path(settings_path: str, project_dir: Path) -> Path:
    path = Path(settings_path)
    return path if path.is_absolute() else project_dir / path
