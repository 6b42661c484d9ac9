"""Google API errors, one class per canonical status, rendered as the Google error envelope."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class GoogleApiError(Exception):
    """Base: an HTTP status, a canonical status name and a message (`{"error":{code,message,status}}`)."""

    http_status = 500
    status = "INTERNAL"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_response(self) -> JSONResponse:
        body = {"error": {"code": self.http_status, "message": self.message, "status": self.status}}
        if self.details:
            body["error"]["details"] = self.details
        return JSONResponse(body, status_code=self.http_status)


class InvalidArgument(GoogleApiError):
    http_status, status = 400, "INVALID_ARGUMENT"


class FailedPrecondition(GoogleApiError):
    http_status, status = 400, "FAILED_PRECONDITION"


class Unauthenticated(GoogleApiError):
    http_status, status = 401, "UNAUTHENTICATED"


class PermissionDenied(GoogleApiError):
    http_status, status = 403, "PERMISSION_DENIED"


class NotFound(GoogleApiError):
    http_status, status = 404, "NOT_FOUND"


class AlreadyExists(GoogleApiError):
    http_status, status = 409, "ALREADY_EXISTS"


class PayloadTooLarge(GoogleApiError):
    http_status, status = 413, "OUT_OF_RANGE"


class ResourceExhausted(GoogleApiError):
    http_status, status = 429, "RESOURCE_EXHAUSTED"


class Internal(GoogleApiError):
    http_status, status = 500, "INTERNAL"


class Unimplemented(GoogleApiError):
    http_status, status = 501, "UNIMPLEMENTED"


class Unavailable(GoogleApiError):
    http_status, status = 503, "UNAVAILABLE"


BY_HTTP_STATUS = {cls.http_status: cls for cls in (InvalidArgument, Unauthenticated, PermissionDenied, NotFound,
                                                  AlreadyExists, PayloadTooLarge, ResourceExhausted, Internal,
                                                  Unimplemented, Unavailable)}
