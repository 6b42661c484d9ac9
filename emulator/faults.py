"""Fault injection for reliability tests: error rates with a chosen status and added latency, per route."""

from __future__ import annotations

import asyncio
import random
import re
import threading
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator.errors import BY_HTTP_STATUS, GoogleApiError, InvalidArgument


class Fault(BaseModel):
    """Applies to requests whose method matches and whose path matches `pathRegex` (search, not full match).

    `errorRate` is the probability of answering `status` instead of serving; `times` limits how many
    errors are injected (None: unlimited); `latencySeconds` delays every matching request.
    With `afterHandler`, the request is served first and only its response is replaced by the error:
    a lost response, the case that makes non-idempotent retries dangerous.
    """

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True)

    path_regex: re.Pattern[str]
    method: Optional[str] = None
    status: Literal[*sorted(BY_HTTP_STATUS)] = 503  # type: ignore[valid-type]
    error_rate: float = Field(1.0, ge=0.0, le=1.0)
    times: Optional[int] = None
    latency_seconds: float = 0.0
    after_handler: bool = False
    injected: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and bool(self.path_regex.search(path))


class FaultInjector:
    """The active faults; seeded so a test's sequence of injected errors is reproducible."""

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(self, spec: dict[str, Any]) -> Fault:
        try:
            # A fault that names no status and no rate only adds latency.
            fault = Fault.model_validate({"errorRate": 1.0 if "status" in spec else 0.0, **spec})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
            raise InvalidArgument(f"Invalid fault {spec!r}: {problems}.") from error
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.model_dump(mode="json") for fault in self._faults]

    def decide(self, method: str, path: str) -> tuple[float, Optional[GoogleApiError], bool]:
        """(latency to add, error to answer or None, whether to serve the request before answering it)."""
        latency, error, after = 0.0, None, False
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                latency += fault.latency_seconds
                exhausted = fault.times is not None and fault.injected >= fault.times
                if error is None and not exhausted and self._random.random() < fault.error_rate:
                    fault.injected += 1
                    error = BY_HTTP_STATUS[fault.status](f"Injected fault: {method} {path} answered {fault.status}.",
                                                         http_status=fault.status)
                    after = fault.after_handler
        return latency, error, after


class FaultMiddleware:
    """Applies the injector's faults to the Google API routes (not to the console or the control routes)."""

    def __init__(self, app: ASGIApp, faults: FaultInjector) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/" or path.startswith("/_emulator/"):
            return await self.app(scope, receive, send)
        latency, error, after_handler = self.faults.decide(scope["method"], path)
        if latency:
            await asyncio.sleep(latency)
        if error is None:
            return await self.app(scope, receive, send)
        if after_handler:  # serve the request, then lose its response

            async def discard(message: Message) -> None:
                pass

            try:
                await self.app(scope, receive, discard)
            except Exception:  # noqa: BLE001 - the client gets the injected error whatever happened
                pass
        await error.to_response()(scope, receive, send)
