"""The project's error hierarchy. Library code (tuning/, resources/) raises these and never exits the process: the
CLI turns them into an `error:` line and an exit status, the Pulumi program and the providers into one error line.

    TuningError                  root: catch this to catch everything we raise on purpose
    ├── ConfigError              a stack config key, CLI argument or environment variable is invalid (names it)
    ├── DatasetError             a dataset file breaks a rule (names file, line, field, rule)
    ├── ApiError                 an API answered with an error that the caller explains (a model still deployed,
    │                            a bucket not empty): HTTP status and google.rpc status name, `400 FAILED_PRECONDITION`
    ├── ApiCallError             a call failed for good (retries exhausted, unreachable, no answer in time, 401/403,
    │                            quota, a rejected request): one line naming the call, the resource and what to do
    ├── NotFoundError            a resource named by the user or the state does not exist (a 404, or not listed)
    ├── WaitTimeoutError         we stopped waiting for something that is still going on (also a `TimeoutError`)
    ├── EmptyAnswerError         an API call succeeded but its answer holds nothing to use (no candidate)
    ├── JobFailedError           the tuning job ended FAILED, CANCELLED or EXPIRED
    └── EmulatorError            the background emulator did not start or does not answer (names its log)
"""

from __future__ import annotations

from typing import Optional

# The google.rpc code an HTTP status stands for, when the answer does not name one (each google.rpc code is
# defined with the HTTP status it maps to; 412 is how Cloud Storage answers a failed precondition).
_RPC_STATUS_OF_HTTP = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                       409: "ABORTED", 412: "FAILED_PRECONDITION", 416: "OUT_OF_RANGE", 429: "RESOURCE_EXHAUSTED",
                       499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
                       504: "DEADLINE_EXCEEDED"}


def rpc_status_of_http(code: int) -> str:
    """The google.rpc status name an HTTP status stands for (`404` → `NOT_FOUND`); `UNKNOWN` when none does."""
    return _RPC_STATUS_OF_HTTP.get(code, "INTERNAL" if 500 <= code < 600 else "UNKNOWN")


class TuningError(Exception):
    """Root of every error this project raises deliberately."""


class ConfigError(TuningError):
    """A configuration value is invalid; the message names the key and the rule."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class DatasetError(TuningError):
    """A dataset breaks one or more rules; `problems` holds each listed `file:line: field: rule` entry.

    `omitted` counts further problems that were found but not listed (reports cap their lists).
    """

    MAX_SHOWN = 20

    def __init__(self, problems: list[str], omitted: int = 0) -> None:
        shown = problems[:self.MAX_SHOWN]
        more = len(problems) - len(shown) + omitted
        text = "\n".join(shown) + (f"\n... and {more} more problems" if more > 0 else "")
        super().__init__(text)
        self.problems = problems
        self.omitted = omitted


class ApiError(TuningError):
    """An API answered with an error; `code` is the HTTP status, `status` the google.rpc status name.

    `400 FAILED_PRECONDITION: model M is still deployed to E; undeploy it first (...)`.
    """

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(f"{code} {status}: {message}")
        self.code = code
        self.status = status
        self.message = message


class ApiCallError(TuningError):
    """A call to Vertex AI or Cloud Storage failed for good; the message is one line.

    `{call} {resource}: {problem}; {advice}`, for example
    `Vertex AI tuningJobs.create in projects/p/locations/us-central1: 503 Service Unavailable (<the service's
    message>), still after retrying for 117.2s; the service is failing or overloaded: try again later
    (TT_RETRY_DEADLINE=SECONDS retries longer)`.

    `kind` says which expected failure it is: one of `KINDS`. `code` is the HTTP status of the last answer, 0 when
    there was none (a refused connection, no answer in time).
    """

    KINDS = ("retries-exhausted", "quota", "timeout", "unreachable", "permission-denied", "unauthenticated",
             "rejected")

    def __init__(self, *, call: str, resource: str, problem: str, advice: str, kind: str, code: int = 0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        line = f"{call} {resource}: {problem}" + (f"; {advice}" if advice else "")
        super().__init__(" ".join(line.split()))  # one line, whatever the service's message held
        self.code = code
        self.call = call
        self.resource = resource
        self.problem = problem
        self.advice = advice
        self.kind = kind

    @property
    def status(self) -> Optional[str]:
        """The google.rpc status name of the last answer; None when the service did not answer."""
        return rpc_status_of_http(self.code) if self.code else None

    def with_advice(self, advice: str) -> "ApiCallError":
        """The same failure with other advice (a caller that knows better what to do next)."""
        return ApiCallError(call=self.call, resource=self.resource, problem=self.problem, advice=advice,
                            kind=self.kind, code=self.code)


class NotFoundError(TuningError):
    """A resource does not exist; `kind` is what it is (`tuning job`, `endpoint`, `model`), `name` its name."""

    def __init__(self, kind: str, name: str, message: Optional[str] = None) -> None:
        super().__init__(message or f"{kind} {name} not found")
        self.kind = kind
        self.name = name


class WaitTimeoutError(TuningError, TimeoutError):
    """We stopped waiting after `seconds` for something that has not finished (an operation, a cancel)."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class EmptyAnswerError(TuningError):
    """A call succeeded but its answer holds nothing to use (a generateContent answer without a candidate)."""


class JobFailedError(TuningError):
    """The tuning job ended without success."""

    def __init__(self, job_name: str, state: str, message: str) -> None:
        super().__init__(f"tuning job {job_name} ended {state}: {message}")
        self.job_name = job_name
        self.state = state


class EmulatorError(TuningError):
    """The project's background emulator could not be started or reused; the message says where to look."""


