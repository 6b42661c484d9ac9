"""Request rules of tuningJobs.create for translation-llm-002, shared by the provider's check and the emulator."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

from tuning.limits import SUPPORTED_ADAPTER_SIZES, SUPPORTED_BASE_MODELS, SUPPORTED_REGIONS

# `\Z`, not `$`: `$` also matches before a trailing newline, which let "team\n" pass as a label value.
_GS_URI = re.compile(r"^gs://(?P<bucket>[a-z0-9][a-z0-9._-]{1,61}[a-z0-9])/(?P<object>.+)\Z")
# Label keys: start with a lowercase letter; keys and values ≤ 63 chars of lowercase letters, digits, _ and -.
# International lowercase letters are allowed by GCP, hence \w minus uppercase below (U+00F7 is ÷, not a letter).
_LABEL_KEY = re.compile(r"^[a-z\u00DF-\u00F6\u00F8-\u00FF][\w-]{0,62}\Z")
_LABEL_VALUE = re.compile(r"^[\w-]{0,63}\Z")
MAX_LABELS = 64
MAX_DISPLAY_NAME = 128


@dataclass(frozen=True)
class RuleViolation:
    """One broken rule: `field` is the camelCase input name (e.g. `supervisedTuningSpec.trainingDatasetUri`)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """Split `gs://bucket/object` into (bucket, object).

    Raises:
        ValueError: the URI is not of that form.
    """
    match = _GS_URI.match(uri or "")
    if not match:
        raise ValueError(f"expected gs://BUCKET/OBJECT, got {uri!r}")
    return match.group("bucket"), match.group("object")


def label_violations(labels: Optional[Mapping[str, str]], field: str = "labels") -> list[RuleViolation]:
    """Google label rules: ≤ 64 labels; keys and values ≤ 63 lowercase letters, digits, `_`, `-`."""
    if not labels:
        return []
    problems = []
    if len(labels) > MAX_LABELS:
        problems.append(RuleViolation(field, f"at most {MAX_LABELS} labels, got {len(labels)}"))
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key) or key != key.lower():
            problems.append(RuleViolation(f"{field}.{key}", "key must start with a lowercase letter and hold at most "
                                                            "63 lowercase letters, digits, '_' or '-'"))
        if not isinstance(value, str) or not _LABEL_VALUE.match(value) or value != value.lower():
            problems.append(RuleViolation(f"{field}.{key}", f"value {value!r} must hold at most 63 lowercase "
                                                            "letters, digits, '_' or '-'"))
    return problems


def create_request_violations(
    *,
    location: Optional[str],
    base_model: Optional[str],
    training_dataset_uri: Optional[str],
    validation_dataset_uri: Optional[str] = None,
    adapter_size: Optional[int] = None,
    epoch_count: Optional[int] = None,
    learning_rate_multiplier: Optional[float] = None,
    tuned_model_display_name: Optional[str] = None,
    labels: Optional[Mapping[str, str]] = None,
) -> list[RuleViolation]:
    """Every rule a create request for translation-llm-002 breaks; empty when it is valid.

    `adapter_size` is the size in adapters (1, 2, 4, ...), not the proto enum number.
    """
    problems: list[RuleViolation] = []
    if location is not None and location not in SUPPORTED_REGIONS:
        problems.append(RuleViolation("location", f"translation tuning runs only in {', '.join(SUPPORTED_REGIONS)}, "
                                                  f"got {location!r}"))
    if not base_model:
        problems.append(RuleViolation("baseModel", "is required"))
    elif base_model not in SUPPORTED_BASE_MODELS:
        problems.append(RuleViolation("baseModel", f"unsupported base model {base_model!r}; supported: "
                                                   f"{', '.join(SUPPORTED_BASE_MODELS)}"))
    if not training_dataset_uri:
        problems.append(RuleViolation("supervisedTuningSpec.trainingDatasetUri", "is required"))
    for field, uri in (("supervisedTuningSpec.trainingDatasetUri", training_dataset_uri),
                       ("supervisedTuningSpec.validationDatasetUri", validation_dataset_uri)):
        if uri:
            try:
                parse_gs_uri(uri)
            except ValueError as error:
                problems.append(RuleViolation(field, str(error)))
    if adapter_size is not None and adapter_size not in SUPPORTED_ADAPTER_SIZES:
        problems.append(RuleViolation("supervisedTuningSpec.hyperParameters.adapterSize",
                                      f"translation-llm-002 supports adapter size "
                                      f"{', '.join(map(str, SUPPORTED_ADAPTER_SIZES))} only, got {adapter_size}"))
    if epoch_count is not None and not 1 <= epoch_count <= 100:
        problems.append(RuleViolation("supervisedTuningSpec.hyperParameters.epochCount",
                                      f"must be between 1 and 100, got {epoch_count}"))
    if learning_rate_multiplier is not None and not 0 < learning_rate_multiplier <= 100:
        problems.append(RuleViolation("supervisedTuningSpec.hyperParameters.learningRateMultiplier",
                                      f"must be > 0 and <= 100, got {learning_rate_multiplier}"))
    if tuned_model_display_name is not None and len(tuned_model_display_name) > MAX_DISPLAY_NAME:
        problems.append(RuleViolation("tunedModelDisplayName", f"at most {MAX_DISPLAY_NAME} characters, "
                                                               f"got {len(tuned_model_display_name)}"))
    problems.extend(label_violations(labels))
    return problems
