"""Wire shapes of the Vertex AI tuning API: snake_case in Python, camelCase on the wire."""

from __future__ import annotations

import enum
from typing import Any, Optional

from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel, to_snake

from tuning.rules import SUPPORTED_ADAPTER_SIZES, SUPPORTED_BASE_MODELS, SUPPORTED_REGIONS  # noqa: F401 - re-exported


def _enum_member(enum_class: type, value: object, prefix: str = "") -> "enum.Enum":
    """A member of `enum_class` from a proto number (int, integral float or digit string) or a name.

    Raises:
        ValueError: anything else (pydantic turns it into a validation error, the API into a 400).
    """
    members = list(enum_class)
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a {enum_class.__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        if not 0 <= value < len(members):
            raise ValueError(f"{value} is not a {enum_class.__name__} number (0-{len(members) - 1})")
        return members[value]
    if isinstance(value, str):
        name = value.upper()
        return enum_class(name if name.startswith(prefix) else f"{prefix}{name}")
    raise ValueError(f"{value!r} is not a {enum_class.__name__}")


class JobState(str, enum.Enum):
    """google.cloud.aiplatform.v1.JobState, by name; `number` is the proto enum value."""

    JOB_STATE_UNSPECIFIED = "JOB_STATE_UNSPECIFIED"
    JOB_STATE_QUEUED = "JOB_STATE_QUEUED"
    JOB_STATE_PENDING = "JOB_STATE_PENDING"
    JOB_STATE_RUNNING = "JOB_STATE_RUNNING"
    JOB_STATE_SUCCEEDED = "JOB_STATE_SUCCEEDED"
    JOB_STATE_FAILED = "JOB_STATE_FAILED"
    JOB_STATE_CANCELLING = "JOB_STATE_CANCELLING"
    JOB_STATE_CANCELLED = "JOB_STATE_CANCELLED"
    JOB_STATE_PAUSED = "JOB_STATE_PAUSED"
    JOB_STATE_EXPIRED = "JOB_STATE_EXPIRED"
    JOB_STATE_UPDATING = "JOB_STATE_UPDATING"
    JOB_STATE_PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"

    @property
    def number(self) -> int:
        return list(JobState).index(self)

    @classmethod
    def parse(cls, value: "str | int | JobState") -> "JobState":
        """Accept a name (with or without the prefix), a proto number, or a member."""
        if isinstance(value, JobState):
            return value
        return _enum_member(cls, value, prefix="JOB_STATE_")


# Terminal states for tuning. EXPIRED counts, unlike the vertexai SDK's `has_ended` (reference §2.1).
ENDED_STATES = frozenset(
    {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED, JobState.JOB_STATE_EXPIRED}
)


class AdapterSize(str, enum.Enum):
    """SupervisedHyperParameters.AdapterSize; the proto numbers are not in size order."""

    ADAPTER_SIZE_UNSPECIFIED = "ADAPTER_SIZE_UNSPECIFIED"
    ADAPTER_SIZE_ONE = "ADAPTER_SIZE_ONE"
    ADAPTER_SIZE_FOUR = "ADAPTER_SIZE_FOUR"
    ADAPTER_SIZE_EIGHT = "ADAPTER_SIZE_EIGHT"
    ADAPTER_SIZE_SIXTEEN = "ADAPTER_SIZE_SIXTEEN"
    ADAPTER_SIZE_THIRTY_TWO = "ADAPTER_SIZE_THIRTY_TWO"
    ADAPTER_SIZE_TWO = "ADAPTER_SIZE_TWO"

    @property
    def size(self) -> Optional[int]:
        return _ADAPTER_SIZES[self]

    @classmethod
    def parse(cls, value: "str | int | AdapterSize") -> "AdapterSize":
        """Accept a name, a proto number (GAPIC REST sends ints) or a member."""
        if isinstance(value, AdapterSize):
            return value
        return _enum_member(cls, value)

    @classmethod
    def from_size(cls, size: int) -> "AdapterSize":
        for member, member_size in _ADAPTER_SIZES.items():
            if member_size == size:
                return member
        raise ValueError(f"adapter size {size} is not one of 1, 2, 4, 8, 16, 32")


_ADAPTER_SIZES = {
    AdapterSize.ADAPTER_SIZE_UNSPECIFIED: None,
    AdapterSize.ADAPTER_SIZE_ONE: 1,
    AdapterSize.ADAPTER_SIZE_FOUR: 4,
    AdapterSize.ADAPTER_SIZE_EIGHT: 8,
    AdapterSize.ADAPTER_SIZE_SIXTEEN: 16,
    AdapterSize.ADAPTER_SIZE_THIRTY_TWO: 32,
    AdapterSize.ADAPTER_SIZE_TWO: 2,
}


class WireModel(BaseModel):
    """Base: camelCase on the wire; snake_case accepted too (the documented curl bodies use both)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(
            validation_alias=lambda name: AliasChoices(to_camel(name), name),
            serialization_alias=to_camel,
        ),
        populate_by_name=True,
        extra="ignore",
    )

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict in camelCase, without unset/None fields (proto3 JSON omits defaults)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SupervisedHyperParameters(WireModel):
    epoch_count: Optional[int] = None  # int64: GAPIC REST sends it as a string; pydantic coerces
    learning_rate_multiplier: Optional[float] = None
    adapter_size: Optional[AdapterSize] = None

    @field_validator("adapter_size", mode="before")
    @classmethod
    def _parse_adapter_size(cls, value: Any) -> Any:
        return None if value is None else AdapterSize.parse(value)


class SupervisedTuningSpec(WireModel):
    training_dataset_uri: Optional[str] = None
    validation_dataset_uri: Optional[str] = None
    hyper_parameters: Optional[SupervisedHyperParameters] = None
    export_last_checkpoint_only: Optional[bool] = None


class Status(WireModel):
    """google.rpc.Status."""

    code: int = 0
    message: str = ""
    details: Optional[list[dict[str, Any]]] = None


class TunedModelCheckpoint(WireModel):
    checkpoint_id: str
    epoch: Optional[int] = None
    step: Optional[int] = None
    endpoint: Optional[str] = None


class TunedModel(WireModel):
    model: Optional[str] = None
    endpoint: Optional[str] = None
    checkpoints: Optional[list[TunedModelCheckpoint]] = None


class TuningJob(WireModel):
    """google.cloud.aiplatform.v1.TuningJob, the fields this project models."""

    name: Optional[str] = None
    base_model: Optional[str] = None
    supervised_tuning_spec: Optional[SupervisedTuningSpec] = None
    tuned_model_display_name: Optional[str] = None
    description: Optional[str] = None
    state: Optional[JobState] = None
    create_time: Optional[str] = None
    start_time: Optional[str] = None
    end_time: Optional[str] = None
    update_time: Optional[str] = None
    error: Optional[Status] = None
    labels: Optional[dict[str, str]] = None
    experiment: Optional[str] = None
    tuned_model: Optional[TunedModel] = None
    tuning_data_stats: Optional[dict[str, Any]] = None
    service_account: Optional[str] = None
    encryption_spec: Optional[dict[str, Any]] = None

    @field_validator("state", mode="before")
    @classmethod
    def _parse_state(cls, value: Any) -> Any:
        return None if value is None else JobState.parse(value)

    @property
    def has_ended(self) -> bool:
        return self.state in ENDED_STATES


# The six metrics of the seed documentation, by their seed names.
TRAIN_METRICS = ("/train_total_loss", "/train_fraction_of_correct_next_step_preds", "/train_num_predictions")
EVAL_METRICS = ("/eval_total_loss", "/eval_fraction_of_correct_next_step_preds", "/eval_num_predictions")
ALL_METRICS = TRAIN_METRICS + EVAL_METRICS
