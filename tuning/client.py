"""Thin adapter over the official google-cloud-aiplatform v1 clients (REST transport) for tuning jobs.

The provider and the CLI call these methods; nothing else in the project builds Vertex AI URLs.
Retries: 429, 5xx and connection errors are retried with backoff up to a deadline; other 4xx never.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Collection, Iterator, Optional

import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import aiplatform_v1
from google.protobuf import json_format

from tuning.errors import ApiError
from tuning.models import EVAL_METRICS, TRAIN_METRICS, JobState, TuningJob
from tuning.polling import Backoff, DeadlineExceeded, poll_until

log = logging.getLogger(__name__)

# Upper bound of one HTTP attempt; the retry deadline bounds all attempts together.
REQUEST_TIMEOUT = 60.0
# After a create whose answer was lost or late, how long to look for the job before creating again.
CREATE_GRACE_SECONDS = 15.0

RETRYABLE = (gexc.TooManyRequests, gexc.InternalServerError, gexc.BadGateway, gexc.ServiceUnavailable,
             gexc.GatewayTimeout, requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, RETRYABLE)


@dataclass(frozen=True)
class ApiTarget:
    """Where calls go: a GCP project and region, and optionally an emulator base URL (http://host:port)."""

    project: str
    location: str = "us-central1"
    emulator_endpoint: Optional[str] = None

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def api_endpoint(self) -> str:
        """The emulator's URL, or the regional Vertex AI host."""
        return self.emulator_endpoint or f"{self.location}-aiplatform.googleapis.com"

    def rest_client(self, client_class: type, credentials: Optional[Credentials] = None) -> Any:
        """A generated aiplatform_v1 client for this target over REST.

        REST, because the gRPC transport always uses TLS and cannot reach a plain-http emulator; the
        REST transport keeps an explicit http:// scheme (reference §2.3). The emulator gets anonymous
        credentials, since there is no ADC offline; Vertex AI gets `credentials` or ADC.
        """
        if self.emulator_endpoint:
            credentials = credentials or AnonymousCredentials()
        return client_class(client_options=ClientOptions(api_endpoint=self.api_endpoint), transport="rest",
                            credentials=credentials)


@dataclass(frozen=True)
class RetryPolicy:
    backoff: Backoff = Backoff(initial=0.5, maximum=10.0, multiplier=2.0)
    deadline: float = 120.0

    def retry(self) -> gretry.Retry:
        return gretry.Retry(predicate=is_retryable, initial=self.backoff.initial, maximum=self.backoff.maximum,
                            multiplier=self.backoff.multiplier, timeout=self.deadline)


# The aiplatform SDK reads its endpoint, transport and credentials from one process-wide config;
# `_experiment_metrics` swaps it in and back under this lock so concurrent callers never see each other's target.
_SDK_CONFIG_LOCK = threading.Lock()


def _api_error(error: gexc.GoogleAPICallError) -> ApiError:
    return ApiError(error.code or 0, error.message or str(error))


class TuningApi:
    """tuningJobs create/get/list/cancel and the job's metrics, against Vertex AI or the emulator."""

    def __init__(self, target: ApiTarget, *, credentials: Optional[Credentials] = None,
                 retry_policy: RetryPolicy = RetryPolicy()) -> None:
        self.target = target
        self._retry = retry_policy.retry()
        self._client = target.rest_client(aiplatform_v1.GenAiTuningServiceClient, credentials)

    # -- jobs --------------------------------------------------------------------------------------

    def create_tuning_job(self, job: TuningJob) -> TuningJob:
        """tuningJobs.create, without retries (a retried create could start a second job; see `create_or_adopt`)."""
        proto = json_format.ParseDict(job.to_wire(), aiplatform_v1.TuningJob.pb(aiplatform_v1.TuningJob()),
                                      ignore_unknown_fields=True)
        try:
            created = self._client.create_tuning_job(parent=self.target.parent,
                                                     tuning_job=aiplatform_v1.TuningJob.wrap(proto),
                                                     timeout=REQUEST_TIMEOUT)
        except gexc.GoogleAPICallError as error:
            if is_retryable(error):
                raise
            raise _api_error(error) from error
        return _to_model(created)

    def get_tuning_job(self, name: str) -> Optional[TuningJob]:
        """tuningJobs.get; None when the job does not exist (404)."""
        try:
            return _to_model(self._client.get_tuning_job(name=name, retry=self._retry, timeout=REQUEST_TIMEOUT))
        except gexc.NotFound:
            return None
        except gexc.GoogleAPICallError as error:
            raise _api_error(error) from error

    def list_tuning_jobs(self, filter: str = "", page_size: int = 100) -> Iterator[TuningJob]:
        """tuningJobs.list, following pages."""
        request = aiplatform_v1.ListTuningJobsRequest(parent=self.target.parent, filter=filter, page_size=page_size)
        try:
            for job in self._client.list_tuning_jobs(request=request, retry=self._retry, timeout=REQUEST_TIMEOUT):
                yield _to_model(job)
        except gexc.GoogleAPICallError as error:
            raise _api_error(error) from error

    def find_by_label(self, key: str, value: str, states: Optional[Collection[JobState]] = None) -> Optional[TuningJob]:
        """The newest job carrying label key=value (and in one of `states`, when given), if any."""
        for job in self.list_tuning_jobs(filter=f'labels.{key}="{value}"'):
            # Checked here too: the label filter of tuningJobs.list is not documented, and adopting (and
            # later cancelling) a job that is not ours would be far worse than a second list call.
            if (job.labels or {}).get(key) == value and (states is None or job.state in states):
                return job
        return None

    def cancel_tuning_job(self, name: str) -> bool:
        """tuningJobs.cancel; False when the job is gone (404) or already ended (FAILED_PRECONDITION)."""
        try:
            self._client.cancel_tuning_job(name=name, retry=self._retry, timeout=REQUEST_TIMEOUT)
            return True
        except (gexc.NotFound, gexc.FailedPrecondition):
            return False
        except gexc.BadRequest as error:
            if "FAILED_PRECONDITION" in str(error) or "Cannot cancel" in str(error):
                return False
            raise _api_error(error) from error
        except gexc.GoogleAPICallError as error:
            raise _api_error(error) from error

    def create_or_adopt(self, job: TuningJob, label_key: str, label_value: str, *,
                        adoptable: Optional[Collection[JobState]] = None,
                        retry_policy: RetryPolicy = RetryPolicy()) -> tuple[TuningJob, bool]:
        """Create the job unless one with the idempotency label already exists; (job, created).

        A create that fails with a retryable error may still have started a job, so every attempt
        first looks for the label: a retry adopts that job instead of starting a second one.
        """
        deadline = time.monotonic() + retry_policy.deadline
        last_error: Optional[BaseException] = None
        for delay in retry_policy.backoff.delays():
            try:
                existing = self.find_by_label(label_key, label_value, adoptable)
                if existing is not None:
                    return existing, False
                try:
                    return self.create_tuning_job(job), True
                except RETRYABLE as error:
                    # The create may have been served although its answer was lost or is late: look
                    # for the job a while before creating again.
                    last_error = error
                    late = self._await_label(label_key, label_value, adoptable, CREATE_GRACE_SECONDS)
                    if late is not None:
                        return late, False
            except RETRYABLE as error:
                last_error = error
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
        raise ApiError(503, f"creating the tuning job kept failing for {retry_policy.deadline:.0f}s: {last_error}")

    def _await_label(self, key: str, value: str, states: Optional[Collection[JobState]],
                     seconds: float) -> Optional[TuningJob]:
        try:
            return poll_until(lambda: self.find_by_label(key, value, states), lambda job: job is not None,
                              timeout=seconds, backoff=Backoff(initial=1.0, maximum=5.0))
        except DeadlineExceeded:
            return None

    # -- metrics -----------------------------------------------------------------------------------

    def latest_metrics(self, job: TuningJob) -> dict[str, float]:
        """Latest value of each computed metric, keyed by its seed name without the leading slash.

        On the emulator this reads its documented metrics route; on Vertex AI the metrics live in the
        job's experiment (TensorBoard-backed), read with the aiplatform SDK. A metric not computed
        (yet) is absent, never zero.
        """
        if not job.name or not job.state:
            return {}
        if self.target.emulator_endpoint:
            latest = self._retry(self._emulator_metrics)(job.name)
        else:
            latest = self._experiment_metrics(job)
        return {name.lstrip("/"): _metric_value(name, latest[name]) for name in TRAIN_METRICS + EVAL_METRICS
                if name in latest}

    def _emulator_metrics(self, job_name: str) -> dict[str, float]:
        """The emulator's documented metrics route (it has no official client); errors as Google's classes."""
        url = f"{self.target.emulator_endpoint.rstrip('/')}/_emulator/v1/{job_name}/metrics"
        response = requests.get(url, timeout=REQUEST_TIMEOUT)
        if response.status_code == 404:
            return {}
        if response.status_code >= 400:
            raise gexc.from_http_response(response)
        return response.json().get("latest", {})

    def _experiment_metrics(self, job: TuningJob) -> dict[str, float]:
        if not job.experiment:
            return {}
        from google.cloud import aiplatform  # heavy import; only real GCP stacks need it
        from google.cloud.aiplatform import initializer
        from google.cloud.aiplatform.metadata import metadata

        # Same target as the GAPIC client: the emulator's endpoint with anonymous credentials, or the regional
        # endpoint with ADC; REST either way. The SDK only takes these through its global config (`init`), so
        # it is set for this call and put back as it was (init also resets the experiment tracker).
        emulator = self.target.emulator_endpoint
        with _SDK_CONFIG_LOCK:
            saved = [(state, dict(vars(state))) for state in (initializer.global_config, metadata._experiment_tracker)]
            try:
                aiplatform.init(project=self.target.project, location=self.target.location,
                                api_endpoint=self.target.api_endpoint,
                                api_transport="rest", credentials=AnonymousCredentials() if emulator else None)
                frame = aiplatform.Experiment(job.experiment.rsplit("/", 1)[-1]).get_data_frame()
            finally:
                for state, attributes in saved:
                    vars(state).clear()
                    vars(state).update(attributes)
        if frame.empty:
            return {}
        row = frame.iloc[0]
        prefix = "time_series_metric."
        return {column[len(prefix):]: float(row[column]) for column in frame.columns
                if column.startswith(prefix) and row[column] == row[column]}


def _metric_value(name: str, value: Any) -> float | int:
    """Counts (`*_num_predictions`) as ints, losses and accuracies as floats."""
    return int(value) if name.endswith("_num_predictions") else float(value)


def _to_model(proto_job: Any) -> TuningJob:
    wire = json_format.MessageToDict(aiplatform_v1.TuningJob.pb(proto_job))
    return TuningJob.model_validate(wire)
