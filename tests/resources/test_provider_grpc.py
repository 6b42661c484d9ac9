"""Plugin tier: the providers served by `python -m pulumi.dynamic`, driven over gRPC as the engine does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any, Iterator

import grpc
import pytest
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from resources.dataset import TuningDatasetProvider
from resources.tuning_job import TuningJobProvider
from tests.conftest import LOCATION, PROJECT, REPO, SAMPLE_TRAIN

JOB_URN = "urn:pulumi:test::translation-tuning::pulumi-python:dynamic/vertex:TuningJob::job"
DATASET_URN = "urn:pulumi:test::translation-tuning::pulumi-python:dynamic/storage:TuningDataset::data"


@pytest.fixture
def provider_stub(emulator) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    """The dynamic provider host, configured with the stack config pointing at the emulator."""
    process = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic"], stdout=subprocess.PIPE,
                               cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        port = int(process.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = provider_pb2_grpc.ResourceProviderStub(channel)
        stub.Configure(provider_pb2.ConfigureRequest(args=struct({
            "gcp:project": PROJECT, "gcp:region": LOCATION,
            "translation-tuning:emulatorEndpoint": emulator.url})))
        yield stub
        channel.close()
    finally:
        process.kill()
        process.wait()


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    return asyncio.run(rpc.serialize_properties(values, {}))


def plain(message: struct_pb2.Struct) -> dict[str, Any]:
    return rpc.deserialize_properties(message)


def job_inputs(train_uri: str, **overrides: Any) -> dict[str, Any]:
    props = {"__provider": serialize_provider(TuningJobProvider()), "baseModel": "translation-llm-002",
             "trainingDatasetUri": train_uri, "adapterSize": 4, "labels": {}, "idempotencyKey": "grpc",
             "waitForCompletion": True, "completionTimeoutSeconds": 120, "onDelete": "cancel"}
    props.update(overrides)
    return props


def test_check_reports_failures_by_property(provider_stub):
    response = provider_stub.Check(provider_pb2.CheckRequest(
        urn=JOB_URN, olds=struct({}), news=struct(job_inputs("gs://bucket/t.jsonl", adapterSize=16))))
    assert [(failure.property, "adapter size 4 only" in failure.reason) for failure in response.failures] == [
        ("adapterSize", True)]


def test_dataset_check_names_file_and_line_before_any_upload(provider_stub, tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text(SAMPLE_TRAIN.read_text().splitlines()[0] + "\nnot json\n")
    inputs = {"__provider": serialize_provider(TuningDatasetProvider()), "path": str(bad), "kind": "training",
              "bucket": "bucket", "prefix": "datasets"}
    response = provider_stub.Check(provider_pb2.CheckRequest(urn=DATASET_URN, olds=struct({}), news=struct(inputs)))
    assert [failure.property for failure in response.failures] == ["path"]
    assert f"{bad}:2: " in response.failures[0].reason


def test_create_read_diff_delete_round_trip(provider_stub, sample_uris):
    inputs = job_inputs(sample_uris[0], validationDatasetUri=sample_uris[1])
    checked = provider_stub.Check(provider_pb2.CheckRequest(urn=JOB_URN, olds=struct({}), news=struct(inputs)))
    created = provider_stub.Create(provider_pb2.CreateRequest(urn=JOB_URN, properties=checked.inputs))
    outs = plain(created.properties)
    assert outs["state"] == "JOB_STATE_SUCCEEDED" and created.id == outs["tuningJobName"]
    assert len(outs["metrics"]) == 6

    read = provider_stub.Read(provider_pb2.ReadRequest(id=created.id, urn=JOB_URN, properties=created.properties))
    assert read.id == created.id and plain(read.properties)["metrics"] == outs["metrics"]

    same = provider_stub.Diff(provider_pb2.DiffRequest(id=created.id, urn=JOB_URN, olds=created.properties,
                                                       news=checked.inputs))
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
    epochs = provider_stub.Diff(provider_pb2.DiffRequest(id=created.id, urn=JOB_URN, olds=created.properties,
                                                         news=struct({**inputs, "epochCount": 3})))
    assert (epochs.changes, list(epochs.replaces)) == (provider_pb2.DiffResponse.DIFF_SOME, ["epochCount"])

    provider_stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=JOB_URN, properties=created.properties))


def test_the_provider_process_exits_once_its_engine_is_gone(tmp_path):
    # A killed `pulumi up` must not leave its provider polling a job and then idling forever.
    import time
    from concurrent import futures

    engine = grpc.server(futures.ThreadPoolExecutor(max_workers=2))  # answers health checks UNIMPLEMENTED: alive
    engine_port = engine.add_insecure_port("127.0.0.1:0")
    engine.start()
    process = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic", f"127.0.0.1:{engine_port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                               env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        port = int(process.stdout.readline())
        stub = provider_pb2_grpc.ResourceProviderStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        stub.Configure(provider_pb2.ConfigureRequest(args=struct({
            "gcp:project": PROJECT, "gcp:region": LOCATION, "translation-tuning:emulatorEndpoint": "http://127.0.0.1:9"})))
        inputs = {"__provider": serialize_provider(TuningDatasetProvider()), "path": str(SAMPLE_TRAIN),
                  "kind": "training", "bucket": "bucket", "prefix": "datasets"}
        assert not stub.Check(provider_pb2.CheckRequest(urn=DATASET_URN, olds=struct({}), news=struct(inputs))).failures
        time.sleep(7)  # past one engine check: a live engine keeps the provider running
        assert process.poll() is None
        engine.stop(grace=None)
        process.wait(timeout=30)
        assert process.returncode == 0
        assert b"the engine at 127.0.0.1:" in process.stderr.read()
    finally:
        engine.stop(grace=None)
        if process.poll() is None:
            process.kill()
            process.wait()
