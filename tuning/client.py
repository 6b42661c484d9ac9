"""Thin adapter over the official google-cloud-aiplatform v1 clients (REST transport) for tuning jobs.

The provider and the CLI call these methods; nothing else in the project builds Vertex AI URLs. Jobs go in and come
out as the official `aiplatform_v1.TuningJob`. The clients load in about a second, so they are imported on first
use (in the methods of `TuningApi`): the provider's check and diff, which `pulumi preview` runs, import this module
but never call it.

Retries (this module holds the policy that `storage`, `prediction` and `models_api` use too): 408, 429, 5xx and
connection errors are retried with jittered exponential backoff by `google.api_core.retry.Retry`, for at most
`RetryPolicy.deadline` seconds over all attempts of one call (`TT_RETRY_DEADLINE`, default 120); other 4xx never.
Only calls that are safe to repeat get a retry: reads, cancel (idempotent), and tuningJobs.create through
`create_or_adopt`, which looks for the job's idempotency label before every attempt. A call that fails for good
raises `ApiCallError`, one line naming the call, the resource and what to do.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator, Optional
from urllib.parse import urlsplit

import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials

from tuning.api_target import ApiTarget as ApiTarget  # re-exported: callers build targets from tuning.client
from tuning.errors import ApiCallError, ApiError, ConfigError, TuningError, rpc_status_of_http
from tuning.limits import ALL_METRICS
from tuning.polling import Backoff, DeadlineExceeded, poll_until

if TYPE_CHECKING:
    from google.cloud.aiplatform_v1 import JobState, TuningJob

log = logging.getLogger(__name__)

# The one setting of the retries: seconds all attempts of one call may take together (tests set a few seconds).
RETRY_DEADLINE_ENV = "TT_RETRY_DEADLINE"
DEFAULT_RETRY_DEADLINE = 120.0
# Upper bound of one HTTP attempt (see `RetryPolicy.attempt_timeout`).
REQUEST_TIMEOUT = 60.0
# After a create whose answer was lost or late, how long to look for the job before creating again: at most this,
# and at most an eighth of the retry deadline (so that a short deadline still leaves room for more attempts).
CREATE_GRACE_SECONDS = 15.0

# HTTP statuses worth another attempt: the request may succeed later (the list google-cloud-storage uses).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Transport failures worth another attempt: no connection, a connection lost mid-answer, no answer in time.
TRANSIENT_TRANSPORT_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                              requests.exceptions.ChunkedEncodingError, auth_exceptions.TransportError, ConnectionError)


def http_status(error: BaseException) -> Optional[int]:
    """The HTTP status an error carries: a Google API error's code, or the status of the response it wraps."""
    if isinstance(error, gexc.GoogleAPICallError) and isinstance(error.code, int):
        return error.code
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _error_envelope(error: BaseException) -> dict[str, Any]:
    """The `error` object of Google's JSON envelope (`{"error": {"code", "status", "message"}}`) in the response an
    error carries; empty when there is no response, it is not JSON, or not Google's envelope."""
    response = getattr(error, "response", None)
    if response is None:
        return {}
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - not JSON, or not a response with .json(): no envelope
        return {}
    envelope = body.get("error") if isinstance(body, dict) else None
    return envelope if isinstance(envelope, dict) else {}


def rpc_status(error: BaseException) -> str:
    """The google.rpc status name of an API's error answer: the `error.status` of Google's envelope, else the one
    of the exception's class, else the one of its HTTP status (`UNKNOWN` without one)."""
    status = _error_envelope(error).get("status")
    if isinstance(status, str) and status:
        return status
    grpc_code = getattr(error, "grpc_status_code", None)
    if grpc_code is not None:
        return str(grpc_code.name)
    return rpc_status_of_http(http_status(error) or 0)


def answered(error: BaseException, message: str) -> ApiError:
    """The `ApiError` of an API's error answer, explained by `message`."""
    return ApiError(http_status(error) or 0, rpc_status(error), message)


def is_retryable(error: BaseException) -> bool:
    """429, 408, 5xx and transport errors: the predicate of every `Retry` built by `RetryPolicy.retry`."""
    status = http_status(error)
    if status is not None:
        return status in RETRYABLE_STATUSES
    return isinstance(error, TRANSIENT_TRANSPORT_ERRORS)


def api_cause(error: BaseException) -> BaseException:
    """The API error behind `error`: itself, or the first Google API or transport error among its causes (the
    aiplatform SDK, for one, raises `ValueError("Failed to get experiment row ...") from <the API error>`)."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        if http_status(seen) is not None or isinstance(seen, (TRANSIENT_TRANSPORT_ERRORS, gexc.RetryError)):
            return seen
        seen = seen.__cause__
    return error


def is_retryable_cause(error: BaseException) -> bool:
    """`is_retryable` of the API error behind `error` (for calls through code that wraps API errors)."""
    return is_retryable(api_cause(error))


@dataclass(frozen=True)
class RetryPolicy:
    """How calls retry: backoff from `backoff.initial` to `backoff.maximum` seconds (api_core adds jitter), for at
    most `deadline` seconds over all attempts of one call."""

    backoff: Backoff = Backoff(initial=0.5, maximum=10.0, multiplier=2.0)
    deadline: float = DEFAULT_RETRY_DEADLINE

    @classmethod
    def from_environment(cls) -> "RetryPolicy":
        """The policy with the deadline of `TT_RETRY_DEADLINE` (seconds), or the default of 120 s.

        Raises:
            ConfigError: the variable is set to something other than a positive number.
        """
        text = os.environ.get(RETRY_DEADLINE_ENV, "").strip()
        if not text:
            return cls()
        try:
            deadline = float(text)
        except ValueError:
            deadline = 0.0
        if not 0 < deadline < float("inf"):
            raise ConfigError(RETRY_DEADLINE_ENV, f"expected a number of seconds > 0, got {text!r}")
        return cls(deadline=deadline)

    @property
    def attempt_timeout(self) -> float:
        """How long one attempt may wait for an answer: `REQUEST_TIMEOUT`, but never more than half the deadline,
        so that a call that times out once still gets a second attempt."""
        return min(REQUEST_TIMEOUT, max(1.0, self.deadline / 2))

    def retry(self, predicate: Callable[[BaseException], bool] = is_retryable,
              on_error: Optional[Callable[[BaseException], None]] = None) -> gretry.Retry:
        return gretry.Retry(predicate=predicate, initial=self.backoff.initial, maximum=self.backoff.maximum,
                            multiplier=self.backoff.multiplier, timeout=self.deadline, on_error=on_error)


# -- failures as one line ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Service:
    """A Google service as failure messages name it, and the role a caller needs for it."""

    name: str
    role: str


VERTEX_AI = Service("Vertex AI", "Vertex AI User (roles/aiplatform.user)")
CLOUD_STORAGE = Service("Cloud Storage", "Storage Admin (roles/storage.admin)")
_WAIT_LONGER = f"{RETRY_DEADLINE_ENV}=SECONDS retries longer"
_URL_PREFIX = re.compile(r"^[A-Z]+ \S+: ")


def missing_credentials(call: str, resource: str) -> ApiCallError:
    return ApiCallError(call=call, resource=resource, kind="unauthenticated",
                        problem="no Google credentials found (application default credentials)",
                        advice="sign in with `gcloud auth application-default login`, or set "
                               "GOOGLE_APPLICATION_CREDENTIALS to a key file")


def service_message(error: BaseException, limit: int = 240) -> str:
    """What the service said (the `error.message` of Google's envelope), else the error's own text; shortened."""
    text = _error_envelope(error).get("message", "")
    if not text:
        text = getattr(error, "message", None) or str(error)
        text = _URL_PREFIX.sub("", text)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _host_of(error: BaseException, target: ApiTarget, service: Service) -> str:
    url = getattr(getattr(error, "request", None), "url", None)
    if url:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
    if target.emulator_endpoint:
        return target.emulator_endpoint
    return "storage.googleapis.com" if service is CLOUD_STORAGE else target.api_endpoint


def call_failure(error: BaseException, *, call: str, resource: str, target: ApiTarget, service: Service,
                 policy: RetryPolicy, retried_for: Optional[float]) -> Optional[ApiCallError]:
    """The one-line `ApiCallError` for an error a call ended with; None for errors that are not API failures.

    `retried_for`: seconds spent retrying when the retry deadline ran out (the error is then the last attempt's),
    None when the error ended the call at once.
    """
    if isinstance(error, (auth_exceptions.RefreshError, auth_exceptions.InvalidOperation)):
        # A 401 makes the session refresh its credentials; these could not be (revoked, expired, anonymous).
        return ApiCallError(call=call, resource=resource, kind="unauthenticated", code=401,
                            problem=f"not authenticated (401 Unauthorized, and the credentials cannot be refreshed: "
                                    f"{service_message(error)})",
                            advice="sign in again with `gcloud auth application-default login`, or check "
                                   "GOOGLE_APPLICATION_CREDENTIALS")
    if isinstance(error, auth_exceptions.DefaultCredentialsError):
        return missing_credentials(call, resource)
    status = http_status(error)
    after = f", still after retrying for {retried_for:.1f}s" if retried_for is not None else ""

    def failure(kind: str, problem: str, advice: str) -> ApiCallError:
        return ApiCallError(call=call, resource=resource, code=status or 0, kind=kind, problem=problem, advice=advice)

    if status is None:
        if not isinstance(error, TRANSIENT_TRANSPORT_ERRORS):
            return None
        host = _host_of(error, target, service)
        if isinstance(error, requests.exceptions.Timeout) and not isinstance(error, requests.exceptions.ConnectTimeout):
            return failure("timeout", problem=f"no answer from {host} within {policy.attempt_timeout:.0f}s{after}",
                           advice=f"the service is slow or overloaded: try again later ({_WAIT_LONGER})")
        if target.emulator_endpoint:
            advice = ("is the emulator running there? start it (python -m emulator.background start) or point to "
                      "the right one (stack config translation-tuning:emulatorEndpoint, or --emulator URL)")
        else:
            advice = "check the network connection, proxy and firewall, then try again"
        reason = "connection refused" if "refused" in str(error).lower() else "connection failed"
        return failure("unreachable", problem=f"cannot connect to {host} ({reason}){after}", advice=advice)
    said = service_message(error)
    if status == 429:
        return failure("quota", problem=f"quota exceeded or rate-limited ({_status_text(status)}: {said}){after}",
                       advice=f"wait a few minutes and try again, or ask for a higher {service.name} quota "
                              f"in project {target.project} (console: IAM & Admin > Quotas)")
    if status == 401:
        return failure("unauthenticated", problem=f"not authenticated ({_status_text(status)}: {said})",
                       advice="sign in again with `gcloud auth application-default login`, or check "
                              "GOOGLE_APPLICATION_CREDENTIALS")
    if status == 403:
        return failure("permission-denied", problem=f"permission denied ({_status_text(status)}: {said})",
                       advice=f"grant the caller's account {service.role} on project {target.project}, or "
                              "run with other credentials (gcloud auth application-default login)")
    if retried_for is not None:
        return failure("retries-exhausted", problem=f"{_status_text(status)} ({said}){after}",
                       advice=f"the service is failing or overloaded: try again later ({_WAIT_LONGER})")
    return failure("rejected", problem=f"{_status_text(status)}: {said}", advice="")


@contextmanager
def calling(call: str, resource: str, target: ApiTarget, policy: RetryPolicy,
            service: Service = VERTEX_AI) -> Iterator[None]:
    """Run one API call: what it raises for good leaves as a one-line `ApiCallError`.

    Errors the block handles itself (a 404 that means "gone", a 409 that means "exists") never get here; a
    `TuningError` passes unchanged; errors that are not API failures (bugs) keep their traceback.
    """
    name = f"{service.name} {call}"
    started = time.monotonic()
    try:
        yield
    except TuningError:
        raise
    except Exception as raised:  # noqa: BLE001 - classified below; anything unknown is re-raised as it is
        error = api_cause(raised)
        if not isinstance(error, gexc.RetryError):
            failure = call_failure(error, call=name, resource=resource, target=target, service=service,
                                   policy=policy, retried_for=None)
            if failure is None:
                raise
            raise failure from raised
        last = api_cause(error.cause) if error.cause is not None else error
        failure = call_failure(last, call=name, resource=resource, target=target, service=service, policy=policy,
                               retried_for=time.monotonic() - started)
        if failure is None:
            raise
        raise failure from raised


# The aiplatform SDK reads its endpoint, transport and credentials from one process-wide config;
# `_sdk_targeting` swaps it in and back under this lock so concurrent callers never see each other's target.
_SDK_CONFIG_LOCK = threading.Lock()


class TuningApi:
    """tuningJobs create/get/list/cancel and the job's metrics, against Vertex AI or the emulator."""

    def __init__(self, target: ApiTarget, *, credentials: Optional[Credentials] = None,
                 retry_policy: Optional[RetryPolicy] = None) -> None:
        self.target = target
        self.retry_policy = retry_policy or RetryPolicy.from_environment()
        from google.cloud.aiplatform_v1 import GenAiTuningServiceClient  # on first use: about a second to load

        self._client = target.rest_client(GenAiTuningServiceClient, credentials)

    def _calling(self, call: str, resource: str) -> AbstractContextManager[None]:
        return calling(call, resource, self.target, self.retry_policy)

    # -- jobs --------------------------------------------------------------------------------------

    def create_tuning_job(self, job: TuningJob) -> TuningJob:
        """tuningJobs.create, once: a retried create could start a second job (`create_or_adopt` retries safely)."""
        with self._calling("tuningJobs.create", f"in {self.target.parent}"):
            return self._create_once(job)

    def _create_once(self, job: TuningJob) -> TuningJob:
        return self._client.create_tuning_job(parent=self.target.parent, tuning_job=job, retry=None,
                                              timeout=self.retry_policy.attempt_timeout)

    def get_tuning_job(self, name: str) -> Optional[TuningJob]:
        """tuningJobs.get (retried: a read); None when the job does not exist (404)."""
        with self._calling("tuningJobs.get", name):
            try:
                return self._client.get_tuning_job(name=name, retry=self.retry_policy.retry(),
                                                   timeout=self.retry_policy.attempt_timeout)
            except gexc.NotFound:
                return None

    def list_tuning_jobs(self, filter: str = "", page_size: int = 100) -> Iterator[TuningJob]:
        """tuningJobs.list, following pages (each page retried: a read)."""
        with self._calling("tuningJobs.list", f"in {self.target.parent}"):
            yield from self._list(filter, page_size, self.retry_policy.retry())

    def _list(self, filter: str, page_size: int, retry: Optional[gretry.Retry]) -> Iterator[TuningJob]:
        from google.cloud.aiplatform_v1 import ListTuningJobsRequest

        request = ListTuningJobsRequest(parent=self.target.parent, filter=filter, page_size=page_size)
        yield from self._client.list_tuning_jobs(request=request, retry=retry,
                                                 timeout=self.retry_policy.attempt_timeout)

    def find_by_label(self, key: str, value: str, states: Optional[Collection[JobState]] = None) -> Optional[TuningJob]:
        """The newest job carrying label key=value (and in one of `states`, when given), if any."""
        with self._calling("tuningJobs.list", f"in {self.target.parent}"):
            return self._find_by_label(key, value, states, self.retry_policy.retry())

    def _find_by_label(self, key: str, value: str, states: Optional[Collection[JobState]],
                       retry: Optional[gretry.Retry]) -> Optional[TuningJob]:
        for job in self._list(f'labels.{key}="{value}"', 100, retry):
            # Checked here too: the label filter of tuningJobs.list is not documented, and adopting (and
            # later cancelling) a job that is not ours would be far worse than a second list call.
            if job.labels.get(key) == value and (states is None or job.state in states):
                return job
        return None

    def cancel_tuning_job(self, name: str) -> bool:
        """tuningJobs.cancel (retried: cancelling twice is cancelling once); False when the job is gone (404) or
        already ended (FAILED_PRECONDITION, also the answer to a retry whose first cancel ended the job)."""
        with self._calling("tuningJobs.cancel", name):
            try:
                self._client.cancel_tuning_job(name=name, retry=self.retry_policy.retry(),
                                               timeout=self.retry_policy.attempt_timeout)
                return True
            except (gexc.NotFound, gexc.FailedPrecondition):
                return False
            except gexc.BadRequest as error:
                if "FAILED_PRECONDITION" in str(error) or "Cannot cancel" in str(error):
                    return False
                raise

    def create_or_adopt(self, job: TuningJob, label_key: str, label_value: str, *,
                        adoptable: Optional[Collection[JobState]] = None) -> tuple[TuningJob, bool]:
        """Create the job unless one with the idempotency label already exists; (job, created).

        The whole find-or-create step is retried by one `Retry` within the deadline. A create that fails with a
        retryable error (a lost or late answer) may still have started the job, so every attempt first looks for
        the label, and after a failed create the label is looked for a while (`CREATE_GRACE_SECONDS` at most, never
        past the deadline) before the next attempt: a retry adopts that job instead of starting a second one.
        """
        deadline = time.monotonic() + self.retry_policy.deadline

        def attempt() -> tuple[TuningJob, bool]:
            existing = self._find_by_label(label_key, label_value, adoptable, retry=None)
            if existing is not None:
                return existing, False
            try:
                return self._create_once(job), True
            except Exception as error:
                if not is_retryable(error):
                    raise
                log.info("tuningJobs.create failed (%s); looking for the job before creating again", error)
                grace = min(CREATE_GRACE_SECONDS, self.retry_policy.deadline / 8, deadline - time.monotonic())
                late = self._await_label(label_key, label_value, adoptable, grace)
                if late is not None:
                    return late, False
                raise

        with self._calling("tuningJobs.create", f"in {self.target.parent}"):
            return self.retry_policy.retry()(attempt)()

    def _await_label(self, key: str, value: str, states: Optional[Collection[JobState]],
                     seconds: float) -> Optional[TuningJob]:
        def look() -> Optional[TuningJob]:
            try:
                return self._find_by_label(key, value, states, retry=None)
            except Exception as error:  # noqa: BLE001 - a failed look is "not seen yet"; others are raised
                if is_retryable(error):
                    return None
                raise

        if seconds <= 0:
            return None
        try:
            return poll_until(look, lambda job: job is not None, timeout=seconds,
                              backoff=Backoff(initial=1.0, maximum=5.0))
        except DeadlineExceeded:
            return None

    # -- metrics -----------------------------------------------------------------------------------

    def latest_metrics(self, job: TuningJob) -> dict[str, float]:
        """Latest value of each computed metric, keyed by its seed name without the leading slash.

        On the emulator this reads its documented metrics route; on Vertex AI the metrics live in the
        job's experiment (TensorBoard-backed), read with the aiplatform SDK. A metric not computed
        (yet) is absent, never zero. Both are reads, retried as a whole.
        """
        if not job.name or not job.state:
            return {}
        if self.target.emulator_endpoint:
            return {name: points[-1][1] for name, points in self.metric_series(job).items()}
        latest = self.experiment_metrics(job)
        return {name.lstrip("/"): _metric_value(name, latest[name]) for name in ALL_METRICS if name in latest}

    def experiment_metrics(self, job: TuningJob) -> dict[str, float]:
        """The latest metric values from the job's Vertex AI experiment (ML Metadata and TensorBoard reads), as
        `aiplatform.Experiment(...).get_data_frame()` reads them; the whole read is retried (it only reads)."""
        if not job.experiment:
            return {}
        with self._calling("experiment read (ML Metadata, TensorBoard)", job.experiment):
            return self.retry_policy.retry(is_retryable_cause)(self._experiment_metrics)(job)

    def _experiment_metrics(self, job: TuningJob) -> dict[str, float]:
        if not job.experiment:
            return {}
        from google.cloud import aiplatform  # heavy import; only real GCP stacks need it

        from tuning.vertex import experiment_id

        with self._sdk_targeting():
            frame = aiplatform.Experiment(experiment_id(job)).get_data_frame()
        if frame.empty:
            return {}
        row = frame.iloc[0]
        prefix = "time_series_metric."
        return {column[len(prefix):]: float(row[column]) for column in frame.columns
                if column.startswith(prefix) and row[column] == row[column]}

    def metric_series(self, job: TuningJob) -> dict[str, list[tuple[int, float]]]:
        """Every computed point of each metric, `{name: [(step, value), ...]}` in step order, names without the
        leading slash. On the emulator its metrics route; on Vertex AI the TensorBoard time series of the job's
        experiment runs. A read, retried as a whole."""
        if not job.name or not job.state:
            return {}
        emulator = self.target.emulator_endpoint
        if emulator:
            with self._calling("metrics read", f"of {job.name}"):
                raw = self.retry_policy.retry()(self._emulator_metric_series)(emulator, job.name)
        else:
            raw = self.experiment_series(job)
        return {name.lstrip("/"): sorted(raw[name]) for name in ALL_METRICS if raw.get(name)}

    def experiment_series(self, job: TuningJob) -> dict[str, list[tuple[int, float]]]:
        """Every point of each metric from the TensorBoard time series of the job's experiment runs, as
        `ExperimentRun.get_time_series_data_frame()` reads them (names as the experiment has them); retried as a
        whole (it only reads)."""
        if not job.experiment:
            return {}
        with self._calling("experiment read (ML Metadata, TensorBoard)", job.experiment):
            return self.retry_policy.retry(is_retryable_cause)(self._experiment_series)(job)

    def _emulator_metric_series(self, emulator: str, job_name: str) -> dict[str, list[tuple[int, float]]]:
        url = f"{emulator.rstrip('/')}/_emulator/v1/{job_name}/metrics"
        response = requests.get(url, timeout=self.retry_policy.attempt_timeout)
        if response.status_code == 404:
            return {}
        if response.status_code >= 400:
            raise gexc.from_http_response(response)
        return {name: [(int(point["step"]), _metric_value(name, point["value"])) for point in points]
                for name, points in response.json().get("series", {}).items()}

    def _experiment_series(self, job: TuningJob) -> dict[str, list[tuple[int, float]]]:
        from google.cloud import aiplatform  # heavy import; only real GCP stacks need it

        from tuning.vertex import experiment_id

        series: dict[str, list[tuple[int, float]]] = {}
        with self._sdk_targeting():
            for run in aiplatform.ExperimentRun.list(experiment=experiment_id(job)):
                frame = run.get_time_series_data_frame()
                for name in (column for column in frame.columns if column not in ("step", "wall_time")):
                    points = frame[["step", name]].dropna()
                    series.setdefault(name if name.startswith("/") else f"/{name}", []).extend(
                        (int(step), _metric_value(name, value)) for step, value in points.itertuples(index=False))
        return series

    @contextmanager
    def _sdk_targeting(self) -> Iterator[None]:
        """Point the aiplatform SDK at this API's target for the block, then put its global config back.

        Same target as the GAPIC client: the emulator's endpoint with anonymous credentials, or the regional
        endpoint with ADC; REST either way. The SDK only takes these through its global config (`init`), so
        it is set for the block and put back as it was (init also resets the experiment tracker). The SDK's own
        retry of its get calls (120 s, `base._DEFAULT_RETRY`) is switched off meanwhile: the caller retries the
        whole read within its deadline, and two nested retries would double it.
        """
        from google.cloud import aiplatform
        from google.cloud.aiplatform import base as sdk_base
        from google.cloud.aiplatform import initializer
        from google.cloud.aiplatform.metadata import metadata

        emulator = self.target.emulator_endpoint
        with _SDK_CONFIG_LOCK:
            saved = [(state, dict(vars(state))) for state in (initializer.global_config, metadata._experiment_tracker)]
            saved_retry = sdk_base._DEFAULT_RETRY
            try:
                # None: no retry (the SDK passes it on as `retry=`); its inferred type is the Retry it starts with.
                sdk_base._DEFAULT_RETRY = None  # type: ignore[assignment]
                aiplatform.init(project=self.target.project, location=self.target.location,
                                api_endpoint=self.target.api_endpoint,
                                api_transport="rest", credentials=AnonymousCredentials() if emulator else None)
                yield
            finally:
                sdk_base._DEFAULT_RETRY = saved_retry
                for state, attributes in saved:
                    vars(state).clear()
                    vars(state).update(attributes)


def _metric_value(name: str, value: Any) -> float | int:
    """Counts (`*_num_predictions`) as ints, losses and accuracies as floats."""
    return int(value) if name.endswith("_num_predictions") else float(value)

