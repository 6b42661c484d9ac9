"""An Analyzer server between the engine and a Python policy pack, so policies see the stack and its config.

The engine talks to a policy pack started through RunPlugin as to any analyzer: it reads a port from
the stream's first stdout line, then calls Handshake, ConfigureStack, GetPluginInfo, Configure,
Analyze... The Python policy SDK learns the stack only from environment variables read at start, so
(like the Go hosts' PolicyProxy) this proxy answers Handshake and ConfigureStack itself, starts the
pack with that configuration, forwards ConfigureStack to it, then relays every other call unchanged
(raw bytes, original status codes).

    engine ──gRPC──▶ PolicyProxy (port on the stream's first line) ──gRPC──▶ python -m pulumi.policy (pack)
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from typing import Any, Callable, Optional

import grpc
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import analyzer_pb2

SERVICE = "pulumirpc.Analyzer"
CONFIGURE_STACK = f"/{SERVICE}/ConfigureStack"
HANDSHAKE = f"/{SERVICE}/Handshake"
FORWARDED = tuple(f"/{SERVICE}/{method.name}"
                  for method in analyzer_pb2.DESCRIPTOR.services_by_name["Analyzer"].methods
                  if f"/{SERVICE}/{method.name}" not in (CONFIGURE_STACK, HANDSHAKE))

StackConfiguration = Optional[analyzer_pb2.AnalyzerStackConfigureRequest]
# The pack printed its port once it was serving, so ConfigureStack answers at once; this only bounds a pack
# that accepts the connection and never answers.
CONFIGURE_TIMEOUT_SECONDS = 60.0


class PolicyPackNotStarted(Exception):
    """The pack exited, or the stream was cancelled, before it served its port."""


class PolicyProxy(grpc.GenericRpcHandler):
    """Serves the Analyzer service on a loopback port and relays it to the pack once `attach` is called."""

    def __init__(self) -> None:
        self._configuration: futures.Future[StackConfiguration] = futures.Future()
        self._pack: futures.Future[grpc.Channel] = futures.Future()
        # Calls, `attach` and `abort` race (the engine may close the stream while the pack starts): each future
        # is settled once, under this lock.
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="policy-proxy"),
                                   options=_GRPC_CHANNEL_OPTIONS)
        self._server.add_generic_rpc_handlers((self,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def await_configuration(self) -> StackConfiguration:
        """Block until the engine sent ConfigureStack (or another call came first: then None, as the Go proxy does).

        Raises:
            PolicyPackNotStarted: `abort` was called meanwhile.
        """
        try:
            return self._configuration.result()
        except futures.CancelledError:
            raise PolicyPackNotStarted("the policy pack was stopped before the engine configured it") from None

    def attach(self, pack_port: int) -> None:
        """Connect to the pack's Analyzer server, forward the stack configuration, then release waiting calls.

        Raises:
            grpc.RpcError: the pack rejected ConfigureStack with an error other than UNIMPLEMENTED, or does not
                serve on that port.
            PolicyPackNotStarted: `abort` was called meanwhile (nobody will call the pack any more).
        """
        if self._pack.done():
            raise PolicyPackNotStarted("the policy pack's stream was closed while it started")
        channel = grpc.insecure_channel(f"127.0.0.1:{pack_port}", options=_GRPC_CHANNEL_OPTIONS)
        configuration = None
        if self._configuration.done() and not self._configuration.cancelled():
            configuration = self._configuration.result()
        if configuration is not None:
            try:
                # Fail fast (no wait_for_ready): a port nobody serves must fail the stream, not hang it.
                channel.unary_unary(CONFIGURE_STACK)(configuration.SerializeToString(),
                                                     timeout=CONFIGURE_TIMEOUT_SECONDS)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNIMPLEMENTED:  # older packs do not implement it
                    channel.close()
                    self._settle(exception=error)
                    raise
        if not self._settle(channel=channel):
            channel.close()
            raise PolicyPackNotStarted("the policy pack's stream was closed while it started")

    def abort(self, reason: str) -> None:
        """Fail every waiting and future call with `reason` (the pack could not start or has stopped)."""
        with self._lock:
            self._configuration.cancel()
        self._settle(exception=PolicyPackNotStarted(reason))

    def _offer_configuration(self, configuration: StackConfiguration) -> None:
        with self._lock:
            if not self._configuration.done():
                self._configuration.set_result(configuration)

    def _settle(self, *, channel: Optional[grpc.Channel] = None, exception: Optional[BaseException] = None) -> bool:
        """Give waiting calls the pack's channel or the error; False if they already had one."""
        with self._lock:
            if self._pack.done():
                return False
            if exception is not None:
                self._pack.set_exception(exception)
            else:
                self._pack.set_result(channel)
            return True

    def stop(self) -> None:
        self.abort("the policy pack has stopped")
        self._server.stop(grace=1)
        if self._pack.done() and self._pack.exception() is None:
            self._pack.result().close()

    # grpc.GenericRpcHandler
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Optional[grpc.RpcMethodHandler]:
        method = handler_call_details.method
        if method == CONFIGURE_STACK:
            return grpc.unary_unary_rpc_method_handler(self._configure_stack)
        if method == HANDSHAKE:
            return grpc.unary_unary_rpc_method_handler(
                lambda request, context: analyzer_pb2.AnalyzerHandshakeResponse().SerializeToString())
        if method in FORWARDED:
            return grpc.unary_unary_rpc_method_handler(self._forwarder(method))
        return None

    def _configure_stack(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._offer_configuration(analyzer_pb2.AnalyzerStackConfigureRequest.FromString(request))
        return analyzer_pb2.AnalyzerStackConfigureResponse().SerializeToString()

    def _forwarder(self, method: str) -> Callable[[bytes, grpc.ServicerContext], Any]:
        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            self._offer_configuration(None)  # e.g. `pulumi policy publish` never configures a stack
            try:
                channel = self._pack.result()
            except (PolicyPackNotStarted, grpc.RpcError, futures.CancelledError) as error:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"policy pack not started: {error}")
            try:
                return channel.unary_unary(method)(request)
            except grpc.RpcError as error:
                context.abort(error.code(), error.details() or "")
            raise AssertionError("unreachable")  # context.abort raises

        return forward


def configuration_env(configuration: StackConfiguration) -> dict[str, str]:
    """The environment the Python policy SDK reads the stack from (PULUMI_PROJECT, _STACK, _DRY_RUN, _CONFIG...)."""
    if configuration is None:
        return {}
    env = {"PULUMI_PROJECT": configuration.project, "PULUMI_STACK": configuration.stack,
           "PULUMI_DRY_RUN": "true" if configuration.dry_run else "false",
           "PULUMI_CONFIG": json.dumps(dict(configuration.config)),
           "PULUMI_CONFIG_SECRET_KEYS": json.dumps(list(configuration.config_secret_keys))}
    if configuration.organization:
        env["PULUMI_ORGANIZATION"] = configuration.organization
    return env
