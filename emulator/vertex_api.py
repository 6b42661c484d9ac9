"""Vertex AI REST routes (`/v1/...` and `/v1beta1/...`): parse the request, call the backend, serialize."""

from __future__ import annotations

import re
from typing import Any

from google.cloud import aiplatform_v1beta1
from google.protobuf import json_format
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from emulator.errors import InvalidArgument, NotFound
from emulator.gcs import ObjectStore
from emulator.list_filter import parse_filter
from emulator.requests import page_size, page_token, read_json
from emulator.routing import Route
from emulator.runner import JobRunner
from emulator.serving import ModelCache, generate_content
from emulator.tuning_backend import TuningBackend
from tuning.models import TuningJob
from tuning.rules import create_request_violations

API_VERSIONS = ("v1", "v1beta1")
_PROJECT = re.compile(r"^(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
_OUTPUT_FIELDS = ("name", "state", "createTime", "startTime", "endTime", "updateTime", "error", "experiment",
                  "tunedModel", "tuningDataStats")


class VertexApi:
    """Handlers of the tuning, model, endpoint and prediction routes (experiments: `emulator.metadata_api`)."""

    def __init__(self, backend: TuningBackend, store: ObjectStore, runner: JobRunner, models: ModelCache,
                 max_json_bytes: int) -> None:
        self.backend = backend
        self.store = store
        self.runner = runner
        self.models = models
        self.max_json_bytes = max_json_bytes

    def routes(self) -> list[Route]:
        table = []
        for v in API_VERSIONS:
            p = f"/{v}/projects/{{project}}/locations/{{location}}"
            table += [
                Route("POST", f"{p}/tuningJobs", self.create_tuning_job),
                Route("GET", f"{p}/tuningJobs", self.list_tuning_jobs),
                Route("GET", f"{p}/tuningJobs/{{job}}", self.get_tuning_job),
                Route("POST", f"{p}/tuningJobs/{{job}}:cancel", self.cancel_tuning_job),
                Route("GET", f"{p}/models/{{model}}", self.get_model),
                Route("GET", f"{p}/endpoints/{{endpoint}}", self.get_endpoint),
                Route("POST", f"{p}/endpoints/{{endpoint}}:generateContent", self.generate_content),
            ]
        return table

    async def create_tuning_job(self, request: Request, project: str, location: str) -> JSONResponse:
        body = await read_json(request, self.max_json_bytes)
        if not _PROJECT.match(project):
            raise InvalidArgument(f"Invalid project {project!r}: expected a project id (6-30 lowercase letters, "
                                  "digits and hyphens, starting with a letter) or a project number.")
        # The official proto parser is the judge of the body, as on the service: unknown or misspelled
        # fields and out-of-range enum values are rejected, not silently dropped. v1beta1 is the superset.
        try:
            json_format.ParseDict(body, aiplatform_v1beta1.TuningJob.pb(aiplatform_v1beta1.TuningJob()))
        except json_format.ParseError as error:
            raise InvalidArgument(f"Invalid JSON payload received. {error}") from error
        try:
            job = TuningJob.model_validate(body)
        except (ValidationError, ValueError, IndexError) as error:
            raise InvalidArgument(f"Invalid TuningJob: {_first_error(error)}") from error
        spec = job.supervised_tuning_spec
        hyper = spec.hyper_parameters if spec else None
        violations = create_request_violations(
            location=location, base_model=job.base_model,
            training_dataset_uri=spec.training_dataset_uri if spec else None,
            validation_dataset_uri=spec.validation_dataset_uri if spec else None,
            adapter_size=hyper.adapter_size.size if hyper and hyper.adapter_size else None,
            epoch_count=hyper.epoch_count if hyper else None,
            learning_rate_multiplier=hyper.learning_rate_multiplier if hyper else None,
            tuned_model_display_name=job.tuned_model_display_name, labels=job.labels)
        if violations:
            raise InvalidArgument("; ".join(str(violation) for violation in violations))
        for field, uri in (("supervisedTuningSpec.trainingDatasetUri", spec.training_dataset_uri),
                           ("supervisedTuningSpec.validationDatasetUri", spec.validation_dataset_uri)):
            if not uri:
                continue
            bucket, name = ObjectStore.parse_gs_uri(uri)
            try:
                self.store.object_metadata(bucket, name)
            except NotFound as error:
                raise InvalidArgument(f"{field}: dataset {uri} does not exist or is not readable: "
                                      f"{error.message}") from error
        inputs = {key: value for key, value in job.to_wire().items() if key not in _OUTPUT_FIELDS}
        created = self.backend.insert_job(project, location, inputs)
        self.runner.submit(created["name"].rsplit("/", 1)[1])
        # Never return `experiment` here: vertexai's sft.train() breaks on it (reference §2.4).
        return JSONResponse(created)

    async def get_tuning_job(self, request: Request, project: str, location: str, job: str) -> JSONResponse:
        return JSONResponse(self.backend.job(project, location, job))

    async def list_tuning_jobs(self, request: Request, project: str, location: str) -> JSONResponse:
        jobs, token = self.backend.list_jobs(project, location,
                                             page_size=page_size(request, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
                                             page_token=page_token(request),
                                             matches=parse_filter(request.query_params.get("filter", "")))
        body: dict[str, Any] = {"tuningJobs": jobs}
        if token:
            body["nextPageToken"] = token
        return JSONResponse(body)

    async def cancel_tuning_job(self, request: Request, project: str, location: str, job: str) -> JSONResponse:
        await read_json(request, self.max_json_bytes)
        self.backend.request_cancel(project, location, job)
        return JSONResponse({})

    async def get_model(self, request: Request, project: str, location: str, model: str) -> JSONResponse:
        record = self.backend.tuned_model(project, location, model)
        return JSONResponse({
            "name": record.model_name.split("@")[0], "displayName": record.display_name, "versionId": "1",
            "versionAliases": ["default"], "createTime": record.create_time, "updateTime": record.create_time,
            "deployedModels": [{"endpoint": record.endpoint_name, "deployedModelId": record.id}],
            "labels": {"google-vertex-llm-tuning-job-id": record.job_id},
        })

    async def get_endpoint(self, request: Request, project: str, location: str, endpoint: str) -> JSONResponse:
        record = self.backend.tuned_model_by_endpoint(project, location, endpoint)
        return JSONResponse({
            "name": record.endpoint_name, "displayName": record.display_name, "createTime": record.create_time,
            "deployedModels": [{"id": record.id, "model": record.model_name.split("@")[0], "modelVersionId": "1",
                                "displayName": record.display_name, "createTime": record.create_time}],
            "trafficSplit": {record.id: 100},
        })

    async def generate_content(self, request: Request, project: str, location: str, endpoint: str) -> JSONResponse:
        body = await read_json(request, self.max_json_bytes)
        record = self.backend.tuned_model_by_endpoint(project, location, endpoint)
        model = await run_in_threadpool(self.models.get, record.model_dir)
        response = await run_in_threadpool(generate_content, model, body, record.model_name)
        return JSONResponse(response)


def _first_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return str(error)
