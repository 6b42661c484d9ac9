"""A minimal in-test Pulumi engine: the ResourceMonitor and Engine gRPC services a program run needs."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Optional

import grpc
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, resource_pb2, resource_pb2_grpc


class FakeEngine(resource_pb2_grpc.ResourceMonitorServicer, engine_pb2_grpc.EngineServicer):
    """Serves both services on one loopback port and records what programs send (log messages, resources).

    The official runner really connects to a monitor and an engine; the real engine cannot be put
    between the test and the host here, so this stands in for exactly the calls a program run makes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.logs: list[tuple[int, str]] = []
        self.resources: list[str] = []
        self._root: Optional[str] = None
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="fake-engine"))
        resource_pb2_grpc.add_ResourceMonitorServicer_to_server(self, self._server)
        engine_pb2_grpc.add_EngineServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)

    def messages(self) -> list[str]:
        with self._lock:
            return [message for _severity, message in self.logs]

    # pulumirpc.ResourceMonitor
    def GetDeploymentInfo(self, request, context):
        # An older engine's answer, said plainly (the base class would log a NotImplementedError): the SDK
        # then asks SupportsFeature instead.
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetDeploymentInfo is not implemented")

    def SupportsFeature(self, request, context):
        # No optional feature: the SDK then takes its plainest code paths.
        return resource_pb2.SupportsFeatureResponse(hasSupport=False)

    def RegisterResource(self, request, context):
        urn = f"urn:pulumi:stack::project::{request.type}::{request.name}"
        with self._lock:
            self.resources.append(urn)
        return resource_pb2.RegisterResourceResponse(urn=urn, object=struct_pb2.Struct())

    def RegisterResourceOutputs(self, request, context):
        return empty_pb2.Empty()

    def SignalAndWaitForShutdown(self, request, context):
        return empty_pb2.Empty()

    # pulumirpc.Engine
    def Log(self, request: engine_pb2.LogRequest, context):
        with self._lock:
            self.logs.append((request.severity, request.message))
        return empty_pb2.Empty()

    def GetRootResource(self, request, context):
        with self._lock:
            return engine_pb2.GetRootResourceResponse(urn=self._root or "")

    def SetRootResource(self, request, context):
        with self._lock:
            self._root = request.urn
        return engine_pb2.SetRootResourceResponse()
