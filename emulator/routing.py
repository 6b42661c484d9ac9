"""A route table written like the API reference: `("GET", "/v1/projects/{project}/...", handler)`.

Path templates use `{name}` for one segment (no `/` and no `:`, so `{job}:cancel` works) and
`{name=**}` for the rest of the path (GCS object names may contain `/`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response

from emulator.errors import GoogleApiError, Internal, Unimplemented

Handler = Callable[..., Awaitable[Response]]
log = logging.getLogger(__name__)

_PARAM = re.compile(r"\{(\w+)(=\*\*)?\}")


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compile(self.template)


def _compile(template: str) -> re.Pattern[str]:
    parts, pos = [], 0
    for match in _PARAM.finditer(template):
        parts.append(re.escape(template[pos:match.start()]))
        name, rest = match.group(1), match.group(2)
        parts.append(f"(?P<{name}>.+)" if rest else f"(?P<{name}>[^/:]+)")
        pos = match.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(parts) + "$")


class Router:
    """Dispatches a request to the first route whose method and path match; else 501 UNIMPLEMENTED."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = [(route, route.pattern) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route, pattern in self._routes:
            if route.method != method:
                continue
            found = pattern.match(path)
            if found:
                return route, found.groupdict()
        return None

    async def dispatch(self, request: Request) -> Response:
        found = self.match(request.method, request.url.path)
        if found is None:
            return Unimplemented(f"{request.method} {request.url.path} is not implemented by the emulator").to_response()
        route, params = found
        try:
            return await route.handler(request, **params)
        except GoogleApiError as error:
            return error.to_response()
        except Exception:  # a bug or an input we did not foresee: answer like Google, never a bare 500
            log.exception("%s %s failed", request.method, request.url.path)
            return Internal(f"Internal error serving {request.method} {request.url.path}; see the emulator's "
                            "log.").to_response()
