"""Starlette routes written like the API reference: `route("GET", "/v1/projects/{project}/...", handler)`.

`{name}` is one path segment without `:` (so `{job}:cancel` is the custom verb), `{name=**}` the rest of the
path (GCS object names contain `/`). A handler gets the request and the path parameters as keyword arguments.
A method a path does not serve, like a path no route serves, is 501 UNIMPLEMENTED.
"""

from __future__ import annotations

import re
from typing import Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from emulator.errors import EXCEPTION_HANDLERS, Unimplemented

Handler = Callable[..., Awaitable[Response]]
API_VERSIONS = ("v1", "v1beta1")


class SegmentConvertor(StringConvertor):
    regex = "[^/:]+"


register_url_convertor("segment", SegmentConvertor())


class ApiRoute(Route):
    """A route for one method; another method falls through to the next route (and at last to 501), not 405."""

    def matches(self, scope: Scope):
        match, child_scope = super().matches(scope)
        return (Match.NONE, {}) if match == Match.PARTIAL else (match, child_scope)


def route(method: str, template: str, handler: Handler) -> ApiRoute:
    path = re.sub(r"\{(\w+)=\*\*\}", r"{\1:path}", re.sub(r"\{(\w+)\}", r"{\1:segment}", template))

    async def endpoint(request: Request) -> Response:
        return await handler(request, **request.path_params)

    return ApiRoute(path, endpoint, methods=[method])


def location_routes(table: Sequence[tuple[str, str, Handler]],
                    prefixes: Sequence[str] = API_VERSIONS) -> list[ApiRoute]:
    """The routes of `table` (method, path below `projects/{project}/locations/{location}/`, handler) under each
    `/{prefix}/`."""
    return [route(method, f"/{prefix}/projects/{{project}}/locations/{{location}}/{path}", handler)
            for prefix in prefixes for method, path, handler in table]


async def unimplemented(scope: Scope, receive: Receive, send: Send) -> None:
    error = Unimplemented(f"{scope['method']} {scope['path']} is not implemented by the emulator")
    await error.to_response()(scope, receive, send)


def api_app(routes: Sequence[BaseRoute], middleware: Sequence[Middleware] = (), **kwargs) -> Starlette:
    """A Starlette app answering errors with the Google error envelope, and 501 for what no route serves."""
    app = Starlette(routes=list(routes), middleware=list(middleware), exception_handlers=EXCEPTION_HANDLERS,
                    **kwargs)
    app.router.default = unimplemented
    app.router.redirect_slashes = False  # `/tuningJobs/` is unmodelled too: 501, not a redirect to `/tuningJobs`
    return app
