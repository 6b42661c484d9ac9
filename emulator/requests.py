"""Reading request bodies with a size bound, as the Google APIs do."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from emulator.errors import InvalidArgument, too_large


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The JSON object in the body (`{}` when empty); 413 over `max_bytes`, 400 when not a JSON object."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(f"Request body of {declared} bytes exceeds the limit of {max_bytes} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(f"Request body exceeds the limit of {max_bytes} bytes.")
        chunks.append(chunk)
    return json_object(b"".join(chunks))


def json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in `raw` (`{}` when empty); 400 when it is not a JSON object."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise InvalidArgument(f"Invalid JSON payload received. {error}") from error
    if not isinstance(body, dict):
        raise InvalidArgument("Invalid JSON payload received. Expected an object.")
    return body
