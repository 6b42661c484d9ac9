"""Errors specific to Cloud Storage: one class per status the GCS routes answer with beyond the shared ones."""

from __future__ import annotations

from starlette.responses import Response

from emulator.errors import GoogleApiError


class PreconditionFailed(GoogleApiError):
    """412: an `ifGenerationMatch`-style precondition did not hold."""

    http_status, status = 412, "FAILED_PRECONDITION"


class BucketNotEmpty(GoogleApiError):
    """409: buckets.delete on a bucket that still holds objects."""

    http_status, status = 409, "FAILED_PRECONDITION"


class RangeNotSatisfiable(GoogleApiError):
    http_status, status = 416, "OUT_OF_RANGE"


class UploadCancelled(GoogleApiError):
    http_status, status = 499, "CANCELLED"


PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold."


class NotModified(GoogleApiError):
    http_status, status = 304, "OK"

    def __init__(self) -> None:
        super().__init__("Not Modified")

    def to_response(self) -> Response:  # type: ignore[override]
        return Response(status_code=304)
