"""The project's error hierarchy.

    TuningError                      root: catch this to catch everything we raise on purpose
    ├── ConfigError                  a stack config key or CLI argument is invalid (names the key)
    ├── DatasetError                 a dataset file breaks a rule (names file, line, field, rule)
    ├── ApiError                     Vertex AI / GCS answered with an error we do not retry
    │   └── ApiCallError             a call failed for good (retries exhausted, unreachable, timed out, 403,
    │                                quota, ...): one line naming the call, the resource and what to do
    ├── JobFailedError               the tuning job ended FAILED, CANCELLED or EXPIRED
    └── EmulatorError                the background emulator did not start or does not answer (names its log)
"""

from __future__ import annotations


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
    """A non-retryable error answered by the API; `code` is the HTTP status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class ApiCallError(ApiError):
    """A call to Vertex AI or Cloud Storage failed for good; the message is one line.

    `{call} {resource}: {problem}; {advice}`, for example
    `Vertex AI tuningJobs.create in projects/p/locations/us-central1: 503 Service Unavailable (<the service's
    message>), still after retrying for 117.2s; the service is failing or overloaded: try again later
    (TT_RETRY_DEADLINE=SECONDS retries longer)`.

    `kind` says which expected failure it is: one of `KINDS`. `code` is the HTTP status (0 when there was none,
    such as a refused connection).
    """

    KINDS = ("retries-exhausted", "quota", "timeout", "unreachable", "permission-denied", "unauthenticated",
             "rejected")

    def __init__(self, *, call: str, resource: str, problem: str, advice: str, kind: str, code: int = 0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        line = f"{call} {resource}: {problem}" + (f"; {advice}" if advice else "")
        TuningError.__init__(self, " ".join(line.split()))  # one line, whatever the service's message held
        self.code = code
        self.call = call
        self.resource = resource
        self.problem = problem
        self.advice = advice
        self.kind = kind

    def with_advice(self, advice: str) -> "ApiCallError":
        """The same failure with other advice (a caller that knows better what to do next)."""
        return ApiCallError(call=self.call, resource=self.resource, problem=self.problem, advice=advice,
                            kind=self.kind, code=self.code)


class JobFailedError(TuningError):
    """The tuning job ended without success."""

    def __init__(self, job_name: str, state: str, message: str) -> None:
        super().__init__(f"tuning job {job_name} ended {state}: {message}")
        self.job_name = job_name
        self.state = state


class EmulatorError(TuningError):
    """The project's background emulator could not be started or reused; the message says where to look."""
