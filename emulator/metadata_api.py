"""Vertex AI Experiments of tuning jobs, read-only: the ML Metadata and TensorBoard routes (`emulator.experiments`).

Executions exist for no job (the SDK's legacy `system.Run` lookups get an empty list or NOT_FOUND). List filters
accept what the SDK sends (`schema_title="..."`, `display_name="..."`, `uri="..."`, `parent_contexts:"..."`,
`in_context("...")`, joined by AND/OR with parentheses) and reject anything else with INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse

from emulator.errors import InvalidArgument, NotFound
from emulator.experiments import ARTIFACT_ID, CONTEXT_ID, RUN_NAME, JobExperiment, Node, has_experiment
from emulator.job_store import JobStore
from emulator.list_filter import CALL, Predicate, UnknownField, UnsupportedOperator, equality, parse_filter
from emulator.paging import after_key, page_of, page_size, with_next_page
from emulator.routes import ApiRoute, location_routes

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


def _list(request: Request, nodes: Iterable[Node], fields: frozenset[str], sizes: tuple[int, int],
          key: str) -> JSONResponse:
    """One page, under `key`, of the `nodes` that match the request's filter over `fields` (`emulator.paging`)."""
    matches = parse_metadata_filter(request.query_params.get("filter", ""), fields)
    if request.query_params.get("orderBy") or request.query_params.get("order_by"):
        raise InvalidArgument("orderBy is not supported by the emulator.")
    page, last = page_of([node.body for node in nodes if matches(node)], after_key(request),
                         page_size(request, *sizes), lambda item: item.get("name"))
    return JSONResponse(with_next_page({key: page}, last))


@dataclass
class MetadataApi:
    """Handlers of the ML Metadata (contexts, artifacts, executions) and TensorBoard read routes."""

    jobs: JobStore

    def routes(self) -> list[ApiRoute]:
        store, board = "metadataStores/{store}", "tensorboards/{tensorboard}"
        run = f"{board}/experiments/{{experiment}}/runs/{{run}}"
        return location_routes([
            ("GET", f"{store}/contexts", self.list_contexts),
            ("GET", f"{store}/contexts/{{context}}", self.get_context),
            ("GET", f"{store}/artifacts", self.list_artifacts),
            ("GET", f"{store}/artifacts/{{artifact}}", self.get_artifact),
            ("GET", f"{store}/executions", self.list_executions),
            ("GET", f"{store}/executions/{{execution}}", self.get_execution),
            ("GET", board, self.get_tensorboard),
            ("GET", f"{board}:batchRead", self.batch_read_time_series_data),
            ("GET", f"{board}/experiments/{{experiment}}", self.get_tensorboard),
            ("GET", run, self.get_tensorboard),
            ("GET", f"{run}/timeSeries", self.list_time_series),
            ("GET", f"{run}/timeSeries/{{series}}", self.get_time_series),
            ("GET", f"{run}/timeSeries/{{series}}:read", self.read_time_series_data),
        ])

    # --- ML Metadata ------------------------------------------------------------------------------

    def _for_job(self, project: str, location: str, job_id: str, *, what: str) -> JobExperiment:
        """The job's experiment; NotFound(`what` not found) when the job or its experiment does not exist."""
        try:
            job = self.jobs.job(project, location, job_id) if job_id else None
        except NotFound:
            job = None
        if job is None or not has_experiment(job):
            raise NotFound(f"{what} not found.")
        return JobExperiment(job, self.jobs)

    def _store_jobs(self, project: str, location: str, store: str) -> list[JobExperiment]:
        """The experiments of every job of the project and location, newest first (only the default store)."""
        if store != "default":
            raise NotFound(f"MetadataStore projects/{project}/locations/{location}/metadataStores/{store} not found.")
        jobs, _ = self.jobs.list_jobs(project, location, page_size=2**62, after=None, matches=has_experiment)
        return [JobExperiment(job, self.jobs) for job in jobs]

    def _node_job(self, project: str, location: str, store: str, kind: str, node_id: str,
                  pattern: re.Pattern[str]) -> tuple[JobExperiment, re.Match[str]]:
        """The job whose experiment has the context or artifact `node_id`, and the id's match of `pattern`."""
        name = f"{kind} projects/{project}/locations/{location}/metadataStores/{store}/{kind.lower()}s/{node_id}"
        match = pattern.match(node_id)
        if store != "default" or not match:
            raise NotFound(f"{name} not found.")
        return self._for_job(project, location, match.group("job"), what=name), match

    async def get_context(self, request: Request, project: str, location: str, store: str,
                          context: str) -> JSONResponse:
        job, match = self._node_job(project, location, store, "Context", context, CONTEXT_ID)
        return JSONResponse((job.run_context() if match.group("run") else job.experiment_context()).body)

    async def list_contexts(self, request: Request, project: str, location: str, store: str) -> JSONResponse:
        nodes = [node for job in self._store_jobs(project, location, store)
                 for node in (job.experiment_context(), job.run_context())]
        return _list(request, nodes, CONTEXT_FILTER_FIELDS, METADATA_PAGE_SIZE, "contexts")

    async def get_artifact(self, request: Request, project: str, location: str, store: str,
                           artifact: str) -> JSONResponse:
        job, _ = self._node_job(project, location, store, "Artifact", artifact, ARTIFACT_ID)
        return JSONResponse(job.tb_run_artifact().body)

    async def list_artifacts(self, request: Request, project: str, location: str, store: str) -> JSONResponse:
        nodes = [job.tb_run_artifact() for job in self._store_jobs(project, location, store)]
        return _list(request, nodes, ARTIFACT_FILTER_FIELDS, METADATA_PAGE_SIZE, "artifacts")

    async def get_execution(self, request: Request, project: str, location: str, store: str,
                            execution: str) -> JSONResponse:
        # Tuning experiments log no executions (the SDK looks up a legacy `system.Run` execution only after a
        # run context was not found, and expects NOT_FOUND).
        raise NotFound(f"Execution projects/{project}/locations/{location}/metadataStores/{store}/executions/"
                       f"{execution} not found.")

    async def list_executions(self, request: Request, project: str, location: str, store: str) -> JSONResponse:
        self._store_jobs(project, location, store)  # NOT_FOUND for another store
        return _list(request, [], EXECUTION_FILTER_FIELDS, METADATA_PAGE_SIZE, "executions")

    # --- TensorBoard ------------------------------------------------------------------------------

    def _board(self, project: str, location: str, tensorboard: str, experiment: Optional[str] = None,
               run: Optional[str] = None) -> JobExperiment:
        """The job whose TensorBoard (and, when given, TensorBoard experiment and run) these are; else NotFound."""
        kind, name = "Tensorboard", f"projects/{project}/locations/{location}/tensorboards/{tensorboard}"
        if experiment is not None:
            kind, name = "TensorboardExperiment", f"{name}/experiments/{experiment}"
        if run is not None:
            kind, name = "TensorboardRun", f"{name}/runs/{run}"
        job = self._for_job(project, location, tensorboard, what=f"{kind} {name}")
        if experiment not in (None, job.experiment_id) or run not in (None, RUN_NAME):
            raise NotFound(f"{kind} {name} not found.")
        return job

    async def get_tensorboard(self, request: Request, project: str, location: str, tensorboard: str,
                              experiment: Optional[str] = None, run: Optional[str] = None) -> JSONResponse:
        """The Tensorboard, TensorboardExperiment or TensorboardRun the path names."""
        job = self._board(project, location, tensorboard, experiment, run)
        return JSONResponse(job.tb_run() if run else job.tb_experiment() if experiment else job.tensorboard())

    async def list_time_series(self, request: Request, project: str, location: str, tensorboard: str,
                               experiment: str, run: str) -> JSONResponse:
        nodes = self._board(project, location, tensorboard, experiment, run).time_series()
        return _list(request, nodes, TIME_SERIES_FILTER_FIELDS, TIME_SERIES_PAGE_SIZE, "tensorboardTimeSeries")

    async def get_time_series(self, request: Request, project: str, location: str, tensorboard: str,
                              experiment: str, run: str, series: str) -> JSONResponse:
        job = self._board(project, location, tensorboard, experiment, run)
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
        job = self._board(project, location, tensorboard, experiment, run)
        data = job.time_series_data(series, int(raw) or READ_DEFAULT_POINTS)
        return JSONResponse({"timeSeriesData": data})

    async def batch_read_time_series_data(self, request: Request, project: str, location: str,
                                          tensorboard: str) -> JSONResponse:
        names = request.query_params.getlist("timeSeries") or request.query_params.getlist("time_series")
        if not names:
            raise InvalidArgument("timeSeries is required.")
        board = f"projects/{project}/locations/{location}/tensorboards/{tensorboard}"
        job = self._board(project, location, tensorboard)
        data = []
        for name in names:
            prefix, _, series = name.rpartition("/timeSeries/")
            if not name.startswith(f"{board}/experiments/") or not series or "/" in series:
                raise InvalidArgument(f"Time series {name!r} is not a TensorboardTimeSeries of {board}.")
            if prefix != job.tb_run_name:
                raise NotFound(f"TensorboardTimeSeries {name} not found.")
            data.append(job.time_series_data(series, BATCH_READ_MAX_POINTS))
        return JSONResponse({"timeSeriesData": data})
