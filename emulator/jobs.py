"""Tuning job vocabulary: states (`aiplatform_v1.JobState`), resource names and job errors."""

from __future__ import annotations

from typing import Any

from google.cloud.aiplatform_v1 import GenAiTuningServiceClient, JobState

from emulator.errors import GoogleApiError, InvalidArgument
from tuning.vertex import ENDED_STATES as ENDED_STATES  # re-exported: the states a job never leaves

job_resource_name = GenAiTuningServiceClient.tuning_job_path  # projects/{project}/locations/{location}/tuningJobs/{id}


def job_state(value: str) -> JobState:
    """A state from its name, with or without the `JOB_STATE_` prefix, or its number; INVALID_ARGUMENT otherwise."""
    try:
        if value.isdigit():
            return JobState(int(value))
        name = value.upper()
        return JobState[name if name.startswith("JOB_STATE_") else f"JOB_STATE_{name}"]
    except (KeyError, ValueError) as error:
        raise InvalidArgument(f"Unknown job state {value!r} in filter.") from error


def state_of(job: dict[str, Any]) -> JobState:
    return JobState[job["state"]]


def job_id_of(job: dict[str, Any]) -> str:
    return job["name"].rsplit("/", 1)[1]


def experiment_context_name(job_name: str) -> str:
    """The ML Metadata context of the experiment of the job `projects/P/locations/L/tuningJobs/ID`."""
    parent, _, job_id = job_name.partition("/tuningJobs/")
    return f"{parent}/metadataStores/default/contexts/tuning-experiment-{job_id}"


def job_error(error: GoogleApiError) -> dict[str, Any]:
    """A failed job's `error` (a google.rpc.Status): the canonical code number, the message led by its name."""
    return {"code": error.code.value[0], "message": f"{error.status}: {error.message}"}
