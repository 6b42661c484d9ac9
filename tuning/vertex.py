"""What this project reads into the official Vertex AI tuning types (`google.cloud.aiplatform_v1`): which job
states are final, adapter sizes as numbers, a job as its REST JSON.

The wire model is `aiplatform_v1` itself (`TuningJob`, `JobState`, `SupervisedHyperParameters.AdapterSize`) and
resource names come from its clients' path helpers. Importing this module loads `aiplatform_v1`, about a second:
modules that `pulumi preview` or `python -m tuning validate` load import it inside the functions that need it.
"""

from __future__ import annotations

from typing import Any, Optional

from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1 import JobState as JobState  # re-exported; the class itself, so JobState["NAME"]
from google.protobuf import json_format

AdapterSize = aiplatform_v1.SupervisedHyperParameters.AdapterSize

# A tuning job in one of these states never changes again. EXPIRED counts, unlike the vertexai SDK's `has_ended`:
# an expired job will not run.
ENDED_STATES = frozenset({JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED,
                          JobState.JOB_STATE_EXPIRED})

# The enum's numbers are not in size order (ADAPTER_SIZE_TWO came last).
_ADAPTER_SIZES: dict[AdapterSize, int] = {AdapterSize.ADAPTER_SIZE_ONE: 1, AdapterSize.ADAPTER_SIZE_TWO: 2, AdapterSize.ADAPTER_SIZE_FOUR: 4,
                  AdapterSize.ADAPTER_SIZE_EIGHT: 8, AdapterSize.ADAPTER_SIZE_SIXTEEN: 16,
                  AdapterSize.ADAPTER_SIZE_THIRTY_TWO: 32}


def has_ended(job: aiplatform_v1.TuningJob) -> bool:
    return job.state in ENDED_STATES


def state_name(job: aiplatform_v1.TuningJob) -> Optional[str]:
    """`JOB_STATE_RUNNING`; None when the service did not say (JOB_STATE_UNSPECIFIED)."""
    return job.state.name if job.state else None


def adapter_size(size: int) -> AdapterSize:
    """The enum member of an adapter size (4 → ADAPTER_SIZE_FOUR).

    Raises:
        ValueError: no member has that size.
    """
    for member, member_size in _ADAPTER_SIZES.items():
        if member_size == size:
            return member
    raise ValueError(f"adapter size {size} is not one of 1, 2, 4, 8, 16, 32")


def adapter_size_number(member: AdapterSize) -> Optional[int]:
    """The size of an adapter size member (ADAPTER_SIZE_FOUR → 4); None for ADAPTER_SIZE_UNSPECIFIED."""
    return _ADAPTER_SIZES.get(member)


def to_rest_json(job: aiplatform_v1.TuningJob) -> dict[str, Any]:
    """The job as the REST API shows it: camelCase, enums by name, int64 as strings, unset fields left out."""
    body: dict[str, Any] = json_format.MessageToDict(aiplatform_v1.TuningJob.pb(job))
    return body


def from_rest_json(body: dict[str, Any]) -> aiplatform_v1.TuningJob:
    """A job from its REST JSON (camelCase or snake_case field names); fields this API version lacks are ignored.

    Raises:
        google.protobuf.json_format.ParseError: a field has a value of the wrong type (unknown enum names are
            ignored, like unknown fields).
    """
    message = json_format.ParseDict(body, aiplatform_v1.TuningJob.pb(aiplatform_v1.TuningJob()),
                                    ignore_unknown_fields=True)
    job: aiplatform_v1.TuningJob = aiplatform_v1.TuningJob.wrap(message)
    return job


def experiment_id(job: aiplatform_v1.TuningJob) -> str:
    """The id of the job's experiment (the last part of its metadata context name)."""
    return aiplatform_v1.MetadataServiceClient.parse_context_path(job.experiment).get("context") or \
        job.experiment.rsplit("/", 1)[-1]
