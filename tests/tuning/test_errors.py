"""tuning.errors: one hierarchy, and an API's answer told by HTTP status and google.rpc status name."""

from __future__ import annotations

import pytest

from tuning.errors import ApiCallError, ApiError, NotFoundError, TuningError, WaitTimeoutError, rpc_status_of_http


def test_an_api_answer_says_its_http_status_and_rpc_status_name():
    error = ApiError(400, "FAILED_PRECONDITION", "model m is still deployed")
    assert str(error) == "400 FAILED_PRECONDITION: model m is still deployed"
    assert (error.code, error.status, error.message) == (400, "FAILED_PRECONDITION", "model m is still deployed")


def test_rpc_status_names_of_http_statuses():
    assert [rpc_status_of_http(code) for code in (404, 429, 502, 418, 0)] == [
        "NOT_FOUND", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "UNKNOWN"]


def test_a_failed_call_has_a_status_only_when_the_service_answered():
    answered = ApiCallError(call="c", resource="r", problem="p", advice="", kind="quota", code=429)
    unreachable = ApiCallError(call="c", resource="r", problem="p", advice="a", kind="unreachable")
    assert (answered.status, unreachable.status) == ("RESOURCE_EXHAUSTED", None)
    assert str(unreachable) == "c r: p; a"


def test_not_found_and_timeouts_are_their_own_types_under_the_root():
    missing = NotFoundError("endpoint", "projects/p/locations/l/endpoints/1")
    assert str(missing) == "endpoint projects/p/locations/l/endpoints/1 not found"
    assert not isinstance(missing, ApiError) and isinstance(missing, TuningError)
    with pytest.raises(TimeoutError):
        raise WaitTimeoutError("still running", 120)
    assert issubclass(WaitTimeoutError, TuningError) and not issubclass(ApiCallError, ApiError)
