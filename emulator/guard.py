"""Keep web pages from driving the emulator: only loopback Host names, and no cross-origin requests.

Google's clients send no Origin header; the console is same-origin. A page on another origin (or a
DNS-rebinding host name) could otherwise reset state, create jobs or read data through a browser.
"""

from __future__ import annotations

from typing import Optional

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.errors import GoogleApiError, InvalidArgument, PermissionDenied

_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
_ANY_ADDRESS = {"0.0.0.0", "::", ""}


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8080
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class RequestGuard:
    """Middleware: checks every request's Host and Origin headers against the address the emulator binds."""

    def __init__(self, app: ASGIApp, bind_host: str) -> None:
        self.app = app
        self._any_host = bind_host in _ANY_ADDRESS
        self._allowed = _LOOPBACK_NAMES | {bind_host}

    def problem(self, request: Request) -> Optional[GoogleApiError]:
        """The error to answer instead of serving, or None."""
        host = request.headers.get("host", "")
        if not self._any_host and _host_name(host) not in self._allowed:
            return InvalidArgument(f"Host {host!r} is not served here; use one of "
                                   f"{', '.join(sorted(self._allowed))}.")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{host}":
            return PermissionDenied(f"Cross-origin request from {origin!r} refused.")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.problem(Request(scope)) if scope["type"] == "http" else None
        await (refused.to_response() if refused is not None else self.app)(scope, receive, send)
