"""The stack's configuration as one typed model, read once; every key is declared in Pulumi.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from resources.embedded import EMBEDDED
from tuning.errors import ConfigError
from tuning.limits import SUPPORTED_ADAPTER_SIZES, BaseModelName, Region
from tuning.rules import label_violations

PROJECT_NAMESPACE = "translation-tuning"


class StackSettings(BaseModel):
    """Every `translation-tuning:*` key (camelCase in the stack files) plus `gcp:project` and `gcp:region`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    training_dataset: str = Field("data/train.jsonl", description="Local path of the training JSONL.")
    validation_dataset: Optional[str] = Field("data/validation.jsonl",
                                              description="Local path of the validation JSONL; empty for none.")
    evaluation_dataset: Optional[str] = Field(None, description="Local path of the evaluation JSONL; default the "
                                                                 "validation dataset.")
    min_chrf: float = Field(0, ge=0, le=100, description="Lowest tuned chrF that passes the evaluation; 0 = no gate.")
    base_model: BaseModelName = Field("translation-llm-002", description="Model to tune.")
    tuned_model_display_name: Optional[str] = Field(None, description="Display name of the tuned model.")
    epoch_count: Optional[int] = Field(None, ge=1, le=100, description="Epochs; service default when unset.")
    learning_rate_multiplier: Optional[float] = Field(None, gt=0, le=100, description="Learning-rate multiplier.")
    adapter_size: int = Field(4, description="Adapter size; translation-llm-002: 4.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels on the bucket and the job.")
    wait_for_completion: bool = Field(True, description="Block `up` until the job ends (bounded).")
    completion_timeout: int = Field(3600, ge=1, description="Seconds to wait for completion at most.")
    on_delete: Literal["cancel", "abandon"] = Field("cancel", description="What destroy does to a running job.")
    protect_job: bool = Field(False, description="Protect the job from deletion (Pulumi `protect`).")
    tuned_model_on_delete: Optional[Literal["keep", "delete"]] = Field(
        None, description="What destroy does to the tuned model and endpoint; default delete on the emulator, "
                          "keep on GCP.")
    emulator_endpoint: Optional[str] = Field(None, description="Emulator URL, `embedded`, or empty for real GCP.")
    bucket_name: Optional[str] = Field(None, description="Dataset bucket; default `<project>-tuning-<stack>`.")
    dataset_prefix: str = Field("datasets", description="Object prefix of the uploaded datasets.")
    project: str = Field(..., alias="gcp:project", description="GCP project id.")
    region: Region = Field("us-central1", alias="gcp:region", description="Tuning region.")

    @field_validator("epoch_count", mode="before")
    @classmethod
    def _zero_epochs_is_unset(cls, value: Any) -> Any:
        return None if value in (0, "0") else value

    @field_validator("adapter_size")
    @classmethod
    def _adapter_size_supported(cls, value: int) -> int:
        if value not in SUPPORTED_ADAPTER_SIZES:
            raise ValueError(f"translation-llm-002 supports adapter size {', '.join(map(str, SUPPORTED_ADAPTER_SIZES))} "
                             f"only, got {value}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels_follow_google_rules(cls, labels: dict[str, str]) -> dict[str, str]:
        problems = label_violations(labels)
        if problems:
            raise ValueError("; ".join(problem.message + f" ({problem.field})" for problem in problems))
        return labels

    @field_validator("emulator_endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: Optional[str]) -> Optional[str]:
        if value and value != EMBEDDED and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s):// URL or '{EMBEDDED}', got {value!r}")
        return value or None

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


def config_key(field_name: str) -> str:
    """The fully qualified stack config key of a StackSettings field (e.g. `translation-tuning:epochCount`)."""
    alias = StackSettings.model_fields[field_name].alias or to_camel(field_name)
    return alias if ":" in alias else f"{PROJECT_NAMESPACE}:{alias}"


def load_settings(raw: dict[str, Optional[str]]) -> StackSettings:
    """Build settings from raw config strings keyed by full key (`namespace:name`).

    Raises:
        ConfigError: naming the first bad key, the rule, and the allowed values where there is a set.
    """
    values: dict[str, Any] = {}
    for name, field in StackSettings.model_fields.items():
        key = config_key(name)
        text = raw.get(key)
        if text is None:
            continue
        if text == "" and not field.is_required() and _accepts_none(field):
            # Pulumi.yaml declares "" as the default of optional keys: empty means "none".
            values[field.alias or name] = None
            continue
        values[field.alias or name] = _parse_value(key, text)
    try:
        return StackSettings.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        alias = str(first["loc"][0]) if first["loc"] else "?"
        key = alias if ":" in alias else f"{PROJECT_NAMESPACE}:{alias}"
        message = first["msg"]
        if first["type"] == "missing":
            message = "is required (set it with `pulumi config set " + key + " VALUE`)"
        raise ConfigError(key, message) from None


def _accepts_none(field: Any) -> bool:
    return type(None) in getattr(field.annotation, "__args__", ())


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
    for name in StackSettings.model_fields:
        namespace, _, simple = config_key(name).rpartition(":")
        raw[config_key(name)] = pulumi.Config(namespace).get(simple)
    return load_settings(raw)


def secret_config_fields() -> frozenset[str]:
    """The StackSettings fields whose stack config value is a secret (`pulumi config set --secret`);
    inputs built from them must stay secret in the state (only inside a Pulumi program)."""
    from pulumi.runtime.config import is_config_secret

    return frozenset(name for name in StackSettings.model_fields if is_config_secret(config_key(name)))


def dataset_path(settings_path: str, project_dir: Path) -> Path:
    path = Path(settings_path)
    return path if path.is_absolute() else project_dir / path
