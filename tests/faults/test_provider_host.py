"""In the dynamic provider host (`python -m pulumi.dynamic`, driven over gRPC as the engine drives it), an expected
failure reaches the engine as its one-line message, while an unexpected error (a bug) keeps its traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from typing import Any, Iterator

import grpc
import pytest
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from resources.bucket import EmulatorBucketProvider
from tests.conftest import LOCATION, PROJECT, REPO
from tuning.client import RETRY_DEADLINE_ENV

BUCKET_URN = "urn:pulumi:test::translation-tuning::pulumi-python:dynamic/storage:EmulatorBucket::bucket"


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    return asyncio.run(rpc.serialize_properties(values, {}))


@pytest.fixture
def unreachable_stub() -> Iterator[tuple[provider_pb2_grpc.ResourceProviderStub, str]]:
    """The provider host, configured with an emulator endpoint where nothing listens, and a 1 s retry deadline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), RETRY_DEADLINE_ENV: "1"}
    process = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic"], stdout=subprocess.PIPE, cwd=REPO,
                               env=env)
    try:
        port = int(process.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = provider_pb2_grpc.ResourceProviderStub(channel)
        stub.Configure(provider_pb2.ConfigureRequest(args=struct({
            "gcp:project": PROJECT, "gcp:region": LOCATION, "translation-tuning:emulatorEndpoint": url})))
        yield stub, url
        channel.close()
    finally:
        process.kill()
        process.wait()


def create_error(stub: provider_pb2_grpc.ResourceProviderStub, props: dict[str, Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Create(provider_pb2.CreateRequest(urn=BUCKET_URN, properties=struct(
            {"__provider": serialize_provider(EmulatorBucketProvider()), **props})), timeout=120)
    return raised.value


def test_an_expected_failure_reaches_the_engine_as_its_one_line_message(unreachable_stub):
    stub, url = unreachable_stub

    error = create_error(stub, {"name": "host-bucket", "location": "US-CENTRAL1", "labels": {}})

    assert error.code() == grpc.StatusCode.UNKNOWN
    assert error.details().startswith(f"Cloud Storage buckets.get gs://host-bucket: cannot connect to {url} "
                                      "(connection refused), still after retrying for ")
    assert "\n" not in error.details() and "Traceback" not in error.details()


def test_an_unexpected_error_keeps_its_traceback(unreachable_stub):
    stub, _ = unreachable_stub

    error = create_error(stub, {"location": "US-CENTRAL1"})  # no `name`: a KeyError in the provider, a bug

    assert error.details().startswith("Traceback (most recent call last):")
    assert error.details().rstrip().endswith("KeyError: 'name'")
