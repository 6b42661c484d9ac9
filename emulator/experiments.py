"""The Vertex AI Experiment of each tuning job: its ML Metadata and TensorBoard resources, derived from the job.

On Vertex AI a tuning job's metrics are not in the TuningJob: they live in its experiment (`TuningJob.experiment`,
an ML Metadata Context), whose run is backed by a Vertex AI TensorBoard run with one scalar time series per
metric. The aiplatform SDK reads them with `aiplatform.Experiment(...).get_data_frame()` and
`aiplatform.ExperimentRun(run, experiment=...).get_time_series_data_frame()`. These are exactly the resources
those calls walk, built from the emulator's state; nothing here is stored separately.

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
TensorBoard experiment id = experiment name, TensorBoard run id = run name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from emulator.errors import NotFound
from emulator.job_store import JobStore
from emulator.jobs import JobState, experiment_context_name, state_of
from tuning.limits import ALL_METRICS

EXPERIMENT_PREFIX = "tuning-experiment-"
RUN_NAME = "run"  # ExperimentRun name; its context id is `{experiment}-run`
TB_RUN_ARTIFACT_SUFFIX = "-tb-run"  # the SDK's constants._TB_RUN_ARTIFACT_POST_FIX_ID
SCHEMA_VERSION = "0.0.1"
# The ids of a job's experiment or run context, and of its TensorBoard run artifact, naming the job.
CONTEXT_ID = re.compile(rf"^{EXPERIMENT_PREFIX}(?P<job>.+?)(?P<run>-{RUN_NAME})?$")
ARTIFACT_ID = re.compile(rf"^{EXPERIMENT_PREFIX}(?P<job>.+)-{RUN_NAME}{TB_RUN_ARTIFACT_SUFFIX}$")

# ExperimentRun `_state` (an Execution.State name) for each job state.
_RUN_STATE = {JobState.JOB_STATE_SUCCEEDED: "COMPLETE", JobState.JOB_STATE_FAILED: "FAILED",
              JobState.JOB_STATE_EXPIRED: "FAILED", JobState.JOB_STATE_CANCELLED: "CANCELLED"}


def _series_id(metric: str) -> str:
    """`/train_total_loss` → `train-total-loss` (TensorBoard ids match `[a-z0-9][a-z0-9-]*`)."""
    return metric.lstrip("/").replace("_", "-")


_METRIC_BY_SERIES_ID = {_series_id(metric): metric for metric in ALL_METRICS}


@dataclass(frozen=True)
class Node:
    """One metadata resource: its JSON body and, for artifacts and executions, the contexts it belongs to."""

    body: dict[str, Any]
    contexts: tuple[str, ...] = ()


class JobExperiment:
    """The experiment resources of one tuning job, built from the job body and (read on first use) its metric points."""

    def __init__(self, job: dict[str, Any], jobs: JobStore) -> None:
        self.job, self._jobs = job, jobs
        self.parent, _, self.job_id = job["name"].partition("/tuningJobs/")
        self.location = self.parent.rsplit("/", 1)[1]
        self.experiment_id = f"{EXPERIMENT_PREFIX}{self.job_id}"
        self.run_context_id = f"{self.experiment_id}-{RUN_NAME}"
        self.artifact_id = f"{self.run_context_id}{TB_RUN_ARTIFACT_SUFFIX}"
        self.tensorboard_name = f"{self.parent}/tensorboards/{self.job_id}"
        self.tb_experiment_name = f"{self.tensorboard_name}/experiments/{self.experiment_id}"
        self.tb_run_name = f"{self.tb_experiment_name}/runs/{RUN_NAME}"

    @cached_property
    def series(self) -> dict[str, list[dict[str, Any]]]:
        """`JobStore.metric_series` of the job: {metric: [{step, value, time}, ...]} in step order."""
        return self._jobs.metric_series(self.job_id)

    def _times(self) -> dict[str, Any]:
        created, updated = self.job.get("startTime") or self.job.get("createTime"), self.job.get("updateTime")
        return {"createTime": created, "updateTime": updated, "etag": updated}

    # --- ML Metadata ------------------------------------------------------------------------------

    def experiment_context(self) -> Node:
        return Node({
            "name": experiment_context_name(self.job["name"]),
            "displayName": self.experiment_id, "schemaTitle": "system.Experiment", "schemaVersion": SCHEMA_VERSION,
            "metadata": {"experiment_deleted": False, "backing_tensorboard_resource": self.tensorboard_name},
            **self._times(),
        })

    def run_context(self) -> Node:
        state = _RUN_STATE.get(state_of(self.job), "RUNNING")
        return Node({
            "name": f"{self.parent}/metadataStores/default/contexts/{self.run_context_id}",
            "displayName": RUN_NAME, "schemaTitle": "system.ExperimentRun", "schemaVersion": SCHEMA_VERSION,
            "parentContexts": [self.experiment_context().body["name"]],
            "metadata": {"_params": {}, "_metrics": {}, "_state": state},
            **self._times(),
        })

    def tb_run_artifact(self) -> Node:
        return Node({
            "name": f"{self.parent}/metadataStores/default/artifacts/{self.artifact_id}",
            "displayName": self.artifact_id, "uri": f"https://{self.location}-aiplatform.googleapis.com/v1/"
                                                    f"{self.tb_run_name}",
            "state": "LIVE", "schemaTitle": "google.VertexTensorboardRun", "schemaVersion": SCHEMA_VERSION,
            "metadata": {"resourceName": self.tb_run_name, "vertex_experiment_tracking": True},
            **self._times(),
        }, contexts=(self.run_context().body["name"],))

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
        return [Node({
            "name": f"{self.tb_run_name}/timeSeries/{_series_id(metric)}", "displayName": metric,
            "valueType": "SCALAR", "pluginName": "scalars",
            "createTime": points[0]["time"], "updateTime": points[-1]["time"], "etag": points[-1]["time"],
            "metadata": {"maxStep": str(points[-1]["step"]), "maxWallTime": points[-1]["time"]},
        }) for metric in ALL_METRICS if (points := self.series.get(metric))]

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


def has_experiment(job: dict[str, Any]) -> bool:
    """Whether the job has its experiment (set from the moment it runs)."""
    return job.get("experiment") == experiment_context_name(job["name"])
