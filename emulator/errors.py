"""Google API errors, one class per canonical status (`grpc.StatusCode`), answered as the Google error envelope."""

from __future__ import annotations

from typing import Optional

from grpc import StatusCode
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class GoogleApiError(Exception):
    """`{"error": {"code": HTTP status, "message", "status": canonical name}}`.

    A subclass names the canonical status and its usual HTTP status; `http_status` overrides the latter where an
    API maps the status otherwise (Cloud Storage answers FAILED_PRECONDITION with 409 or 412, for example).
    """

    code = StatusCode.INTERNAL
    http_status = 500

    def __init__(self, message: str, *, http_status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        if http_status is not None:
            self.http_status = http_status

    @property
    def status(self) -> str:
        return self.code.name

    def to_response(self) -> Response:
        return JSONResponse({"error": {"code": self.http_status, "message": self.message, "status": self.status}},
                            status_code=self.http_status)


class Cancelled(GoogleApiError):
    code, http_status = StatusCode.CANCELLED, 499


class InvalidArgument(GoogleApiError):
    code, http_status = StatusCode.INVALID_ARGUMENT, 400


class DeadlineExceeded(GoogleApiError):
    code, http_status = StatusCode.DEADLINE_EXCEEDED, 504


class NotFound(GoogleApiError):
    code, http_status = StatusCode.NOT_FOUND, 404


class AlreadyExists(GoogleApiError):
    code, http_status = StatusCode.ALREADY_EXISTS, 409


class PermissionDenied(GoogleApiError):
    code, http_status = StatusCode.PERMISSION_DENIED, 403


class ResourceExhausted(GoogleApiError):
    code, http_status = StatusCode.RESOURCE_EXHAUSTED, 429


class FailedPrecondition(GoogleApiError):
    code, http_status = StatusCode.FAILED_PRECONDITION, 400


class OutOfRange(GoogleApiError):
    code, http_status = StatusCode.OUT_OF_RANGE, 400


class Unimplemented(GoogleApiError):
    code, http_status = StatusCode.UNIMPLEMENTED, 501


class Internal(GoogleApiError):
    code, http_status = StatusCode.INTERNAL, 500


class Unavailable(GoogleApiError):
    code, http_status = StatusCode.UNAVAILABLE, 503


class Unauthenticated(GoogleApiError):
    code, http_status = StatusCode.UNAUTHENTICATED, 401


class NotModified(GoogleApiError):
    """Cloud Storage's 304 for a read whose `if*NotMatch` precondition holds: an empty answer, not an error body."""

    code, http_status = StatusCode.OK, 304

    def __init__(self) -> None:
        super().__init__("Not Modified")

    def to_response(self) -> Response:
        return Response(status_code=304)


# The error each HTTP status stands for when a fault injects it.
BY_HTTP_STATUS = {cls.http_status: cls for cls in (InvalidArgument, Unauthenticated, PermissionDenied, NotFound,
                                                  AlreadyExists, ResourceExhausted, Internal, Unimplemented,
                                                  Unavailable)} | {413: OutOfRange}


def too_large(message: str) -> OutOfRange:
    """A request body over a size limit: 413 OUT_OF_RANGE, as Google's front ends answer."""
    return OutOfRange(message, http_status=413)


async def google_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, GoogleApiError)
    return error.to_response()


async def internal_error(request: Request, error: Exception) -> Response:
    """A bug or an input nobody foresaw: answered like Google, never as a bare 500 page (uvicorn logs the
    traceback: Starlette raises the error again once this answer is sent)."""
    message = f"Internal error serving {request.method} {request.url.path}; see the emulator's log."
    return Internal(message).to_response()


EXCEPTION_HANDLERS = {GoogleApiError: google_error, Exception: internal_error}
