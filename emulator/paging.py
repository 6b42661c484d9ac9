"""List paging of every list route: page sizes, and page tokens that name the last item served.

A token names the last item served rather than an offset, so items added between two pages (a job that starts
meanwhile) neither repeat nor shift the next page. Every list uses the same opaque format: base64 of
`{"after": KEY}`, KEY being what the list orders by (a job's sequence number, a resource or object name).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable, Optional

from starlette.requests import Request

from emulator.errors import InvalidArgument


def page_size(request: Request, default: int, maximum: int) -> int:
    """The request's `pageSize` (camelCase or snake_case): 0 or absent means `default`, capped at `maximum`."""
    raw = request.query_params.get("pageSize") or request.query_params.get("page_size") or "0"
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidArgument(f"pageSize must be a non-negative integer, got {raw!r}.")
    return min(int(raw) or default, maximum)


def after_key(request: Request) -> Any:
    """The key of the last item of the previous page (`pageToken`, camelCase or snake_case); None for the first."""
    token = request.query_params.get("pageToken") or request.query_params.get("page_token") or ""
    if not token:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(f"Invalid page token {token!r}.") from error


def page_token(after: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()


def with_next_page(body: dict[str, Any], after: Optional[Any]) -> dict[str, Any]:
    """`body` with `nextPageToken` when `after` (the key of the page's last item, more remaining) is set."""
    if after is not None:
        body["nextPageToken"] = page_token(after)
    return body


def page_of(items: list[Any], after: Any, size: int, key: Callable[[Any], Any]) -> tuple[list[Any], Optional[Any]]:
    """The items that follow the one whose `key` is `after`, at most `size`; and the last one's key if more remain.
    InvalidArgument when no item has the key `after` any more (the token has expired)."""
    start = 0
    if after is not None:
        keys = [key(item) for item in items]
        if after not in keys:
            raise InvalidArgument(f"Page token {page_token(after)!r} has expired: its item no longer exists.")
        start = keys.index(after) + 1
    page = items[start:start + size]
    return page, (key(page[-1]) if start + size < len(items) else None)
