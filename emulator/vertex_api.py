"""Vertex AI REST routes (`/v1/...` and `/v1beta1/...`): parse the request, call the jobs, serialize."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import aiplatform_v1beta1
from google.protobuf import json_format
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from emulator.clock import now_rfc3339
from emulator.errors import FailedPrecondition, InvalidArgument, NotFound
from emulator.gcs import ObjectStore
from emulator.job_filter import parse_job_filter
from emulator.job_runner import JobRunner
from emulator.job_store import JobStore
from emulator.jobs import job_id_of
from emulator.paging import after_key, page_size, with_next_page
from emulator.prediction import ModelCache, generate_content
from emulator.requests import read_json
from emulator.routes import API_VERSIONS, ApiRoute, location_routes, route
from emulator.tuned_models import TunedModels
from tuning.rules import create_request_violations
from tuning.vertex import AdapterSize, adapter_size_number

# The official REST clients poll operations under `/ui/` (the first URI of GetOperation in their http options),
# the REST reference documents `/v1/`: both are served.
OPERATION_PREFIXES = (*API_VERSIONS, "ui")
_PROJECT = re.compile(r"^(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
_OUTPUT_FIELDS = ("name", "state", "createTime", "startTime", "endTime", "updateTime", "error", "experiment",
                  "tunedModel", "tuningDataStats")


@dataclass
class VertexApi:
    """Handlers of the tuning, model, endpoint and prediction routes (experiments: `emulator.metadata_api`)."""

    jobs: JobStore
    tuned_models: TunedModels
    store: ObjectStore
    runner: JobRunner
    models: ModelCache
    max_json_bytes: int

    def routes(self) -> list[ApiRoute]:
        operations = [(method, f"{resource}/operations/{{operation}}{verb}", handler)
                      for resource in ("endpoints/{endpoint}", "models/{model}")
                      for method, verb, handler in (("GET", "", self.get_operation),
                                                    ("POST", ":wait", self.wait_operation))]
        return [*location_routes([
            ("POST", "tuningJobs", self.create_tuning_job),
            ("GET", "tuningJobs", self.list_tuning_jobs),
            ("GET", "tuningJobs/{job}", self.get_tuning_job),
            ("POST", "tuningJobs/{job}:cancel", self.cancel_tuning_job),
            ("GET", "models/{model}", self.get_model),
            ("DELETE", "models/{model}", self.delete_model),
            ("GET", "endpoints/{endpoint}", self.get_endpoint),
            ("DELETE", "endpoints/{endpoint}", self.delete_endpoint),
            ("POST", "endpoints/{endpoint}:undeployModel", self.undeploy_model),
            ("POST", "endpoints/{endpoint}:generateContent", self.generate_content),
            ("POST", "publishers/{publisher}/models/{model}:generateContent", self.generate_content_base),
        ]), *location_routes(operations, OPERATION_PREFIXES), *(
            route("POST", f"/{v}/publishers/{{publisher}}/models/{{model}}:generateContent", self.generate_content_base)
            for v in API_VERSIONS)]

    async def create_tuning_job(self, request: Request, project: str, location: str) -> JSONResponse:
        body = await read_json(request, self.max_json_bytes)
        if not _PROJECT.match(project):
            raise InvalidArgument(f"Invalid project {project!r}: expected a project id (6-30 lowercase letters, "
                                  "digits and hyphens, starting with a letter) or a project number.")
        # The official proto parser is the judge of the body, as on the service: unknown or misspelled
        # fields and out-of-range enum values are rejected, not silently dropped. v1beta1 is the superset.
        job = _parse_body(body, aiplatform_v1beta1.TuningJob)
        spec, hyper = job.supervised_tuning_spec, job.supervised_tuning_spec.hyper_parameters
        if hyper.adapter_size not in AdapterSize._value2member_map_:  # proto3 enums are open: numbers parse
            raise InvalidArgument("Invalid TuningJob: supervisedTuningSpec.hyperParameters.adapterSize: "
                                  f"{hyper.adapter_size} is not an AdapterSize number")
        violations = create_request_violations(
            location=location, base_model=job.base_model or None,
            training_dataset_uri=spec.training_dataset_uri or None,
            validation_dataset_uri=spec.validation_dataset_uri or None,
            adapter_size=adapter_size_number(hyper.adapter_size), epoch_count=hyper.epoch_count or None,
            learning_rate_multiplier=hyper.learning_rate_multiplier or None,
            tuned_model_display_name=job.tuned_model_display_name or None, labels=dict(job.labels))
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
        inputs = {key: value for key, value in json_format.MessageToDict(job).items() if key not in _OUTPUT_FIELDS}
        created = self.jobs.insert_job(project, location, inputs)
        self.runner.submit(job_id_of(created))
        # Never return `experiment` here: vertexai's sft.train() fails on a create response that carries it.
        return JSONResponse(created)

    async def get_tuning_job(self, request: Request, project: str, location: str, job: str) -> JSONResponse:
        return JSONResponse(self.jobs.job(project, location, job))

    async def list_tuning_jobs(self, request: Request, project: str, location: str) -> JSONResponse:
        jobs, last = self.jobs.list_jobs(project, location,
                                            page_size=page_size(request, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
                                            after=after_key(request),
                                            matches=parse_job_filter(request.query_params.get("filter", "")))
        return JSONResponse(with_next_page({"tuningJobs": jobs}, last))

    async def cancel_tuning_job(self, request: Request, project: str, location: str, job: str) -> JSONResponse:
        await read_json(request, self.max_json_bytes)
        self.jobs.request_cancel(project, location, job)
        return JSONResponse({})

    async def get_model(self, request: Request, project: str, location: str, model: str) -> JSONResponse:
        record = self.tuned_models.model(project, location, model)
        body: dict[str, Any] = {
            "name": record.model, "displayName": record.display_name, "versionId": "1",
            "versionAliases": ["default"], "createTime": record.create_time, "updateTime": record.create_time,
            "labels": {"google-vertex-llm-tuning-job-id": record.job_id},
        }
        if record.deployed:
            body["deployedModels"] = [{"endpoint": record.endpoint_name, "deployedModelId": record.id}]
        return JSONResponse(body)

    async def get_endpoint(self, request: Request, project: str, location: str, endpoint: str) -> JSONResponse:
        """The endpoint; once its model is undeployed, without `deployedModels` and `trafficSplit` (as Vertex AI
        omits empty fields)."""
        record = self.tuned_models.by_endpoint(project, location, endpoint)
        body: dict[str, Any] = {"name": record.endpoint_name, "displayName": record.display_name,
                                "createTime": record.create_time,
                                "updateTime": record.undeploy_time or record.create_time}
        if record.deployed:
            body["deployedModels"] = [{"id": record.id, "model": record.model,
                                       "modelVersionId": "1", "displayName": record.display_name,
                                       "createTime": record.create_time}]
            body["trafficSplit"] = {record.id: 100}
        return JSONResponse(body)

    async def undeploy_model(self, request: Request, project: str, location: str, endpoint: str) -> JSONResponse:
        """endpoints.undeployModel: body `{"deployedModelId": ID}` (`trafficSplit` is accepted and has nothing to
        apply to: an emulated endpoint holds one deployed model, and undeploying the last one always leaves the
        split empty, as on Vertex AI). Answers a long-running operation, already done."""
        body = await read_json(request, self.max_json_bytes)
        message = _parse_body(body, aiplatform_v1beta1.UndeployModelRequest)
        if not message.deployed_model_id:
            raise InvalidArgument("deployedModelId is required: the id of the DeployedModel to undeploy, as "
                                  "listed in the Endpoint's deployedModels[].id.")
        record = self.tuned_models.undeploy_model(project, location, endpoint, message.deployed_model_id)
        return self._done_operation(request, record.endpoint_name, "UndeployModel")

    async def delete_endpoint(self, request: Request, project: str, location: str, endpoint: str) -> JSONResponse:
        """endpoints.delete: FAILED_PRECONDITION while a model is deployed on it; a done operation otherwise."""
        record = self.tuned_models.delete_endpoint(project, location, endpoint)
        return self._done_operation(request, record.endpoint_name)

    async def delete_model(self, request: Request, project: str, location: str, model: str) -> JSONResponse:
        """models.delete: FAILED_PRECONDITION while it is deployed; a done operation otherwise. The trained
        weights are removed from the data dir."""
        record = self.tuned_models.delete_model(project, location, model)
        await run_in_threadpool(self._remove_model_files, record.model_dir)
        return self._done_operation(request, record.model)

    async def get_operation(self, request: Request, project: str, location: str, operation: str,
                            **resource: str) -> JSONResponse:
        # `projects/.../operations/ID` from `/{v1|v1beta1|ui}/projects/.../operations/ID[:wait]`
        return JSONResponse(self.tuned_models.operation(request.url.path.split("/", 2)[2].removesuffix(":wait")))

    async def wait_operation(self, request: Request, project: str, location: str, operation: str,
                             **resource: str) -> JSONResponse:
        """operations.wait: every emulated operation is done when it is returned, so there is nothing to wait for."""
        await read_json(request, self.max_json_bytes)
        return await self.get_operation(request, project, location, operation, **resource)

    def _done_operation(self, request: Request, parent: str, method: str = "Delete") -> JSONResponse:
        """A new long-running operation of `parent`, already done (the emulator applies every change at once):
        `Delete`'s, or `UndeployModel`'s. Its `@type`s name the messages of the API version called."""
        version, now = request.url.path.split("/")[1], now_rfc3339()
        response = (f"google.cloud.aiplatform.{version}.{method}Response" if method != "Delete"
                    else "google.protobuf.Empty")
        return JSONResponse(self.tuned_models.insert_operation(parent, {
            "metadata": {"@type": f"type.googleapis.com/google.cloud.aiplatform.{version}.{method}OperationMetadata",
                         "genericMetadata": {"createTime": now, "updateTime": now}},
            "done": True, "response": {"@type": f"type.googleapis.com/{response}"}}))

    def _remove_model_files(self, model_dir: str) -> None:
        """Delete a deleted model's weights, only ever inside the runner's work dir."""
        path = Path(model_dir).resolve()
        if path.is_relative_to(self.runner.work_dir.resolve()) and path != self.runner.work_dir.resolve():
            shutil.rmtree(path, ignore_errors=True)

    async def generate_content(self, request: Request, project: str, location: str, endpoint: str) -> JSONResponse:
        body = await read_json(request, self.max_json_bytes)
        record = self.tuned_models.by_endpoint(project, location, endpoint)
        if not record.deployed:
            # What Vertex AI answers for an endpoint whose models were all undeployed: the endpoint exists (so not
            # NOT_FOUND, which the emulator keeps for a missing or deleted endpoint) but cannot serve.
            raise FailedPrecondition(f"Endpoint {record.endpoint_name} has no deployed model to serve the "
                                     "request; deploy one, or use another endpoint.")
        model = await run_in_threadpool(self.models.get, record.model_dir)
        response = await run_in_threadpool(generate_content, model, body, record.model_name)
        return JSONResponse(response)

    async def generate_content_base(self, request: Request, publisher: str, model: str, project: str = "",
                                    location: str = "") -> JSONResponse:
        """generateContent on the base model (`[projects/P/locations/L/]publishers/google/models/M`)."""
        body = await read_json(request, self.max_json_bytes)
        base = self.models.base(publisher, model, self.runner.training)
        return JSONResponse(await run_in_threadpool(generate_content, base, body, model))


def _parse_body(body: dict[str, Any], message_class: Any) -> Any:
    """The body as the official proto parser reads it: unknown fields and wrong types are INVALID_ARGUMENT."""
    try:
        return json_format.ParseDict(body, message_class.pb(message_class()))
    except json_format.ParseError as error:
        raise InvalidArgument(f"Invalid JSON payload received. {error}") from error
