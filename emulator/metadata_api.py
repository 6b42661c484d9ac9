"""Vertex AI Experiments of tuning jobs: ML Metadata and TensorBoard routes, read-only, from the job's metric points.

On Vertex AI a tuning job's metrics are not in the TuningJob: they live in its experiment (`TuningJob.experiment`,
an ML Metadata Context), whose run is backed by a Vertex AI TensorBoard run with one scalar time series per metric
(reference §4). The aiplatform SDK reads them with `aiplatform.Experiment(...).get_data_frame()` and
`aiplatform.ExperimentRun(run, experiment=...).get_time_series_data_frame()`. This module serves exactly the
resources those calls walk, derived from the emulator's state; nothing here is stored separately.

Each job whose `experiment` is set (from the moment it runs) has:

    metadataStores/default/contexts/tuning-experiment-{job}           system.Experiment
    metadataStores/default/contexts/tuning-experiment-{job}-run       system.ExperimentRun, parent: the experiment
    metadataStores/default/artifacts/tuning-experiment-{job}-run-tb-run
                                                                      google.VertexTensorboardRun, in the run context,
                                                                      metadata.resourceName = the TensorBoard run
    tensorboards/{job}                                                the experiment's backing TensorBoard
    tensorboards/{job}/experiments/tuning-experiment-{job}
    tensorboards/{job}/experiments/tuning-experiment-{job}/runs/run
    .../runs/run/timeSeries/{metric}                                  one SCALAR series per metric with points,
                                                                      e.g. `train-total-loss` for `/train_total_loss`

The names follow the SDK's own conventions (run context `{experiment}-{run}`, artifact `{run context}-tb-run`,
TensorBoard experiment id = experiment name, TensorBoard run id = run name). Executions exist for no job (the
SDK's legacy `system.Run` lookups get an empty list or NOT_FOUND). List filters accept the syntax the SDK sends
(`schema_title="..."`, `display_name="..."`, `uri="..."`, `parent_contexts:"..."`, `in_context("...")`, joined
by AND/OR with parentheses) and reject anything else with INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse

from emulator.errors import InvalidArgument, NotFound
from emulator.requests import page_size, page_token
from emulator.routing import Route
from emulator.tuning_backend import TuningBackend, experiment_context_name
from emulator.job_state import JobState
from tuning.limits import ALL_METRICS

API_VERSIONS = ("v1", "v1beta1")
EXPERIMENT_PREFIX = "tuning-experiment-"
RUN_NAME = "run"  # ExperimentRun name; its context id is `{experiment}-run`
TB_RUN_ARTIFACT_SUFFIX = "-tb-run"  # the SDK's constants._TB_RUN_ARTIFACT_POST_FIX_ID
SCHEMA_VERSION = "0.0.1"
# Data points per scalar series that BatchReadTensorboardTimeSeriesData returns, and the default and the maximum
# of ReadTensorboardTimeSeriesData's maxDataPoints (aiplatform_v1 tensorboard_service docs).
BATCH_READ_MAX_POINTS = 1000
READ_DEFAULT_POINTS = 1000
READ_MAX_POINTS = 10000
METADATA_PAGE_SIZE = (100, 1000)  # (default, max) of ListContexts/ListArtifacts/ListExecutions
TIME_SERIES_PAGE_SIZE = (50, 1000)  # (default, max) of ListTensorboardTimeSeries

# ExperimentRun `_state` (an Execution.State name) for each job state.
_RUN_STATE = {
    JobState.JOB_STATE_SUCCEEDED: "COMPLETE",
    JobState.JOB_STATE_FAILED: "FAILED",
    JobState.JOB_STATE_EXPIRED: "FAILED",
    JobState.JOB_STATE_CANCELLED: "CANCELLED",
}


def _series_id(metric: str) -> str:
    """`/train_total_loss` → `train-total-loss` (TensorBoard ids match `[a-z0-9][a-z0-9-]*`)."""
    return metric.lstrip("/").replace("_", "-")


_METRIC_BY_SERIES_ID = {_series_id(metric): metric for metric in ALL_METRICS}


@dataclass(frozen=True)
class Node:
    """One metadata resource: its JSON body and, for artifacts and executions, the contexts it belongs to."""

    body: dict[str, Any]
    contexts: tuple[str, ...] = ()


@dataclass
class JobExperiment:
    """The experiment resources of one tuning job, built from the job body and (read on first use) its metric points."""

    project: str
    location: str
    job_id: str
    job: dict[str, Any]
    load_series: Callable[[], dict[str, list[dict[str, Any]]]]

    @cached_property
    def series(self) -> dict[str, list[dict[str, Any]]]:
        """`TuningBackend.metric_series` of the job: {metric: [{step, value, time}, ...]} in step order."""
        return self.load_series()

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def experiment_id(self) -> str:
        return f"{EXPERIMENT_PREFIX}{self.job_id}"

    @property
    def run_context_id(self) -> str:
        return f"{self.experiment_id}-{RUN_NAME}"

    @property
    def artifact_id(self) -> str:
        return f"{self.run_context_id}{TB_RUN_ARTIFACT_SUFFIX}"

    @property
    def tensorboard_name(self) -> str:
        return f"{self.parent}/tensorboards/{self.job_id}"

    @property
    def tb_experiment_name(self) -> str:
        return f"{self.tensorboard_name}/experiments/{self.experiment_id}"

    @property
    def tb_run_name(self) -> str:
        return f"{self.tb_experiment_name}/runs/{RUN_NAME}"

    def _times(self) -> dict[str, Any]:
        created, updated = self.job.get("startTime") or self.job.get("createTime"), self.job.get("updateTime")
        return {"createTime": created, "updateTime": updated, "etag": updated}

    # --- ML Metadata ------------------------------------------------------------------------------

    def experiment_context(self) -> Node:
        return Node({
            "name": experiment_context_name(self.project, self.location, self.job_id),
            "displayName": self.experiment_id, "schemaTitle": "system.Experiment", "schemaVersion": SCHEMA_VERSION,
            "metadata": {"experiment_deleted": False, "backing_tensorboard_resource": self.tensorboard_name},
            **self._times(),
        })

    def run_context(self) -> Node:
        state = _RUN_STATE.get(JobState(self.job["state"]), "RUNNING")
        return Node({
            "name": f"{self.parent}/metadataStores/default/contexts/{self.run_context_id}",
            "displayName": RUN_NAME, "schemaTitle": "system.ExperimentRun", "schemaVersion": SCHEMA_VERSION,
            "parentContexts": [self.experiment_context().body["name"]],
            "metadata": {"_params": {}, "_metrics": {}, "_state": state},
            **self._times(),
        })

    def contexts(self) -> list[Node]:
        return [self.experiment_context(), self.run_context()]

    def tb_run_artifact(self) -> Node:
        return Node({
            "name": f"{self.parent}/metadataStores/default/artifacts/{self.artifact_id}",
            "displayName": self.artifact_id, "uri": f"https://{self.location}-aiplatform.googleapis.com/v1/"
                                                    f"{self.tb_run_name}",
            "state": "LIVE", "schemaTitle": "google.VertexTensorboardRun", "schemaVersion": SCHEMA_VERSION,
            "metadata": {"resourceName": self.tb_run_name, "vertex_experiment_tracking": True},
            **self._times(),
        }, contexts=(self.run_context().body["name"],))

    def artifacts(self) -> list[Node]:
        return [self.tb_run_artifact()]

    # --- TensorBoard ------------------------------------------------------------------------------

    def tensorboard(self) -> dict[str, Any]:
        return {"name": self.tensorboard_name, "displayName": f"{self.experiment_id} tensorboard",
                "runCount": 1, **self._times()}

    def tb_experiment(self) -> dict[str, Any]:
        return {"name": self.tb_experiment_name, "displayName": self.experiment_id,
                "labels": {"vertex_tensorboard_experiment_source": "vertex_experiment"}, **self._times()}

    def tb_run(self) -> dict[str, Any]:
        return {"name": self.tb_run_name, "displayName": RUN_NAME, **self._times()}

    def time_series(self) -> list[Node]:
        """One SCALAR series per metric that has points, in the documented metric order."""
        nodes = []
        for metric in ALL_METRICS:
            points = self.series.get(metric)
            if not points:
                continue
            nodes.append(Node({
                "name": f"{self.tb_run_name}/timeSeries/{_series_id(metric)}", "displayName": metric,
                "valueType": "SCALAR", "pluginName": "scalars",
                "createTime": points[0]["time"], "updateTime": points[-1]["time"], "etag": points[-1]["time"],
                "metadata": {"maxStep": str(points[-1]["step"]), "maxWallTime": points[-1]["time"]},
            }))
        return nodes

    def time_series_data(self, series_id: str, max_points: int) -> dict[str, Any]:
        """TimeSeriesData of one series, at most `max_points` points (all when negative)."""
        points = self.series.get(_METRIC_BY_SERIES_ID.get(series_id, ""))
        if not points:
            raise NotFound(f"TensorboardTimeSeries {self.tb_run_name}/timeSeries/{series_id} not found.")
        return {"tensorboardTimeSeriesId": series_id, "valueType": "SCALAR",
                "values": [{"wallTime": point["time"], "step": str(point["step"]),
                            "scalar": {"value": point["value"]}} for point in _downsample(points, max_points)]}


def _downsample(points: list[Any], limit: int) -> list[Any]:
    """Up to `limit` points, evenly spread, always keeping the first and the last (the latest value)."""
    if limit < 0 or len(points) <= limit:
        return points
    if limit == 1:
        return points[-1:]
    last = len(points) - 1
    return [points[round(i * last / (limit - 1))] for i in range(limit)]


class TuningExperiments:
    """Resolves experiment resources from the tuning backend: a job's experiment exists once `experiment` is set."""

    def __init__(self, backend: TuningBackend) -> None:
        self.backend = backend

    def for_job(self, project: str, location: str, job_id: str, *, what: str) -> JobExperiment:
        """The job's experiment; NotFound(`what` not found) when the job or its experiment does not exist."""
        try:
            job = self.backend.job(project, location, job_id) if job_id else None
        except NotFound:
            job = None
        if job is None or job.get("experiment") != experiment_context_name(project, location, job_id):
            raise NotFound(f"{what} not found.")
        return self._experiment(project, location, job_id, job)

    def all_jobs(self, project: str, location: str) -> Iterator[JobExperiment]:
        """Every job of the project and location that has an experiment, newest first."""
        token = ""
        while True:
            jobs, token = self.backend.list_jobs(project, location, page_size=200, page_token=token,
                                                 matches=lambda job: bool(job.get("experiment")))
            for job in jobs:
                job_id = job["name"].rsplit("/", 1)[1]
                if job.get("experiment") == experiment_context_name(project, location, job_id):
                    yield self._experiment(project, location, job_id, job)
            if not token:
                return

    def _experiment(self, project: str, location: str, job_id: str, job: dict[str, Any]) -> JobExperiment:
        return JobExperiment(project, location, job_id, job, lambda: self.backend.metric_series(job_id))


# --- list filters ---------------------------------------------------------------------------------------

Predicate = Callable[[Node], bool]

_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:|\(|\)|,)|(?P<word>[A-Za-z_][\w.]*))')
_FILTER_HELP = ('supported: schema_title="...", display_name="...", uri="..." (artifacts), parent_contexts:"..." '
                '(contexts), in_context("...") (artifacts, executions), joined by AND / OR with parentheses.')


class _FilterParser:
    """Recursive descent over the metadata filter subset; `fields` are those the listed resource supports."""

    def __init__(self, text: str, fields: frozenset[str]) -> None:
        self.text, self.fields, self.tokens, self.pos = text, fields, [], 0
        index = 0
        while index < len(text):
            if not text[index:].strip():
                break
            match = _TOKEN.match(text, index)
            if not match:
                self._fail(f"unexpected input at {text[index:].strip()[:20]!r}")
            kind = match.lastgroup
            value = match.group(kind)
            self.tokens.append((kind, json.loads(value) if kind == "string" else value))
            index = match.end()

    def _fail(self, why: str):
        raise InvalidArgument(f"Unsupported filter {self.text!r}: {why}; {_FILTER_HELP}")

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, kind: str, value: str | None = None) -> str:
        token = self._peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            self._fail(f"expected {value or kind} at token {self.pos + 1}")
        self.pos += 1
        return token[1]

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda node: True
        predicate = self._or()
        if self._peek() is not None:
            self._fail(f"unexpected {self._peek()[1]!r}")
        return predicate

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek() == ("word", "OR"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda node: any(part(node) for part in parts))

    def _and(self) -> Predicate:
        parts = [self._unit()]
        while self._peek() == ("word", "AND"):
            self.pos += 1
            parts.append(self._unit())
        return parts[0] if len(parts) == 1 else (lambda node: all(part(node) for part in parts))

    def _unit(self) -> Predicate:
        if self._peek() == ("op", "("):
            self.pos += 1
            inner = self._or()
            self._take("op", ")")
            return inner
        name = self._take("word")
        if name not in self.fields:
            self._fail(f"field {name!r} is not supported on this collection")
        if name == "in_context":
            self._take("op", "(")
            context = self._take("string")
            self._take("op", ")")
            return lambda node: context in node.contexts
        if name == "parent_contexts":
            self._take("op", ":")
            parent = self._take("string")
            if self._peek() == ("op", ","):
                self._fail("only one parent context per parent_contexts term")
            return lambda node: parent in node.body.get("parentContexts", [])
        op = self._peek()
        if op not in (("op", "="), ("op", "!=")):
            self._fail(f"expected = or != after {name}")
        self.pos += 1
        value = self._take("string")
        key = {"schema_title": "schemaTitle", "display_name": "displayName", "uri": "uri"}[name]
        if op[1] == "=":
            return lambda node: node.body.get(key) == value
        return lambda node: node.body.get(key) != value


CONTEXT_FILTER_FIELDS = frozenset({"schema_title", "display_name", "parent_contexts"})
ARTIFACT_FILTER_FIELDS = frozenset({"schema_title", "display_name", "uri", "in_context"})
EXECUTION_FILTER_FIELDS = frozenset({"schema_title", "display_name", "in_context"})
TIME_SERIES_FILTER_FIELDS = frozenset({"display_name"})


def parse_metadata_filter(text: str, fields: frozenset[str]) -> Predicate:
    """Compile a list filter; an empty filter matches everything, anything unsupported is INVALID_ARGUMENT."""
    return _FilterParser(text or "", fields).parse()


# --- paging ---------------------------------------------------------------------------------------------


def _page(items: list[dict[str, Any]], request: Request, sizes: tuple[int, int], key: str) -> dict[str, Any]:
    """One page of `items` under `key`, with `nextPageToken` when more remain.

    A token names the last item served, not an offset, so items added meanwhile (a job that starts
    between two pages) neither repeat nor shift the next page.
    """
    query = request.query_params
    if query.get("orderBy") or query.get("order_by"):
        raise InvalidArgument("orderBy is not supported by the emulator.")
    size = page_size(request, *sizes)
    token = page_token(request)
    start = 0
    if token:
        try:
            after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidArgument(f"Invalid page token {token!r}.") from error
        names = [item.get("name") for item in items]
        if after not in names:
            raise InvalidArgument(f"Page token {token!r} has expired: its item no longer exists.")
        start = names.index(after) + 1
    page = items[start:start + size]
    body: dict[str, Any] = {key: page}
    if start + size < len(items):
        body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps({"after": page[-1]["name"]}).encode()).decode()
    return body


# --- routes ---------------------------------------------------------------------------------------------

_CONTEXT_ID = re.compile(rf"^{EXPERIMENT_PREFIX}(?P<job>.+?)(?P<run>-{RUN_NAME})?$")
_ARTIFACT_ID = re.compile(rf"^{EXPERIMENT_PREFIX}(?P<job>.+)-{RUN_NAME}{TB_RUN_ARTIFACT_SUFFIX}$")


class MetadataApi:
    """Handlers of the ML Metadata (contexts, artifacts, executions) and TensorBoard read routes."""

    def __init__(self, backend: TuningBackend) -> None:
        self.experiments = TuningExperiments(backend)

    def routes(self) -> list[Route]:
        table = []
        for v in API_VERSIONS:
            p = f"/{v}/projects/{{project}}/locations/{{location}}"
            store = f"{p}/metadataStores/{{store}}"
            run = f"{p}/tensorboards/{{tensorboard}}/experiments/{{experiment}}/runs/{{run}}"
            table += [
                Route("GET", f"{store}/contexts", self.list_contexts),
                Route("GET", f"{store}/contexts/{{context}}", self.get_context),
                Route("GET", f"{store}/artifacts", self.list_artifacts),
                Route("GET", f"{store}/artifacts/{{artifact}}", self.get_artifact),
                Route("GET", f"{store}/executions", self.list_executions),
                Route("GET", f"{store}/executions/{{execution}}", self.get_execution),
                Route("GET", f"{p}/tensorboards/{{tensorboard}}", self.get_tensorboard),
                Route("GET", f"{p}/tensorboards/{{tensorboard}}:batchRead", self.batch_read_time_series_data),
                Route("GET", f"{p}/tensorboards/{{tensorboard}}/experiments/{{experiment}}",
                      self.get_tensorboard_experiment),
                Route("GET", run, self.get_tensorboard_run),
                Route("GET", f"{run}/timeSeries", self.list_time_series),
                Route("GET", f"{run}/timeSeries/{{series}}", self.get_time_series),
                Route("GET", f"{run}/timeSeries/{{series}}:read", self.read_time_series_data),
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
