"""Vertex AI Experiments of tuning jobs, read-only: the ML Metadata and TensorBoard routes (`emulator.experiments`).

Executions exist for no job (the SDK's legacy `system.Run` lookups get an empty list or NOT_FOUND). List filters
accept what the SDK sends (`schema_title="..."`, `display_name="..."`, `uri="..."`, `parent_contexts:"..."`,
`in_context("...")`, joined by AND/OR with parentheses) and reject anything else with INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse

from emulator.errors import InvalidArgument, NotFound
from emulator.experiments import EXPERIMENT_PREFIX, RUN_NAME, TB_RUN_ARTIFACT_SUFFIX, JobExperiment, TuningExperiments
from emulator.job_store import JobStore
from emulator.list_filter import CALL, Predicate, UnknownField, UnsupportedOperator, equality, parse_filter
from emulator.paging import after_key, page_of, page_size, with_next_page
from emulator.routes import ApiRoute, route

API_VERSIONS = ("v1", "v1beta1")
# Data points per scalar series that BatchReadTensorboardTimeSeriesData returns, and the default and the maximum
# of ReadTensorboardTimeSeriesData's maxDataPoints (aiplatform_v1 tensorboard_service docs).
BATCH_READ_MAX_POINTS = 1000
READ_DEFAULT_POINTS = 1000
READ_MAX_POINTS = 10000
METADATA_PAGE_SIZE = (100, 1000)  # (default, max) of ListContexts/ListArtifacts/ListExecutions
TIME_SERIES_PAGE_SIZE = (50, 1000)  # (default, max) of ListTensorboardTimeSeries

CONTEXT_FILTER_FIELDS = frozenset({"schema_title", "display_name", "parent_contexts"})
ARTIFACT_FILTER_FIELDS = frozenset({"schema_title", "display_name", "uri", "in_context"})
EXECUTION_FILTER_FIELDS = frozenset({"schema_title", "display_name", "in_context"})
TIME_SERIES_FILTER_FIELDS = frozenset({"display_name"})
_FILTER_HELP = ('schema_title="...", display_name="...", uri="..." (artifacts), parent_contexts:"..." '
                '(contexts), in_context("...") (artifacts, executions), joined by AND / OR with parentheses.')
_BODY_KEYS = {"schema_title": "schemaTitle", "display_name": "displayName", "uri": "uri"}


def parse_metadata_filter(text: str, fields: frozenset[str]) -> Predicate:
    """A predicate over the `Node`s of a collection whose filterable `fields` are given."""

    def term(field: str, op: str, value: str) -> Predicate:
        if field not in fields:
            raise UnknownField(field)
        if field == "in_context":
            if op != CALL:
                raise UnsupportedOperator(op)
            return lambda node: value in node.contexts
        if field == "parent_contexts":
            if op != ":":
                raise UnsupportedOperator(op)
            return lambda node: value in node.body.get("parentContexts", [])
        key = _BODY_KEYS[field]
        return equality(op, lambda node: node.body.get(key), value)

    return parse_filter(text, term, _FILTER_HELP)


def _page(items: list[dict[str, Any]], request: Request, sizes: tuple[int, int], key: str) -> dict[str, Any]:
    """One page of resources under `key`, in the one paging format (`emulator.paging`)."""
    if request.query_params.get("orderBy") or request.query_params.get("order_by"):
        raise InvalidArgument("orderBy is not supported by the emulator.")
    page, last = page_of(items, after_key(request), page_size(request, *sizes), lambda item: item.get("name"))
    return with_next_page({key: page}, last)


_CONTEXT_ID = re.compile(rf"^{EXPERIMENT_PREFIX}(?P<job>.+?)(?P<run>-{RUN_NAME})?$")
_ARTIFACT_ID = re.compile(rf"^{EXPERIMENT_PREFIX}(?P<job>.+)-{RUN_NAME}{TB_RUN_ARTIFACT_SUFFIX}$")


class MetadataApi:
    """Handlers of the ML Metadata (contexts, artifacts, executions) and TensorBoard read routes."""

    def __init__(self, jobs: JobStore) -> None:
        self.experiments = TuningExperiments(jobs)

    def routes(self) -> list[ApiRoute]:
        table = []
        for v in API_VERSIONS:
            p = f"/{v}/projects/{{project}}/locations/{{location}}"
            store = f"{p}/metadataStores/{{store}}"
            run = f"{p}/tensorboards/{{tensorboard}}/experiments/{{experiment}}/runs/{{run}}"
            table += [
                route("GET", f"{store}/contexts", self.list_contexts),
                route("GET", f"{store}/contexts/{{context}}", self.get_context),
                route("GET", f"{store}/artifacts", self.list_artifacts),
                route("GET", f"{store}/artifacts/{{artifact}}", self.get_artifact),
                route("GET", f"{store}/executions", self.list_executions),
                route("GET", f"{store}/executions/{{execution}}", self.get_execution),
                route("GET", f"{p}/tensorboards/{{tensorboard}}", self.get_tensorboard),
                route("GET", f"{p}/tensorboards/{{tensorboard}}:batchRead", self.batch_read_time_series_data),
                route("GET", f"{p}/tensorboards/{{tensorboard}}/experiments/{{experiment}}",
                      self.get_tensorboard_experiment),
                route("GET", run, self.get_tensorboard_run),
                route("GET", f"{run}/timeSeries", self.list_time_series),
                route("GET", f"{run}/timeSeries/{{series}}", self.get_time_series),
                route("GET", f"{run}/timeSeries/{{series}}:read", self.read_time_series_data),
            ]
        return table

    # --- ML Metadata ------------------------------------------------------------------------------

    def _store_jobs(self, project: str, location: str, store: str) -> Iterator[JobExperiment]:
        if store != "default":
            raise NotFound(f"MetadataStore projects/{project}/locations/{location}/metadataStores/{store} not found.")
        return self.experiments.all_jobs(project, location)

    async def get_context(self, request: Request, project: str, location: str, store: str,
                          context: str) -> JSONResponse:
        name = f"projects/{project}/locations/{location}/metadataStores/{store}/contexts/{context}"
        match = _CONTEXT_ID.match(context)
        if store != "default" or not match:
            raise NotFound(f"Context {name} not found.")
        experiment = self.experiments.for_job(project, location, match.group("job"), what=f"Context {name}")
        node = experiment.run_context() if match.group("run") else experiment.experiment_context()
        return JSONResponse(node.body)

    async def list_contexts(self, request: Request, project: str, location: str, store: str) -> JSONResponse:
        matches = parse_metadata_filter(request.query_params.get("filter", ""), CONTEXT_FILTER_FIELDS)
        nodes = [node for job in self._store_jobs(project, location, store) for node in job.contexts()]
        return JSONResponse(_page([node.body for node in nodes if matches(node)], request, METADATA_PAGE_SIZE,
                                  "contexts"))

    async def get_artifact(self, request: Request, project: str, location: str, store: str,
                           artifact: str) -> JSONResponse:
        name = f"projects/{project}/locations/{location}/metadataStores/{store}/artifacts/{artifact}"
        match = _ARTIFACT_ID.match(artifact)
        if store != "default" or not match:
            raise NotFound(f"Artifact {name} not found.")
        experiment = self.experiments.for_job(project, location, match.group("job"), what=f"Artifact {name}")
        return JSONResponse(experiment.tb_run_artifact().body)

    async def list_artifacts(self, request: Request, project: str, location: str, store: str) -> JSONResponse:
        matches = parse_metadata_filter(request.query_params.get("filter", ""), ARTIFACT_FILTER_FIELDS)
        nodes = [node for job in self._store_jobs(project, location, store) for node in job.artifacts()]
        return JSONResponse(_page([node.body for node in nodes if matches(node)], request, METADATA_PAGE_SIZE,
                                  "artifacts"))

    async def get_execution(self, request: Request, project: str, location: str, store: str,
                            execution: str) -> JSONResponse:
        # Tuning experiments log no executions (the SDK looks up a legacy `system.Run` execution only after a
        # run context was not found, and expects NOT_FOUND).
        raise NotFound(f"Execution projects/{project}/locations/{location}/metadataStores/{store}/executions/"
                       f"{execution} not found.")

    async def list_executions(self, request: Request, project: str, location: str, store: str) -> JSONResponse:
        parse_metadata_filter(request.query_params.get("filter", ""), EXECUTION_FILTER_FIELDS)
        self._store_jobs(project, location, store)  # NOT_FOUND for another store
        return JSONResponse(_page([], request, METADATA_PAGE_SIZE, "executions"))

    # --- TensorBoard ------------------------------------------------------------------------------

    def _tensorboard(self, project: str, location: str, tensorboard: str) -> JobExperiment:
        return self.experiments.for_job(
            project, location, tensorboard,
            what=f"Tensorboard projects/{project}/locations/{location}/tensorboards/{tensorboard}")

    def _run(self, project: str, location: str, tensorboard: str, experiment: str, run: str) -> JobExperiment:
        name = f"projects/{project}/locations/{location}/tensorboards/{tensorboard}/experiments/{experiment}"
        job = self.experiments.for_job(project, location, tensorboard, what=f"TensorboardRun {name}/runs/{run}")
        if experiment != job.experiment_id or run != RUN_NAME:
            raise NotFound(f"TensorboardRun {name}/runs/{run} not found.")
        return job

    async def get_tensorboard(self, request: Request, project: str, location: str, tensorboard: str) -> JSONResponse:
        return JSONResponse(self._tensorboard(project, location, tensorboard).tensorboard())

    async def get_tensorboard_experiment(self, request: Request, project: str, location: str, tensorboard: str,
                                         experiment: str) -> JSONResponse:
        name = f"projects/{project}/locations/{location}/tensorboards/{tensorboard}/experiments/{experiment}"
        job = self.experiments.for_job(project, location, tensorboard, what=f"TensorboardExperiment {name}")
        if experiment != job.experiment_id:
            raise NotFound(f"TensorboardExperiment {name} not found.")
        return JSONResponse(job.tb_experiment())

    async def get_tensorboard_run(self, request: Request, project: str, location: str, tensorboard: str,
                                  experiment: str, run: str) -> JSONResponse:
        return JSONResponse(self._run(project, location, tensorboard, experiment, run).tb_run())

    async def list_time_series(self, request: Request, project: str, location: str, tensorboard: str,
                               experiment: str, run: str) -> JSONResponse:
        matches = parse_metadata_filter(request.query_params.get("filter", ""), TIME_SERIES_FILTER_FIELDS)
        nodes = self._run(project, location, tensorboard, experiment, run).time_series()
        return JSONResponse(_page([node.body for node in nodes if matches(node)], request, TIME_SERIES_PAGE_SIZE,
                                  "tensorboardTimeSeries"))

    async def get_time_series(self, request: Request, project: str, location: str, tensorboard: str,
                              experiment: str, run: str, series: str) -> JSONResponse:
        job = self._run(project, location, tensorboard, experiment, run)
        for node in job.time_series():
            if node.body["name"].endswith(f"/timeSeries/{series}"):
                return JSONResponse(node.body)
        raise NotFound(f"TensorboardTimeSeries {job.tb_run_name}/timeSeries/{series} not found.")

    async def read_time_series_data(self, request: Request, project: str, location: str, tensorboard: str,
                                    experiment: str, run: str, series: str) -> JSONResponse:
        query = request.query_params
        if query.get("filter"):
            raise InvalidArgument("ReadTensorboardTimeSeriesData filters are not supported by the emulator.")
        raw = query.get("maxDataPoints") or query.get("max_data_points") or "0"
        if not raw.lstrip("-").isdigit() or int(raw) < -1 or int(raw) > READ_MAX_POINTS:
            raise InvalidArgument(f"maxDataPoints must be -1 or between 1 and {READ_MAX_POINTS}, got {raw!r}.")
        job = self._run(project, location, tensorboard, experiment, run)
        data = job.time_series_data(series, int(raw) or READ_DEFAULT_POINTS)
        return JSONResponse({"timeSeriesData": data})

    async def batch_read_time_series_data(self, request: Request, project: str, location: str,
                                          tensorboard: str) -> JSONResponse:
        names = request.query_params.getlist("timeSeries") or request.query_params.getlist("time_series")
        if not names:
            raise InvalidArgument("timeSeries is required.")
        board = f"projects/{project}/locations/{location}/tensorboards/{tensorboard}"
        job = self._tensorboard(project, location, tensorboard)
        data = []
        for name in names:
            prefix, _, series = name.rpartition("/timeSeries/")
            if not name.startswith(f"{board}/experiments/") or not series or "/" in series:
                raise InvalidArgument(f"Time series {name!r} is not a TensorboardTimeSeries of {board}.")
            if prefix != job.tb_run_name:
                raise NotFound(f"TensorboardTimeSeries {name} not found.")
            data.append(job.time_series_data(series, BATCH_READ_MAX_POINTS))
        return JSONResponse({"timeSeriesData": data})
